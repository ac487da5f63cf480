"""A standalone master + worker on loopback runs a spark-submit job on separate executors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from carelake.serve.cluster import Cluster, spark_home, start_cluster

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One worker, one core, 1 GB; stopped (and its processes reaped) after the module."""
    running = start_cluster(workers=1, cores=1, memory="1g", base_dir=tmp_path_factory.mktemp("cluster"))
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.slow
def test_cluster_registers_its_worker(cluster: Cluster) -> None:
    status = cluster.status()
    assert status["url"] == cluster.master_url
    assert [w["state"] for w in status["workers"]] == ["ALIVE"]
    assert status["cores"] == 1


@pytest.mark.slow
def test_spark_submit_runs_tasks_on_executors_not_the_driver(cluster: Cluster, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "CARELAKE_LAKEHOUSE__ROOT": str(tmp_path / "lakehouse"),
    }
    result = subprocess.run(
        [
            str(spark_home() / "bin" / "spark-submit"), "--master", cluster.master_url,
            "--conf", "spark.executor.memory=512m", "--conf", "spark.driver.memory=512m",
            "--conf", "spark.ui.enabled=false",
            str(REPO / "jobs" / "cluster_check.py"), "--conf", str(REPO / "conf" / "cluster.yaml"),
            "--rows", "1000", "--partitions", "3",
        ],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("cluster_check ")]
    assert result.returncode == 0 and lines, f"exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    report = json.loads(lines[0].removeprefix("cluster_check "))
    assert report["master"] == cluster.master_url
    assert report["executors"] == 1
    assert report["rows"] == 1000
    assert report["sum_doubled"] == 2 * sum(range(1000))
    driver = {report["driver_pid"], report["driver_jvm_pid"]}
    assert not driver & set(report["worker_pids"] + report["worker_parent_pids"] + report["udf_pids"])
