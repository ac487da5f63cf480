"""What lineage costs ``make run``: ``carelake run`` with lineage on (the default) and off
(``CARELAKE_LINEAGE__ENABLED=false``, which also leaves the Spark listener out), A/B alternated.

    python -m bench.lineage_cost --scale 1 --pairs 2 --warmup --out bench/results/<date>-lineage-cost.json

The landing data is generated once (``make run``'s seed and defect rate) and copied into a fresh
lakehouse root for every run, so every run ingests the same files from nothing. The arms take
turns (on, off, off, on, ...) so that a change in the machine's load falls on both. Each run is
its own process, as ``make run`` runs it; its wall time, per-stage seconds (the run summary),
``lineage_seconds`` and load average are recorded. ``--arms`` adds ``listener-off``
(``CARELAKE_LINEAGE__SPARK=false``: stage events only) to split the cost between the listener
and carelake's stage events.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.pipeline import DEFECT_RATE, _load1, _stage_seconds, _timed, pipeline_env  # noqa: E402
from bench.probe import CpuSampler  # noqa: E402
from bench.run import alternated  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Arm -> the environment it adds to the run.
ARMS: dict[str, dict[str, str]] = {
    "on": {"CARELAKE_LINEAGE__ENABLED": "true"},
    "off": {"CARELAKE_LINEAGE__ENABLED": "false"},
    "listener-off": {"CARELAKE_LINEAGE__ENABLED": "true", "CARELAKE_LINEAGE__SPARK": "false"},
}


def _run_timed(command: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``command`` (output to ``log``): wall time, CPU seconds of its process tree, exit code, load."""
    loads = [_load1()]
    started = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        with CpuSampler(proc.pid) as cpu:
            while True:
                try:
                    proc.wait(timeout=5.0)
                    break
                except subprocess.TimeoutExpired:
                    loads.append(_load1())
    wall = time.perf_counter() - started
    loads.append(_load1())
    return {"wall_s": round(wall, 3), "cpu_s": cpu.seconds, "returncode": proc.returncode, "load1_before": loads[0],
            "load1_mean": round(sum(loads) / len(loads), 2), "load1_max": max(loads), "load1_after": loads[-1]}


def _event_counts(root: Path) -> dict[str, int]:
    folder = root / "_lineage"
    return {p.name: sum(1 for _ in p.open()) for p in sorted(folder.glob("*.jsonl"))} if folder.is_dir() else {}


