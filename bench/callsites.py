"""Where a stage's Spark jobs come from: jobs and seconds per Python call site.

    python -m bench.callsites --scale 0.0625 --stage process [--incremental]

Generates data at ``scale`` into a temp lakehouse, runs the stages before ``--stage`` (and, with
``--incremental``, a full run then a ~1% batch as ``make bench`` makes it), then runs ``--stage``
with the Spark UI on and reads its jobs back from the UI's REST API. PySpark names each job
after the Python line that started it, so the table shows which lines cost the stage its time:
the fixed cost per Spark job (~0.1-0.3 s here) makes the job count what matters at small scales.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.increment import write_increment  # noqa: E402
from bench.run import stage_order  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _seconds(job: dict) -> float:
    fmt = "%Y-%m-%dT%H:%M:%S.%f%Z"
    start, end = job.get("submissionTime"), job.get("completionTime")
    if not start or not end:
        return 0.0
    return (datetime.strptime(end, fmt) - datetime.strptime(start, fmt)).total_seconds()


def jobs_by_callsite(ui_url: str, group: str) -> list[tuple[str, int, float]]:
    """(call site, jobs, seconds) for the jobs of ``group``, most seconds first."""
    with urllib.request.urlopen(f"{ui_url}/api/v1/applications", timeout=10) as r:
        app = json.load(r)[0]["id"]
    with urllib.request.urlopen(f"{ui_url}/api/v1/applications/{app}/jobs", timeout=30) as r:
        jobs = [j for j in json.load(r) if j.get("jobGroup") == group]
    sites: dict[str, list[float]] = defaultdict(list)
    for job in jobs:
        name = job.get("name", "?")
        # "collect at /abs/path/lib/carelake/x.py:123" -> "lib/carelake/x.py:123 collect"
        action, _, where = name.partition(" at ")
        where = where.split("site-packages/")[-1].replace(str(REPO) + "/", "")
        sites[f"{where} {action}"].append(_seconds(job))
    return sorted(((s, len(t), sum(t)) for s, t in sites.items()), key=lambda x: -x[2])


def main(argv: list[str] | None = None) -> int:
    from carelake.config import load_config
    from carelake.generate import generate
    from carelake.pipeline import STAGES, run_pipeline
    from carelake.spark import build_session

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.0625)
    parser.add_argument("--stage", default="process", choices=list(STAGES))
    parser.add_argument("--incremental", action="store_true", help="profile the stage on a ~1%% batch after a full run")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--ui-port", type=int, default=4077)
    args = parser.parse_args(argv)

    base = Path(tempfile.mkdtemp(prefix="carelake-callsites-"))
    lake, landing = base / "lake", base / "landing"
    config = load_config(REPO / "conf" / "local.yaml").with_overrides(
        **{"lakehouse.root": str(lake), "lakehouse.landing": str(landing)})
    generate(landing, config, scale=args.scale, seed=args.seed, defect_rate=0.01)
    spark = build_session(config, extra_conf={"spark.ui.enabled": "true", "spark.ui.port": str(args.ui_port),
                                              "spark.ui.retainedJobs": "100000"})
    order = stage_order()
    before = order[: order.index(args.stage)]
    if args.incremental:
        run_pipeline(spark, config, order)
        write_increment(landing, config, scale=args.scale, seed=args.seed)
    run_pipeline(spark, config, before)
    context = spark.sparkContext
    group = f"callsites-{time.monotonic_ns()}"
    context.setJobGroup(group, args.stage)
    started = time.perf_counter()
    summary = run_pipeline(spark, config, [args.stage])
    wall = time.perf_counter() - started
    rows = jobs_by_callsite(context.uiWebUrl or f"http://127.0.0.1:{args.ui_port}", group)
    total_jobs, total_s = sum(r[1] for r in rows), sum(r[2] for r in rows)
    kind = "incremental" if args.incremental else "full"
    print(f"{args.stage} ({kind}, scale {args.scale}): {summary.stages[0].status}, {wall:.1f} s wall, "
          f"{total_jobs} Spark jobs taking {total_s:.1f} s")
    print(f"{'jobs':>5} {'s':>7}  call site")
    for site, n, seconds in rows[: args.top]:
        print(f"{n:>5} {seconds:>7.1f}  {site}")
    for note in summary.stages[0].notes:
        print(f"note: {note}")
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
