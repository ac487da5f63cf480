"""The Thrift server end to end: a subprocess serving a tiny lakehouse, queried over HiveServer2."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from carelake.config import load_config
from carelake.serve.catalog import discover_tables

hive = pytest.importorskip("pyhive.hive", reason="PyHive is not installed (pip install pyhive thrift thrift-sasl pure-sasl)")

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 150


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_env(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CARELAKE_LAKEHOUSE__ROOT": str(root),
        "CARELAKE_SPARK__MASTER": "local[1]",
        "CARELAKE_SPARK__CONF__spark.driver.memory": "1g",
        "CARELAKE_SPARK__CONF__spark.ui.enabled": "false",
        "CARELAKE_SPARK__CONF__spark.sql.shuffle.partitions": "1",
        "CARELAKE_SERVE__REFRESH_SECONDS": "1",
        "PYSPARK_PYTHON": sys.executable,
    }


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny Delta tables: curated.provider_features (3 rows), processed.encounters (2)."""
    root = tmp_path_factory.mktemp("served_lakehouse")
    write_deltalake(
        str(root / "curated" / "provider_features"),
        pa.table({"npi": ["1234567893", "1245319599", "1003000126"], "score": [0.5, 0.7, 0.9]}),
    )
    write_deltalake(
        str(root / "processed" / "encounters"),
        pa.table({"encounter_id": ["e1", "e2"], "npi": ["1234567893", "1245319599"]}),
    )
    (root / "processed" / "not_a_table").mkdir()
    return root


@pytest.fixture(scope="module")
def server(lakehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, subprocess.Popen]]:
    """``python -m carelake.serve`` on a free port; stopped with SIGTERM (killed if stuck)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("thrift") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "carelake.serve", "--conf", str(REPO / "conf" / "local.yaml"), "--port", str(port)],
            env=_server_env(lakehouse), stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path_factory.mktemp("cwd"),
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while b"(Ctrl-C to stop)" not in log.read_bytes():
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode} before serving:\n{log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"server not serving after {START_TIMEOUT} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _query(port: int, sql: str) -> list[tuple]:
    connection = hive.connect(host="127.0.0.1", port=port, username="carelake")
    try:
        cursor = connection.cursor()
        cursor.execute(sql)
        return cursor.fetchall()
    finally:
        connection.close()


def test_discover_tables_finds_folders_with_a_delta_log(lakehouse: Path) -> None:
    config = load_config(REPO / "conf" / "local.yaml", env={}).with_overrides(**{"lakehouse.root": str(lakehouse)})
    found = [(t.zone, t.name) for t in discover_tables(config)]
    assert found == [("curated", "provider_features"), ("processed", "encounters")]


@pytest.mark.slow
def test_thrift_server_serves_zone_tables_and_survives_errors(server, lakehouse: Path) -> None:
    port, proc = server
    assert _query(port, "SELECT count(*) FROM curated.provider_features") == [(3,)]
    assert _query(port, "SELECT count(*) FROM processed.encounters") == [(2,)]
    assert {row[0] for row in _query(port, "SHOW DATABASES")} >= {"raw", "processed", "curated"}

    with pytest.raises(hive.OperationalError, match="TABLE_OR_VIEW_NOT_FOUND"):
        _query(port, "SELECT * FROM curated.no_such_table")
    assert _query(port, "SELECT npi FROM processed.encounters WHERE encounter_id = 'e2'") == [("1245319599",)]
    # conf's access.roles: a database of views per role, reachable over JDBC like the zones.
    assert _query(port, "SELECT count(*) FROM analyst.curated__provider_features") == [(3,)]
    assert "processed__encounters" not in {row[1] for row in _query(port, "SHOW TABLES IN analyst")}
    assert "processed__encounters" in {row[1] for row in _query(port, "SHOW TABLES IN engineer")}

    # The running server picks up new tables and forgets dropped ones on its refresh timer.
    write_deltalake(str(lakehouse / "raw" / "providers"), pa.table({"npi": ["1", "2", "3", "4"]}))
    shutil.rmtree(lakehouse / "processed" / "encounters")
    # A refresh that finds changes also rebuilds the role views: allow for a loaded machine.
    deadline = time.monotonic() + 150
    while True:
        raw = {row[1] for row in _query(port, "SHOW TABLES IN raw")}
        processed = {row[1] for row in _query(port, "SHOW TABLES IN processed")}
        engineer = {row[1] for row in _query(port, "SHOW TABLES IN engineer")}
        if "providers" in raw and "encounters" not in processed and "processed__encounters" not in engineer:
            break
        assert time.monotonic() < deadline, f"catalog not refreshed: raw={raw} processed={processed} engineer={engineer}"
        time.sleep(1)
    assert _query(port, "SELECT count(*) FROM raw.providers") == [(4,)]

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
