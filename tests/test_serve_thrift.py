"""The Thrift server end to end: subprocesses serving tiny lakehouses, queried over HiveServer2.

With the Delta jars (``make setup``) the catalog holds Delta tables, read at their latest commit
by every query; without them (simulated by switching the Delta extension off) it holds views
over the Python data source.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake
from pyspark.sql import SparkSession

from carelake.config import Config, load_config
from carelake.delta import open_tables
from carelake.serve.catalog import discover_tables, metastore_conf
from carelake.spark.jvm_deps import fetched_jars

hive = pytest.importorskip("pyhive.hive", reason="PyHive is not installed (pip install pyhive thrift thrift-sasl pure-sasl)")

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 150
SPARK_SUBMIT = Path(sys.executable).parent / "spark-submit"
needs_delta_jars = pytest.mark.skipif(not fetched_jars(), reason="Delta jars not fetched (run make setup)")
# Spark without Delta's extension and catalog: what the rs engine serves from.
WITHOUT_DELTA = {
    "CARELAKE_SPARK__CONF__spark.sql.extensions": '""',
    "CARELAKE_SPARK__CONF__spark.sql.catalog.spark_catalog": "builtin",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(root: Path) -> Config:
    return load_config(REPO / "conf" / "local.yaml", env={}).with_overrides(**{"lakehouse.root": str(root)})


def _server_env(root: Path, extra: Mapping[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "CARELAKE_LAKEHOUSE__ROOT": str(root),
        "CARELAKE_SPARK__MASTER": "local[1]",
        "CARELAKE_SPARK__CONF__spark.driver.memory": "1g",
        "CARELAKE_SPARK__CONF__spark.ui.enabled": "false",
        "CARELAKE_SPARK__CONF__spark.sql.shuffle.partitions": "1",
        "CARELAKE_SPARK__CONF__spark.sql.adaptive.enabled": "false",
        # Delta rebuilds a snapshot in 50 tasks by default: far too many for one-file tables.
        "CARELAKE_SPARK__CONF__spark.databricks.delta.snapshotPartitions": "1",
        # No timer: a test sees a change without a refresh, or sends SIGHUP for one.
        "CARELAKE_SERVE__REFRESH_SECONDS": "0",
        "PYSPARK_PYTHON": sys.executable,
        **extra,
    }


def _stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def _serving(command: list[str], env: dict[str, str], log: Path, ready: bytes, port: int) -> Iterator[subprocess.Popen]:
    """Run ``command`` until ``ready`` shows in its output and ``port`` accepts connections;
    stopped with SIGTERM (killed if stuck)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while ready not in log.read_bytes() or not _accepts(port):
            if proc.poll() is not None:
                pytest.fail(f"{command[0]} exited with {proc.returncode} before serving:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{command[0]} not serving after {START_TIMEOUT} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield proc
    finally:
        _stop(proc)


def _carelake_server(root: Path, port: int, log: Path, extra_env: Mapping[str, str]):
    command = [sys.executable, "-m", "carelake.serve", "--conf", str(REPO / "conf" / "local.yaml"), "--port", str(port)]
    return _serving(command, _server_env(root, extra_env), log, b"(Ctrl-C to stop)", port)


def _write_lakehouse(root: Path) -> None:
    """Tiny Delta tables: curated.provider_features (3 rows), processed.encounters (2), and the
    patient identifiers and quarantine of two hospitals that role views must filter."""
    write_deltalake(
        str(root / "curated" / "provider_features"),
        pa.table({"npi": ["1234567893", "1245319599", "1003000126"], "score": [0.5, 0.7, 0.9]}),
    )
    write_deltalake(
        str(root / "processed" / "encounters"),
        pa.table({"encounter_id": ["e1", "e2"], "npi": ["1234567893", "1245319599"]}),
    )
    write_deltalake(
        str(root / "processed" / "patients_pii"),
        pa.table({
            "patient_key": ["ka", "kb"],
            "source_system": ["hospital_a", "hospital_b"],
            "last_name": ["Lee", "Roe"],
            "ssn": ["123-45-6789", "987-65-4321"],
        }),
    )
    write_deltalake(
        str(root / "processed" / "_quarantine"),
        pa.table({"entity": ["patients"], "source_system": ["hospital_a"], "raw_payload": ['{"ssn": "1"}']}),
    )
    (root / "processed" / "not_a_table").mkdir()


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lakehouse the default (Delta) server serves; tests append to and drop its tables."""
    root = tmp_path_factory.mktemp("served_lakehouse")
    _write_lakehouse(root)
    return root


@pytest.fixture(scope="module")
def server(lakehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, subprocess.Popen, Path]]:
    """``python -m carelake.serve`` over ``lakehouse`` on a free port: (port, process, log)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("thrift") / "server.log"
    with _carelake_server(lakehouse, port, log, {}) as proc:
        yield port, proc, log


def _query(port: int, sql: str) -> list[tuple]:
    connection = hive.connect(host="127.0.0.1", port=port, username="carelake")
    try:
        cursor = connection.cursor()
        cursor.execute(sql)
        return cursor.fetchall()
    finally:
        connection.close()


def _tables(port: int, database: str) -> set[str]:
    return {row[1] for row in _query(port, f"SHOW TABLES IN {database}")}


def _refresh(proc: subprocess.Popen, log: Path) -> None:
    """SIGHUP the server and wait until its refresh has run (allowing for a loaded machine)."""
    done = log.read_bytes().count(b"catalog refreshed")
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 120
    while log.read_bytes().count(b"catalog refreshed") == done:
        assert b"catalog refresh failed" not in log.read_bytes(), log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no refresh within 120 s:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)


