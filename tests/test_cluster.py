"""A standalone master + worker on loopback runs a spark-submit job on separate executors; a
taken port stops the start with a message naming the port and the flag that changes it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from carelake.cli import build_parser, main
from carelake.config import load_config
from carelake.serve.cluster import Cluster, ClusterError, free_port, spark_home, start_cluster

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One worker, one core, 1 GB, on free ports (7077 may be in use); stopped (and its processes
    reaped) after the module."""
    running = start_cluster(
        workers=1, cores=1, memory="1g", base_dir=tmp_path_factory.mktemp("cluster"),
        port=free_port(), webui_port=free_port(),
    )
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


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 something is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_taken_master_port_stops_the_start_naming_port_and_flag(taken_port: int, tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=rf"^master port {taken_port} on 127\.0\.0\.1 is already in use .* --port$"):
        start_cluster(base_dir=tmp_path, port=taken_port, webui_port=free_port())
    assert not (tmp_path / "logs").exists()  # nothing was started


def test_a_taken_web_ui_port_stops_the_start_naming_the_flag(taken_port: int, tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match=rf"^master web UI port {taken_port} .* --webui-port$"):
        start_cluster(base_dir=tmp_path, port=free_port(), webui_port=taken_port)


def test_carelake_cluster_exits_1_with_the_reason_when_its_port_is_taken(
    taken_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cluster", "--port", str(taken_port), "--webui-port", str(free_port())]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"carelake cluster: master port {taken_port} on 127.0.0.1 is already in use")


def test_carelake_cluster_defaults_to_the_master_conf_cluster_yaml_names() -> None:
    args = build_parser().parse_args(["cluster"])
    assert (args.port, args.webui_port) == (7077, 8080)
    assert load_config(REPO / "conf" / "cluster.yaml", env={}).spark_master == "spark://127.0.0.1:7077"
