"""Benchmark carelake as data grows, on each Delta engine: full runs at several scales, a ~1%
incremental run, the provider aggregates beside DuckDB and pandas on the same input, and
``make run``'s pipeline at scale 1.

    python -m bench.run --scales 0.0625,0.25,1 --engines jvm,rs --out bench/results   (or: make bench)

Each scale and engine runs in its own Python process (one Spark session, fresh temp lakehouse),
so memory peaks and JVM warm-up do not leak from one run into the next. The engines take turns
(jvm, rs at the first scale, rs, jvm at the next ...) so that a change in the machine's load
falls on both. See docs/benchmark.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make the repository root importable so ``bench`` resolves as a package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import baselines  # noqa: E402
from bench.increment import write_increment  # noqa: E402
from bench.pipeline import time_pipeline  # noqa: E402
from bench.probe import MemorySampler, usage_growth, zone_usage  # noqa: E402
from bench.report import write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REPEATS = 2  # baseline timings: best of this many, to damp noise from other processes
ENGINES = ("jvm", "rs")


def stage_order() -> list[str]:
    """Every stage the pipeline knows, maintenance last (it compacts what the others wrote)."""
    from carelake.pipeline import STAGES

    last = [s for s in ("maintain", "compact") if s in STAGES]
    return [s for s in STAGES if s not in last] + last


def alternated(keys: list[Any], engines: list[str], start: int = 0) -> list[tuple[Any, str]]:
    """(key, engine) in run order: the engines in order for the first key, reversed for the next,
    and so on (jvm, rs, rs, jvm ...); ``start`` continues the turn-taking of an earlier sequence."""
    return [(key, engine) for i, key in enumerate(keys, start)
            for engine in (engines if i % 2 == 0 else engines[::-1])]


def parse_engines(text: str) -> list[str]:
    """``jvm,rs`` -> ``["jvm", "rs"]``; an unknown or repeated engine is a usage error."""
    engines = [e.strip() for e in text.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines or len(set(engines)) != len(engines):
        raise argparse.ArgumentTypeError(
            f"--engines: expected distinct names from {', '.join(ENGINES)}, found {text!r}")
    return engines


def load1() -> float:
    """The 1-minute load average: reported beside every timing, as the machine is shared."""
    return round(os.getloadavg()[0], 2)


def run_stages(spark: Any, config: Any, stages: list[str], lake: Path, sampler: MemorySampler) -> list[dict[str, Any]]:
    """Run each stage alone through ``run_pipeline``; per stage its timings, rows, memory and writes."""
    from carelake.pipeline import run_pipeline

    out = []
    context = spark.sparkContext
    for name in stages:
        sampler.reset()
        before = zone_usage(lake)
        group = f"bench-{name}-{time.monotonic_ns()}"
        context.setJobGroup(group, f"bench stage {name}")  # to count the Spark jobs the stage ran
        started = time.perf_counter()
        summary = run_pipeline(spark, config, [name])
        wall = time.perf_counter() - started
        spark_jobs = len(context.statusTracker().getJobIdsForGroup(group))
        context.setLocalProperty("spark.jobGroup.id", None)
        sampler.sample()
        stage = summary.stages[0]
        growth = usage_growth(before, zone_usage(lake))
        rows_in = sum(c.rows_in for c in stage.entities.values())
        out.append({
            "stage": name, "status": stage.status, "rows_in": rows_in,
            "duration_s": stage.duration_s, "wall_s": round(wall, 3),
            "rows_per_s": round(rows_in / wall, 1) if wall > 0 else None,
            "spark_jobs": spark_jobs,
            "peak_driver_rss": sampler.peak_driver, "peak_worker_rss": sampler.peak_workers,
            "files_written": sum(g.files for g in growth.values()),
            "bytes_written": sum(g.bytes for g in growth.values()),
            "by_zone": {z: {"files": g.files, "bytes": g.bytes} for z, g in growth.items()},
            "load1": load1(),
        })
        print(f"  {name}: {stage.status} {wall:.1f}s rows_in={rows_in} spark_jobs={spark_jobs} load={load1()}", flush=True)
    return out


def _best(fn: Any, repeats: int = REPEATS) -> tuple[float, Any]:
    best, answer = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        answer = fn()
        best = min(best, time.perf_counter() - started)
    return round(best, 3), answer


def committed_files(tables: Any, uri: str) -> list[str]:
    """Absolute paths of the Parquet files the Delta log of ``uri`` lists as live."""
    root = uri.removeprefix("file://")
    paths = []
    for f in tables.files(uri):
        if f.get("partition_values"):
            raise ValueError(f"{uri}: partitioned processed table; the baselines read unpartitioned files only")
        path = f["path"].removeprefix("file://")
        paths.append(path if os.path.isabs(path) else os.path.join(root, path))
    return paths


def run_baselines(spark: Any, config: Any, aggregates_s: float | None) -> dict[str, Any]:
    """The provider aggregates by DuckDB, pandas and Spark (plus curated's provider_features when
    the aggregates stage built it): timings and whether the answers agree."""
    from carelake.delta import TableNotFoundError, open_tables
    from carelake.storage import table_uri

    tables = open_tables(spark, config)
    uris = {t: table_uri(config, "processed", t) for t in baselines.TABLES}
    files = {t: committed_files(tables, u) for t, u in uris.items()}
    curated = None
    with contextlib.suppress(TableNotFoundError):  # absent until the aggregates stage exists
        curated = tables.read(table_uri(config, "curated", "provider_features")).toPandas()
    if curated is not None and len(curated):
        as_of = max(curated["as_of"])
    else:
        # no curated table yet: the latest admit date, as curated would pick it
        as_of = min(tables.read(uris["encounters"]).agg({"admit_date": "max"}).first()[0], date.today())
    duck_s, duck = _best(lambda: baselines.by_duckdb(files, as_of))
    pandas_s, pand = _best(lambda: baselines.by_pandas(files, as_of))
    spark_s, spk = _best(lambda: baselines.by_spark(spark, {t: tables.read(u) for t, u in uris.items()}, as_of))
    mismatches = [f"pandas vs DuckDB: {p}" for p in baselines.compare(duck, pand)]
    mismatches += [f"Spark vs DuckDB: {p}" for p in baselines.compare(duck, spk)]
    result: dict[str, Any] = {
        "as_of": str(as_of), "npis": len(duck), "duckdb_s": duck_s, "pandas_s": pandas_s, "spark_s": spark_s,
        "aggregates_stage_s": aggregates_s, "load1": load1(),
        "files": {t: len(f) for t, f in files.items()},
    }
    if curated is not None:
        view = baselines.curated_view(curated)
        shared = view.index.intersection(duck.index)
        result["curated_npis"], result["curated_shared_npis"] = len(view), len(shared)
        mismatches += [f"curated vs DuckDB: {p}" for p in
                       baselines.compare(duck.loc[shared], view.loc[shared], abs_tol=baselines.curated_tolerances())]
    result["mismatches"] = mismatches
    return result


def run_scale(scale: float, engine: str, seed: int, conf: Path, workdir: Path | None,
              incremental: bool) -> dict[str, Any]:
    """Generate, run every stage, the baselines and (optionally) an incremental batch at ``scale``
    with the Delta engine ``engine``."""
    from carelake.config import load_config
    from carelake.delta import open_tables
    from carelake.generate import generate
    from carelake.spark import build_session

    base = Path(tempfile.mkdtemp(prefix=f"carelake-bench-{scale}-{engine}-", dir=workdir))
    lake, landing = base / "lake", base / "landing"
    config = load_config(conf).with_overrides(**{"lakehouse.root": str(lake), "lakehouse.landing": str(landing),
                                                 "delta.engine": engine})
    result: dict[str, Any] = {"scale": scale, "engine": engine, "seed": seed, "workdir": str(base),
                              "load_before": load1(), "cpus": os.cpu_count(), "errors": []}
    started = time.perf_counter()
    generate(landing, config, scale=scale, seed=seed, defect_rate=0.01)
    result["generate_s"] = round(time.perf_counter() - started, 3)
    landed = [p.stat().st_size for p in landing.rglob("*") if p.is_file()]
    result["landing_files"], result["landing_bytes"] = len(landed), sum(landed)
    # Keep every job's record: the per-stage job counts read them back.
    spark = build_session(config, extra_conf={"spark.ui.enabled": "false", "spark.ui.retainedJobs": "100000"})
    resolved = open_tables(spark, config).engine
    if resolved != engine:
        raise RuntimeError(f"delta.engine {engine!r} was asked for but the session resolved {resolved!r}")
    stages = stage_order()
    with MemorySampler() as sampler:
        print(f"scale {scale} on {engine}: full run {stages}", flush=True)
        result["stages"] = run_stages(spark, config, stages, lake, sampler)
        aggregates = next((s["wall_s"] for s in result["stages"] if s["stage"] == "aggregates"), None)
        # A failing part is recorded, not raised: the full-run figures already measured stay.
        try:
            result["baselines"] = run_baselines(spark, config, aggregates)
        except Exception as exc:
            result["errors"].append(f"baselines: {type(exc).__name__}: {exc}")
        if incremental:
            try:
                batch = write_increment(landing, config, scale=scale, seed=seed)
                print(f"scale {scale} on {engine}: incremental run, batch {batch}", flush=True)
                result["incremental"] = {"batch": batch, "stages": run_stages(spark, config, stages, lake, sampler)}
            except Exception as exc:
                result["errors"].append(f"incremental: {type(exc).__name__}: {exc}")
        for error in result["errors"]:
            print(f"scale {scale} on {engine}: {error}", flush=True)
    spark.stop()
    result["load_after"] = load1()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="0.0625,0.25,1", help="comma-separated generator scales (1 ≈ 100k encounters)")
    parser.add_argument("--engines", type=parse_engines, default=list(ENGINES),
                        help="comma-separated Delta engines, run in turns (default: jvm,rs)")
    parser.add_argument("--pipeline-runs", type=int, default=1,
                        help="make run's pipeline timed this many times per engine (0: not at all)")
    parser.add_argument("--pipeline-scale", type=float, default=1.0, help="the scale of the pipeline runs")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="results folder")
    parser.add_argument("--conf", type=Path, default=REPO / "conf" / "local.yaml")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", type=Path, default=None, help="where temp lakehouses go (default: system temp)")
    parser.add_argument("--no-incremental", action="store_true", help="skip the 1%% incremental run")
    parser.add_argument("--keep", action="store_true", help="keep the temp lakehouses")
    parser.add_argument("--stamp", default=None, help="results file name stem (default: today's date)")
    parser.add_argument("--one-scale", type=float, help=argparse.SUPPRESS)  # child process mode
    parser.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    if args.one_scale is not None:
        result = run_scale(args.one_scale, args.engine, args.seed, args.conf, args.workdir, not args.no_incremental)
        args.result.write_text(json.dumps(result, default=str))
        if not args.keep:
            shutil.rmtree(result["workdir"], ignore_errors=True)
        return 0

    command = "python -m bench.run " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    scales = [float(s) for s in args.scales.split(",") if s.strip()]
    results = [run_child(scale, engine, args) for scale, engine in alternated(scales, args.engines)]
    pipelines = [time_pipeline(engine, args.pipeline_scale, args.seed, args.conf, args.workdir, args.keep)
                 for _, engine in alternated(list(range(args.pipeline_runs)), args.engines, start=len(scales))]
    stamp = args.stamp or datetime.now(timezone.utc).strftime("%Y-%m-%d")
    for path in write_results(results, args.out, stamp, command, pipelines):
        print(path)
    return 0


def run_child(scale: float, engine: str, args: argparse.Namespace) -> dict[str, Any]:
    """One scale on one engine in a process of its own; a failed child is recorded, not raised,
    so the runs already measured still reach the results files."""
    load_before = load1()
    with tempfile.TemporaryDirectory(prefix="carelake-bench-result-") as tmp:
        out = Path(tmp) / "result.json"
        child = [sys.executable, str(Path(__file__).resolve()), "--one-scale", str(scale), "--engine", engine,
                 "--result", str(out), "--seed", str(args.seed), "--conf", str(args.conf)]
        child += ["--workdir", str(args.workdir)] if args.workdir else []
        child += ["--no-incremental"] if args.no_incremental else []
        child += ["--keep"] if args.keep else []
        code = subprocess.run(child).returncode
        if code == 0 and out.exists():
            return json.loads(out.read_text())
    print(f"scale {scale} on {engine}: the run exited {code}", flush=True)
    return {"scale": scale, "engine": engine, "load_before": load_before, "load_after": load1(),
            "generate_s": None, "stages": [], "errors": [f"the run's process exited {code} (its output is above)"]}


if __name__ == "__main__":
    sys.exit(main())
