"""Benchmark carelake as data grows: full runs at several scales, a ~1% incremental run, and the
provider aggregates beside DuckDB and pandas on the same input.

    python -m bench.run --scales 0.0625,0.25,1 --out bench/results      (or: make bench)

Each scale runs in its own Python process (one Spark session, fresh temp lakehouse), so memory
peaks and JVM warm-up do not leak from one scale into the next. See docs/benchmark.md.
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
from bench.probe import MemorySampler, usage_growth, zone_usage  # noqa: E402
from bench.report import write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REPEATS = 2  # baseline timings: best of this many, to damp noise from other processes


def stage_order() -> list[str]:
    """Every stage the pipeline knows, maintenance last (it compacts what the others wrote)."""
    from carelake.pipeline import STAGES

    return [s for s in STAGES if s != "maintain"] + (["maintain"] if "maintain" in STAGES else [])


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


def run_scale(scale: float, seed: int, conf: Path, workdir: Path | None, incremental: bool) -> dict[str, Any]:
    """Generate, run every stage, the baselines and (optionally) an incremental batch at ``scale``."""
    from carelake.config import load_config
    from carelake.generate import generate
    from carelake.spark import build_session

    base = Path(tempfile.mkdtemp(prefix=f"carelake-bench-{scale}-", dir=workdir))
    lake, landing = base / "lake", base / "landing"
    config = load_config(conf).with_overrides(**{"lakehouse.root": str(lake), "lakehouse.landing": str(landing)})
    result: dict[str, Any] = {"scale": scale, "seed": seed, "workdir": str(base), "load_before": load1(),
                              "cpus": os.cpu_count(), "errors": []}
    started = time.perf_counter()
    generate(landing, config, scale=scale, seed=seed, defect_rate=0.01)
    result["generate_s"] = round(time.perf_counter() - started, 3)
    landed = [p.stat().st_size for p in landing.rglob("*") if p.is_file()]
    result["landing_files"], result["landing_bytes"] = len(landed), sum(landed)
    # Keep every job's record: the per-stage job counts read them back.
    spark = build_session(config, extra_conf={"spark.ui.enabled": "false", "spark.ui.retainedJobs": "100000"})
    stages = stage_order()
    with MemorySampler() as sampler:
        print(f"scale {scale}: full run {stages}", flush=True)
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
                print(f"scale {scale}: incremental run, batch {batch}", flush=True)
                result["incremental"] = {"batch": batch, "stages": run_stages(spark, config, stages, lake, sampler)}
            except Exception as exc:
                result["errors"].append(f"incremental: {type(exc).__name__}: {exc}")
        for error in result["errors"]:
            print(f"scale {scale}: {error}", flush=True)
    spark.stop()
    result["load_after"] = load1()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="0.0625,0.25,1", help="comma-separated generator scales (1 ≈ 100k encounters)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="results folder")
    parser.add_argument("--conf", type=Path, default=REPO / "conf" / "local.yaml")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", type=Path, default=None, help="where temp lakehouses go (default: system temp)")
    parser.add_argument("--no-incremental", action="store_true", help="skip the 1%% incremental run")
    parser.add_argument("--keep", action="store_true", help="keep the temp lakehouses")
    parser.add_argument("--stamp", default=None, help="results file name stem (default: today's date)")
    parser.add_argument("--one-scale", type=float, help=argparse.SUPPRESS)  # child process mode
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    if args.one_scale is not None:
        result = run_scale(args.one_scale, args.seed, args.conf, args.workdir, not args.no_incremental)
        args.result.write_text(json.dumps(result, default=str))
        if not args.keep:
            shutil.rmtree(result["workdir"], ignore_errors=True)
        return 0

    command = "python -m bench.run " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    results = []
    with tempfile.TemporaryDirectory(prefix="carelake-bench-results-") as tmp:
        for scale in (float(s) for s in args.scales.split(",")):
            out = Path(tmp) / f"{scale}.json"
            child = [sys.executable, str(Path(__file__).resolve()), "--one-scale", str(scale), "--result", str(out),
                     "--seed", str(args.seed), "--conf", str(args.conf)]
            child += ["--workdir", str(args.workdir)] if args.workdir else []
            child += ["--no-incremental"] if args.no_incremental else []
            child += ["--keep"] if args.keep else []
            subprocess.run(child, check=True)
            results.append(json.loads(out.read_text()))
    stamp = args.stamp or datetime.now(timezone.utc).strftime("%Y-%m-%d")
    for path in write_results(results, args.out, stamp, command):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