def test_discover_tables_finds_folders_with_a_delta_log(lakehouse: Path) -> None:
    found = [(t.zone, t.name) for t in discover_tables(_config(lakehouse))]
    assert found == [
        ("curated", "provider_features"),
        ("processed", "_quarantine"),
        ("processed", "encounters"),
        ("processed", "patients_pii"),
    ]


@pytest.mark.slow
def test_thrift_server_serves_zone_tables_and_survives_errors(server) -> None:
    port, _, _ = server
    assert _query(port, "SELECT count(*) FROM processed.encounters") == [(2,)]
    assert {row[0] for row in _query(port, "SHOW DATABASES")} >= {"raw", "processed", "curated"}
    with pytest.raises(hive.OperationalError, match="TABLE_OR_VIEW_NOT_FOUND"):
        _query(port, "SELECT * FROM curated.no_such_table")
    assert _query(port, "SELECT npi FROM processed.encounters WHERE encounter_id = 'e2'") == [("1245319599",)]
    assert "not_a_table" not in _tables(port, "processed")


@pytest.mark.slow
@needs_delta_jars
def test_catalog_entries_are_delta_tables_at_the_table_location(server, lakehouse: Path) -> None:
    port, _, _ = server
    detail = _query(port, "DESCRIBE DETAIL processed.encounters")[0]
    assert detail[0] == "delta"
    assert detail[4] == f"file:{lakehouse / 'processed' / 'encounters'}"
    extended = {row[0]: row[1] for row in _query(port, "DESCRIBE EXTENDED processed.encounters")}
    assert extended["Provider"] == "delta"
    assert extended["Type"] == "EXTERNAL"
    assert extended["Location"] == f"file:{lakehouse / 'processed' / 'encounters'}"


@pytest.mark.slow
@needs_delta_jars
def test_new_commits_and_schema_changes_are_visible_without_a_refresh(
    server, lakehouse: Path, spark: SparkSession
) -> None:
    port, _, log = server
    uri = str(lakehouse / "curated" / "provider_features")
    assert _query(port, "SELECT count(*) FROM curated.provider_features") == [(3,)]
    # One commit that appends a row and adds a column (the table API, this process's engine).
    open_tables(spark, _config(lakehouse)).write(
        spark.createDataFrame([("1588667638", 0.3, "gold")], "npi string, score double, tier string"),
        uri, mode="append", schema_mode="merge",
    )
    assert _query(port, "SELECT count(*) FROM curated.provider_features") == [(4,)]
    assert _query(port, "SELECT npi, tier FROM curated.provider_features WHERE tier IS NOT NULL") == [
        ("1588667638", "gold")
    ]
    assert b"catalog refreshed" not in log.read_bytes()