def time_run(arm: str, landing: Path, conf: Path, workdir: Path | None, engine: str) -> dict[str, Any]:
    """``carelake run`` (the default stages) on a copy of ``landing`` in a fresh root, lineage as ``arm`` says."""
    base = Path(tempfile.mkdtemp(prefix=f"carelake-bench-lineage-{arm}-", dir=workdir))
    root = base / "lake"
    shutil.copytree(landing, root / "landing")
    env = {**pipeline_env(root, engine), **ARMS[arm]}
    print(f"lineage {arm}: carelake run (load {_load1()})", flush=True)
    result: dict[str, Any] = {"arm": arm, **_run_timed([sys.executable, "-m", "carelake.cli", "run", "--conf", str(conf)],
                                                      env, base / "run.log")}
    result.update(_stage_seconds(root))
    summaries = sorted((root / "_runs").glob("*.json"))
    result["lineage_seconds"] = json.loads(summaries[-1].read_text()).get("lineage_seconds") if summaries else None
    result["events"] = _event_counts(root)
    if result["returncode"] != 0:
        result["log_tail"] = (base / "run.log").read_text(errors="replace").splitlines()[-5:]
    print(f"lineage {arm}: {result.get('status')} {result['wall_s']:.1f}s load mean {result['load1_mean']}", flush=True)
    shutil.rmtree(base, ignore_errors=True)
    return result


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def markdown(results: dict[str, Any], command: str) -> str:
    """The runs of ``results`` (as :func:`main` writes them) as Markdown: each run, then the mean
    wall time per arm and stage with the difference against ``off``."""
    runs = results["runs"]
    stages = list(dict.fromkeys(s for r in runs for s in (r.get("stages") or {})))
    lines = [f"# Lineage's cost on `make run` (scale {results['scale']}, {results['engine']} engine)", "",
             f"Command: `{command}`", "",
             f"Landing data generated once (seed {results['seed']}, {results['generate_s']} s) and copied into a "
             "fresh lakehouse root per run; the arms alternate"
             + ("; one warm-up run before them is not recorded." if results.get("warmup") else "."), "",
             "| # | pair | lineage | status | carelake run s | CPU s | " + " | ".join(f"{s} s" for s in stages)
             + " | lineage_seconds | events (carelake / spark) | load1 before / mean / max / after |",
             "|---:|---:|---|---|---:|---:|" + "---:|" * len(stages) + "---:|---|---|"]
    for i, r in enumerate(runs, start=1):
        per = [f"{(r.get('stages') or {}).get(s, {}).get('duration_s', '-')}" for s in stages]
        events = r.get("events") or {}
        lines.append(
            f"| {i} | {r['pair'] + 1} | {r['arm']} | {r.get('status', 'failed')} | {r['wall_s']:.1f} | {r.get('cpu_s', '-')} | "
            + " | ".join(per)
            + f" | {r.get('lineage_seconds') if r.get('lineage_seconds') is not None else '-'} | "
            f"{events.get('carelake.jsonl', '-')} / {events.get('spark.jsonl', '-')} | "
            f"{r['load1_before']} / {r['load1_mean']} / {r['load1_max']} / {r['load1_after']} |")
    arms = list(dict.fromkeys(r["arm"] for r in runs))
    ok = [r for r in runs if r["returncode"] == 0]
    mean = {a: {"wall": _mean([r["wall_s"] for r in ok if r["arm"] == a]),
                "cpu": _mean([r["cpu_s"] for r in ok if r["arm"] == a and r.get("cpu_s") is not None]),
                **{s: _mean([r["stages"][s]["duration_s"] for r in ok if r["arm"] == a and s in (r.get("stages") or {})])
                   for s in stages}} for a in arms}
    lines += ["", "## Mean per arm", "", "| lineage | runs | carelake run s | CPU s | " + " | ".join(f"{s} s" for s in stages) + " |",
              "|---|---:|---:|---:|" + "---:|" * len(stages)]
    for a in arms:
        lines.append(f"| {a} | {sum(r['arm'] == a for r in ok)} | {mean[a]['wall']} | {mean[a]['cpu']} | "
                     + " | ".join(str(mean[a][s]) for s in stages) + " |")
    if "off" in mean and mean["off"]["wall"]:
        lines += ["", "| against off | carelake run | CPU | " + " | ".join(stages) + " |", "|---|---:|---:|" + "---:|" * len(stages)]
        for a in (a for a in arms if a != "off"):
            cells = []
            for key in ("wall", "cpu", *stages):
                on, off = mean[a][key], mean["off"][key]
                cells.append("-" if on is None or not off else f"{on - off:+.1f} s ({(on - off) / off:+.1%})")
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--arms", default="on,off", help=f"comma-separated, from {', '.join(ARMS)}")
    parser.add_argument("--engine", default="jvm")
    parser.add_argument("--months", type=int, default=24, help="months generated (default 24, as make run)")
    parser.add_argument("--conf", type=Path, default=REPO / "conf" / "local.yaml")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True, help="JSON file of the runs")
    parser.add_argument("--markdown", type=Path, default=None, help="also the runs as Markdown tables here")
    parser.add_argument("--warmup", action="store_true",
                        help="one run (lineage on) before the timed ones, not recorded: the first run after "
                             "generating pays for a cold page cache and JIT, which would fall on one arm")
    parser.add_argument("--report-only", action="store_true", help="no runs: --out's JSON as --markdown")
    args = parser.parse_args(argv)
    command = "python -m bench.lineage_cost " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.report_only:
        args.markdown.write_text(markdown(json.loads(args.out.read_text()), command))
        return 0
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        parser.error(f"--arms: expected names from {', '.join(ARMS)}, found {', '.join(unknown)}")

    data = Path(tempfile.mkdtemp(prefix="carelake-bench-lineage-landing-", dir=args.workdir))
    env = pipeline_env(data / "lake", args.engine)
    generated = _timed([sys.executable, "-m", "carelake.cli", "generate", "--conf", str(args.conf), "--scale",
                        str(args.scale), "--seed", str(args.seed), "--defect-rate", str(DEFECT_RATE), "--months", str(args.months)],
                       env, data / "generate.log")
    if generated["returncode"] != 0:
        print((data / "generate.log").read_text(errors="replace")[-2000:], file=sys.stderr)
        return 1
    if args.warmup:
        print("warm-up run (not recorded)", flush=True)
        warm = time_run("on", data / "lake" / "landing", args.conf, args.workdir, args.engine)
        if warm["returncode"] != 0:
            print("\n".join(warm.get("log_tail", [])), file=sys.stderr)
            return 1
    runs = []
    for pair, arm in alternated(list(range(args.pairs)), arms):
        runs.append({"pair": pair, **time_run(arm, data / "lake" / "landing", args.conf, args.workdir, args.engine)})
        args.out.write_text(json.dumps({"scale": args.scale, "seed": args.seed, "months": args.months, "engine": args.engine,
                                        "generate_s": generated["wall_s"], "warmup": args.warmup, "runs": runs}, indent=2))
    shutil.rmtree(data, ignore_errors=True)
    if args.markdown:
        args.markdown.write_text(markdown(json.loads(args.out.read_text()), command))
    return 0 if all(r["returncode"] == 0 for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
