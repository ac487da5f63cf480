"""Concurrent writers: two jobs write at once; nothing is lost, a conflict is seen and handled.

Writer 1 runs in a subprocess (its own Spark driver, as a second job would) and is held by
``CARELAKE_HOLD_AT`` just before its Delta commit, with its files written against the snapshot
it read. Writer 2, this test's own session, commits meanwhile. Then writer 1 is released.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession

from carelake.config import Config
from carelake.delta import DeltaConflictError, DeltaTables, open_tables
from carelake.delta.faults import HOLD_AT_ENV, HOLD_DIR_ENV, hold_marker
from carelake.ops import retry_on_conflict
from carelake.storage import table_uri

pytestmark = pytest.mark.slow

SCHEMA = "npi string, specialty string, updated int"
# Every merge takes the Spark path (rewrite, then one commit), where the hold point sits.
OVERRIDES = {"delta.merge_in_spark_rows": 0}

WRITER = """
import json, sys
from carelake.config import load_config
from carelake.delta import DeltaConflictError, open_tables
from carelake.ops import retry_on_conflict
from carelake.spark import build_session

operation, uri, rows, attempts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
config = load_config()
spark = build_session(config)
tables = open_tables(spark, config)
frame = spark.createDataFrame(rows, "{schema}")
if operation == "merge":
    write = lambda: tables.merge(frame, uri, keys=["npi"])
else:
    write = lambda: tables.write(frame, uri, mode="append")
try:
    result = retry_on_conflict(write, uri, attempts=attempts, backoff_s=0.2)
except DeltaConflictError as exc:
    print("CONFLICT", exc, flush=True)
    sys.exit(3)
print("COMMITTED", result.version, flush=True)
""".replace("{schema}", SCHEMA)


@pytest.fixture
def racing(config: Config) -> Config:
    return config.with_overrides(**OVERRIDES)


def frame(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, SCHEMA)


def table(tables: DeltaTables, uri: str) -> list[tuple]:
    return sorted(tuple(r) for r in tables.read(uri).collect())


class HeldWriter:
    """Writer 1: a subprocess that writes ``rows`` to ``uri`` and is held before its commit."""

    def __init__(self, config: Config, workdir: Path, operation: str, uri: str, rows: list[tuple], attempts: int) -> None:
        zone_table = "/".join(uri.rstrip("/").split("/")[-2:])
        self.marker = Path(hold_marker(str(workdir), f"before-commit:{zone_table}"))
        env = {
            **os.environ,
            "PYSPARK_PYTHON": sys.executable,
            "CARELAKE_LAKEHOUSE__ROOT": config.root,
            "CARELAKE_SPARK__MASTER": "local[2]",
            "CARELAKE_SPARK__CONF__spark.ui.enabled": "false",
            "CARELAKE_SPARK__CONF__spark.sql.shuffle.partitions": "2",
            "CARELAKE_DELTA__MERGE_IN_SPARK_ROWS": "0",
            HOLD_AT_ENV: f"before-commit:{zone_table}",
            HOLD_DIR_ENV: str(workdir),
        }
        # A script file, not ``python -c``: PySpark takes a __main__ without a file for its doctests.
        script = workdir / "writer.py"
        script.write_text(WRITER)
        args = [sys.executable, str(script), operation, uri, json.dumps(rows), str(attempts)]
        self.process = subprocess.Popen(args, env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_held(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while not (self.marker.with_suffix(".held").exists() and self.marker.with_suffix(".held").read_text()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                out, err = self.process.communicate(timeout=10) if self.process.poll() is not None else ("", "")
                self.process.kill()
                pytest.fail(f"writer never reached its commit (exit {self.process.returncode}):\n{out}\n{err[-3000:]}")
            time.sleep(0.1)

    def release(self, timeout: float = 180) -> tuple[int, str, str]:
        self.marker.with_suffix(".held").rename(self.marker.with_suffix(".released"))
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err


def orphans(tables: DeltaTables, uri: str) -> set[str]:
    committed = {f["path"].rsplit("/", 1)[-1] for v in range(tables.version(uri) + 1) for f in tables.files(uri, version=v)}
    return {p.name for p in Path(uri).rglob("*.parquet")} - committed


BASE = [("1", "Cardiology", 1), ("2", "Oncology", 1), ("3", "Neurology", 1)]


def test_same_table_merge_conflict_is_retried_and_no_update_is_lost(spark, racing: Config, tmp_path: Path) -> None:
    tables = open_tables(spark, racing)
    uri = table_uri(racing, "processed", "race")
    tables.write(frame(spark, BASE), uri, mode="overwrite")
    writer = HeldWriter(racing, tmp_path, "merge", uri, [("1", "Pediatrics", 2)], attempts=3)
    writer.wait_held()

    mine = tables.merge(frame(spark, [("2", "Surgery", 2), ("4", "Dermatology", 2)]), uri, keys=["npi"])
    code, out, err = writer.release()

    assert code == 0, err[-3000:]
    assert "conflicted with a concurrent commit (attempt 1 of 3); retrying" in err
    assert int(out.split()[-1]) == mine.version + 1
    assert table(tables, uri) == [("1", "Pediatrics", 2), ("2", "Surgery", 2), ("3", "Neurology", 1), ("4", "Dermatology", 2)]
    assert not orphans(tables, uri), "the conflicting attempt's files are deleted"


def test_same_table_conflict_without_retry_fails_cleanly(spark, racing: Config, tmp_path: Path) -> None:
    tables = open_tables(spark, racing)
    uri = table_uri(racing, "processed", "race")
    tables.write(frame(spark, BASE), uri, mode="overwrite")
    writer = HeldWriter(racing, tmp_path, "merge", uri, [("1", "Pediatrics", 2)], attempts=1)
    writer.wait_held()

    tables.merge(frame(spark, [("2", "Surgery", 2)]), uri, keys=["npi"])
    code, out, _ = writer.release()

    assert code == 3
    assert out.startswith(f"CONFLICT DeltaConflictError: a concurrent commit to {uri} conflicts with this write")
    assert "still conflicting after 1 attempt(s)" in out
    assert table(tables, uri) == [("1", "Cardiology", 1), ("2", "Surgery", 2), ("3", "Neurology", 1)]
    assert not orphans(tables, uri), "the failed writer leaves no files behind"


def test_writers_on_different_tables_and_concurrent_appends_all_commit(spark, racing: Config, tmp_path: Path) -> None:
    tables = open_tables(spark, racing)
    shared, other = table_uri(racing, "raw", "shared"), table_uri(racing, "raw", "other")
    tables.write(frame(spark, BASE[:1]), shared, mode="overwrite")
    writer = HeldWriter(racing, tmp_path, "append", shared, [("8", "Oncology", 1)], attempts=1)
    writer.wait_held()

    tables.write(frame(spark, [("9", "Surgery", 1)]), other, mode="append")
    tables.write(frame(spark, [("7", "Neurology", 1)]), shared, mode="append")
    code, _, err = writer.release()

    assert code == 0, err[-3000:]
    assert table(tables, other) == [("9", "Surgery", 1)]
    assert table(tables, shared) == [("1", "Cardiology", 1), ("7", "Neurology", 1), ("8", "Oncology", 1)]


def test_retry_on_conflict_gives_up_after_its_attempts() -> None:
    calls = []

    def always_conflicts() -> None:
        calls.append(1)
        raise DeltaConflictError("mem://t", "simulated")

    with pytest.raises(DeltaConflictError, match=r"still conflicting after 2 attempt\(s\)"):
        retry_on_conflict(always_conflicts, "mem://t", attempts=2, backoff_s=0)
    assert len(calls) == 2
