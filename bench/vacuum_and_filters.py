"""Two fixed costs at small sizes: VACUUM's listing tasks, and IN filters on many values.

    python -m bench.vacuum_and_filters [--parallelism 10000] [--ids 2000,20000,80000]

1. Writes a two-file Delta table, compacts it and vacuums it twice (1 h, then 0 h retention)
   with the jvm engine, in a local[2] session whose ``parallelPartitionDiscovery.parallelism``
   is ``--parallelism``; prints each vacuum's seconds and the most tasks any job had.
2. Counts the rows of a 1,000-row frame NOT IN a list of ``--ids`` values, once with
   ``Column.isin`` and once with ``Rows.column()`` (SQL text).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallelism", default="10000")
    parser.add_argument("--ids", default="2000,20000,80000")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import functions as F

    from carelake.config import load_config
    from carelake.delta import Rows, open_tables
    from carelake.spark import build_session

    root = tempfile.mkdtemp(prefix="carelake-bench-vacuum-")
    config = load_config(REPO / "conf" / "local.yaml", env={}).with_overrides(
        **{"lakehouse.root": root, "spark.master": "local[2]", "lineage.enabled": False})
    spark = build_session(config, extra_conf={
        "spark.sql.shuffle.partitions": "2", "spark.sql.adaptive.enabled": "false",
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": args.parallelism})
    tables, tracker = open_tables(spark, config), spark.sparkContext.statusTracker()
    uri = f"{root}/curated/vacuum_bench"
    for part in range(2):
        tables.write(spark.range(part, part + 1).coalesce(1), uri)
    tables.optimize(uri)
    tables.set_properties(uri, {"delta.deletedFileRetentionDuration": "interval 0 hours"})
    for hours in (1, 0):
        spark.sparkContext.setJobGroup(f"vacuum-{hours}", f"vacuum {hours} h")
        started = time.perf_counter()
        deleted = tables.vacuum(uri, retention_hours=hours)
        seconds = time.perf_counter() - started
        tasks = max((tracker.getStageInfo(s).numTasks for j in tracker.getJobIdsForGroup(f"vacuum-{hours}")
                     for s in (tracker.getJobInfo(j).stageIds if tracker.getJobInfo(j) else []) if tracker.getStageInfo(s)),
                    default=0)
        print(f"vacuum retention {hours} h: {seconds:.1f} s, {len(deleted)} file(s), most tasks in a job {tasks}", flush=True)
    frame = spark.range(1000).select(F.concat(F.lit("run-"), F.col("id").cast("string")).alias("b")).cache()
    frame.count()
    for n in (int(x) for x in args.ids.split(",")):
        ids = [f"run-{i}" for i in range(n)]
        started = time.perf_counter()
        by_isin = frame.where(~F.col("b").isin(ids)).count()
        isin_s = time.perf_counter() - started
        started = time.perf_counter()
        by_text = frame.where(~Rows.where(b=ids).column()).count()
        text_s = time.perf_counter() - started
        assert by_isin == by_text
        print(f"NOT IN {n} ids: Column.isin {isin_s:.2f} s, Rows.column() {text_s:.2f} s", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
