"""Diagnostic job: proves work runs on executors, not in the driver.

`spark-submit --master spark://127.0.0.1:7077 jobs/cluster_check.py [--conf conf/cluster.yaml]`
runs a mapInArrow and a Python UDF over a few partitions and prints one JSON line
(``cluster_check {...}``) with the master, the driver's process ids and the process ids that
did the work; exit code 1 when any task ran inside the driver's processes.
"""

import argparse
import json
import os
import sys
from collections.abc import Iterator

import pyarrow as pa
from pyspark.sql import functions as F
from pyspark.sql.types import LongType

from carelake.config import load_config
from carelake.spark import build_session


def _task_processes(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Per partition: the Python worker's pid, its parent's pid and the rows it saw."""
    rows = sum(batch.num_rows for batch in batches)
    yield pa.RecordBatch.from_pydict(
        {"worker_pid": [os.getpid()], "worker_parent_pid": [os.getppid()], "rows": [rows]}
    )


def main(argv: list[str]) -> int:
    """Run the check; prints ``cluster_check <json>``; 0 when no task ran in the driver."""
    parser = argparse.ArgumentParser(prog="cluster_check")
    parser.add_argument("--conf", default=None)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)
    spark = build_session(load_config(args.conf))
    try:
        data = spark.range(args.rows, numPartitions=args.partitions)
        pids = data.mapInArrow(_task_processes, "worker_pid long, worker_parent_pid long, rows long").collect()
        udf_pid = F.udf(lambda _: os.getpid(), LongType())
        udf_pids = {r[0] for r in data.select(udf_pid("id")).distinct().collect()}
        total = data.select(F.sum(F.col("id") * 2)).first()[0]
        tracker = spark.sparkContext._jsc.sc().statusTracker()
        report = {
            "master": spark.sparkContext.master,
            "driver_pid": os.getpid(),
            "driver_jvm_pid": spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid(),
            "executors": len(tracker.getExecutorInfos()) - 1,  # the list includes the driver
            "worker_pids": sorted({r["worker_pid"] for r in pids}),
            "worker_parent_pids": sorted({r["worker_parent_pid"] for r in pids}),
            "udf_pids": sorted(udf_pids),
            "rows": sum(r["rows"] for r in pids),
            "sum_doubled": total,
        }
    finally:
        spark.stop()
    print("cluster_check " + json.dumps(report), flush=True)
    driver = {report["driver_pid"], report["driver_jvm_pid"]}
    in_driver = driver & set(report["worker_pids"] + report["worker_parent_pids"] + report["udf_pids"])
    return 1 if in_driver else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