@pytest.mark.slow
def test_role_databases_hold_only_what_each_role_may_see(server) -> None:
    port, _, _ = server
    # conf's access.roles: analyst (curated only), clinician of hospital_a/b/c, engineer.
    assert _tables(port, "analyst") == {"curated__provider_features"}
    with pytest.raises(hive.OperationalError, match="TABLE_OR_VIEW_NOT_FOUND"):
        _query(port, "SELECT * FROM analyst.processed__patients_pii")
    assert _query(port, "SELECT patient_key, last_name, ssn FROM clinician_hospital_a.processed__patients_pii") == [
        ("ka", "Lee", "***-**-6789")
    ]
    assert "processed___quarantine" not in _tables(port, "clinician_hospital_a")
    engineer = _tables(port, "engineer")
    assert "processed___quarantine" in engineer
    assert "processed__patients_pii" not in engineer


@pytest.mark.slow
def test_refresh_adds_new_tables_and_drops_gone_ones(server, lakehouse: Path) -> None:
    port, proc, log = server
    write_deltalake(str(lakehouse / "raw" / "providers"), pa.table({"npi": ["1", "2", "3", "4"]}))
    shutil.rmtree(lakehouse / "processed" / "encounters")
    _refresh(proc, log)
    assert _query(port, "SELECT count(*) FROM raw.providers") == [(4,)]
    assert "encounters" not in _tables(port, "processed")
    assert "processed__encounters" not in _tables(port, "engineer")
    assert "raw__providers" in _tables(port, "engineer")


@pytest.mark.slow
@needs_delta_jars
@pytest.mark.skipif(not SPARK_SUBMIT.exists(), reason=f"{SPARK_SUBMIT} not found (pip pyspark installs it)")
def test_stock_thrift_server_serves_the_same_delta_catalog(server, lakehouse: Path, tmp_path: Path) -> None:
    """``spark-submit --class ...HiveThriftServer2`` on the metastore the carelake server left:
    spark-defaults.conf gives it the Delta extension and catalog."""
    _, proc, _ = server
    assert _stop(proc) == 0  # Derby admits one process; the carelake server stops cleanly on SIGTERM
    port = _free_port()
    settings = {
        **metastore_conf(_config(lakehouse)),
        "spark.ui.enabled": "false",
        "spark.driver.memory": "1g",
        "spark.databricks.delta.snapshotPartitions": "1",
    }
    command = [
        str(SPARK_SUBMIT), "--class", "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2",
        "--master", "local[1]",
        *(arg for key, value in settings.items() for arg in ("--conf", f"{key}={value}")),
        "--hiveconf", f"hive.server2.thrift.port={port}", "--hiveconf", "hive.server2.thrift.bind.host=127.0.0.1",
        "spark-internal",
    ]
    with _serving(command, {**os.environ}, tmp_path / "stock.log", b"HiveThriftServer2 started", port):
        assert _query(port, "SELECT count(*) FROM processed.patients_pii") == [(2,)]
        assert _query(port, "DESCRIBE DETAIL processed.patients_pii")[0][0] == "delta"
        assert _query(port, "SELECT patient_key FROM clinician_hospital_b.processed__patients_pii") == [("kb",)]


@pytest.mark.slow
def test_without_delta_classes_tables_are_views_over_the_python_source(tmp_path: Path) -> None:
    root = tmp_path / "lakehouse"
    _write_lakehouse(root)
    port = _free_port()
    with _carelake_server(root, port, tmp_path / "server.log", WITHOUT_DELTA) as proc:
        # Rows come through the server's Python workers (the carelake data source).
        assert _query(port, "SELECT count(*) FROM curated.provider_features") == [(3,)]
        extended = {row[0]: row[1] for row in _query(port, "DESCRIBE EXTENDED curated.provider_features")}
        assert extended["Type"] == "VIEW"
        assert _query(port, "SELECT last_name FROM clinician_hospital_b.processed__patients_pii") == [("Roe",)]
        assert _stop(proc) == 0
