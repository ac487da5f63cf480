"""How many Spark jobs each stage of a full pipeline run starts, and from which Python lines.

    python -m bench.jobs --scale 0.0625 [--engine jvm] [--stages ingest,process] [--incremental] [--json out.json]

Generates data at ``scale`` into a temp lakehouse and runs the stages of ``make run`` in order in
one Spark session (as ``bench.run`` does), each under a job group of its own; the session's status tracker
then lists the jobs of each group. Each job is named after the line that started it (PySpark's
call site, carried by the job's last stage). Unlike wall times, job counts do not depend on the
machine's load, so they are the figure to compare between two versions of the code: the fixed
cost of a Spark job (~0.1-0.3 s here) makes them what matters at small scales.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.increment import write_increment  # noqa: E402
from bench.run import parse_engines  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def call_site(name: str) -> str:
    """``collect at /abs/lib/carelake/x.py:123`` -> ``lib/carelake/x.py:123 collect``."""
    action, _, where = name.partition(" at ")
    where = where.split("site-packages/")[-1].replace(str(REPO) + "/", "")
    return f"{where} {action}".strip()


def jobs_of_group(spark: Any, group: str) -> Counter[str]:
    """Jobs of job group ``group`` counted per call site."""
    tracker = spark.sparkContext.statusTracker()
    sites: Counter[str] = Counter()
    for job_id in tracker.getJobIdsForGroup(group):
        job = tracker.getJobInfo(job_id)
        # A job's result stage is created after its parents, so it has the highest id.
        stage = tracker.getStageInfo(max(job.stageIds)) if job and job.stageIds else None
        sites[call_site(stage.name) if stage else "?"] += 1
    return sites


def count_stage_jobs(spark: Any, config: Any, stages: list[str], top: int) -> list[dict[str, Any]]:
    """Run each of ``stages`` alone; per stage its status, wall time, jobs and busiest call sites."""
    from carelake.pipeline import run_pipeline

    context = spark.sparkContext
    out = []
    for name in stages:
        group = f"jobs-{name}-{time.monotonic_ns()}"
        context.setJobGroup(group, f"bench stage {name}")
        started = time.perf_counter()
        summary = run_pipeline(spark, config, [name])
        wall = time.perf_counter() - started
        context.setLocalProperty("spark.jobGroup.id", None)
        sites = jobs_of_group(spark, group)
        out.append({"stage": name, "status": summary.stages[0].status, "wall_s": round(wall, 1),
                    "spark_jobs": sum(sites.values()), "load1": round(os.getloadavg()[0], 2),
                    "call_sites": dict(sites.most_common(top))})
        print(f"  {name}: {summary.stages[0].status}, {sum(sites.values())} Spark jobs, {wall:.1f} s wall, "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
        for site, n in sites.most_common(top):
            print(f"    {n:>5}  {site}", flush=True)
    return out


def jobs_table(before: dict[str, Any], after: dict[str, Any], run: str = "full") -> str:
    """A Markdown table of Spark jobs and wall seconds per stage, ``before`` beside ``after``
    (two results of this module; stages of ``after`` in its order)."""
    old = {s["stage"]: s for s in before.get(run, [])}
    lines = ["| stage | jobs before | jobs after | change | wall s before | wall s after |",
             "|---|---:|---:|---:|---:|---:|"]
    totals = [0, 0]
    for stage in after.get(run, []):
        was = old.get(stage["stage"], {})
        jobs = (was.get("spark_jobs"), stage["spark_jobs"])
        change = f"{jobs[1] - jobs[0]:+d}" if jobs[0] is not None else "-"
        lines.append(f"| {stage['stage']} | {jobs[0] if jobs[0] is not None else '-'} | {jobs[1]} | {change} "
                     f"| {was.get('wall_s', '-')} | {stage['wall_s']} |")
        totals = [totals[0] + (jobs[0] or 0), totals[1] + jobs[1]]
    lines.append(f"| all | {totals[0]} | {totals[1]} | {totals[1] - totals[0]:+d} | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from carelake.config import load_config
    from carelake.generate import generate
    from carelake.pipeline import DEFAULT_STAGES
    from carelake.spark import build_session

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.0625)
    parser.add_argument("--engine", type=parse_engines, default=["jvm"], help="the Delta engine (one)")
    parser.add_argument("--stages", default=",".join(DEFAULT_STAGES),
                        help="comma-separated stages, in order (default: make run's)")
    parser.add_argument("--incremental", action="store_true", help="then a ~1%% batch through every stage")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--top", type=int, default=8, help="call sites listed per stage")
    parser.add_argument("--conf", type=Path, default=REPO / "conf" / "local.yaml")
    parser.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE",
                        help="a Spark setting on top of the config's (repeatable), to compare settings")
    parser.add_argument("--json", type=Path, help="write the counts here")
    parser.add_argument("--keep", action="store_true", help="keep the temp lakehouse")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"),
                        help="only print the Markdown table of two --json results")
    args = parser.parse_args(argv)
    if args.compare:
        before, after = (json.loads(p.read_text()) for p in args.compare)
        print(jobs_table(before, after), end="")
        return 0
    if len(args.engine) != 1:
        parser.error("--engine: one engine")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    base = Path(tempfile.mkdtemp(prefix="carelake-bench-jobs-"))
    lake, landing = base / "lake", base / "landing"
    config = load_config(args.conf).with_overrides(
        **{"lakehouse.root": str(lake), "lakehouse.landing": str(landing), "delta.engine": args.engine[0]})
    generate(landing, config, scale=args.scale, seed=args.seed, defect_rate=0.01)
    # The status tracker forgets jobs and stages beyond these limits.
    settings = dict(item.split("=", 1) for item in args.spark_conf)
    spark = build_session(config, extra_conf={**settings, "spark.ui.enabled": "false", "spark.ui.retainedJobs": "100000",
                                              "spark.ui.retainedStages": "100000"})
    result: dict[str, Any] = {"scale": args.scale, "engine": args.engine[0], "seed": args.seed, "spark_conf": settings,
                              "command": "python -m bench.jobs " + " ".join(argv if argv is not None else sys.argv[1:])}
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    print(f"scale {args.scale} on {args.engine[0]}: full run {stages}", flush=True)
    result["full"] = count_stage_jobs(spark, config, stages, args.top)
    if args.incremental:
        batch = write_increment(landing, config, scale=args.scale, seed=args.seed)
        print(f"incremental run, batch {batch}", flush=True)
        result["incremental"] = count_stage_jobs(spark, config, stages, args.top)
    spark.stop()
    for run in ("full", "incremental"):
        if run in result:
            print(f"{run}: " + ", ".join(f"{s['stage']} {s['spark_jobs']}" for s in result[run])
                  + f"; {sum(s['spark_jobs'] for s in result[run])} Spark jobs in all")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
