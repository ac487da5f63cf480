"""Concurrent writers on both engines: the outcome Delta's own conflict checker gives.

Each race holds one writer (the loser) after it has read its snapshot, lets the other (the
winner) commit, then releases the loser (see ``tests/delta_engines.py``). Two blind appends never
conflict; an append into what a merge or replaceWhere read does, as do two merges over one table.
A conflict surfaces as DeltaConflictError, and the pipeline's retry re-reads and succeeds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from carelake.config import Config
from carelake.delta import DeltaConflictError, DeltaTables, MergeSpec
from carelake.ops.retry import retry_on_conflict
from carelake.storage import table_uri
from tests.delta_engines import ENGINES, engine_tables, held, race

pytestmark = pytest.mark.slow

SCHEMA = "npi string, specialty string, month string"
BASE = [("1", "Cardiology", "2024-01"), ("2", "Surgery", "2024-01"), ("3", "Neurology", "2024-02")]
KEYS = MergeSpec(["npi"])


@pytest.fixture(params=ENGINES)
def tables(request, spark, config: Config) -> DeltaTables:
    return engine_tables(spark, config, request.param)


def _frame(spark, rows):
    return spark.createDataFrame(rows, SCHEMA)


def _table(tables: DeltaTables, uri: str) -> list[tuple]:
    return sorted(tuple(r) for r in tables.read(uri).select("npi", "specialty", "month").collect())


def _base(spark, tables: DeltaTables, config: Config, isolation: str | None = None) -> str:
    """The race table (partitioned by month), with ``delta.isolationLevel`` when given."""
    uri = table_uri(config, "processed", "race")
    tables.write(_frame(spark, BASE), uri, partition_by=["month"])
    if isolation:
        tables.set_properties(uri, {"delta.isolationLevel": isolation})
    return uri


def test_append_into_another_partition_commits_beside_replace_where(spark, tables, config: Config, tmp_path: Path) -> None:
    uri = _base(spark, tables, config)
    replacement = held(_frame(spark, [("2", "Surgery II", "2024-01")]), tmp_path, "npi")

    outcome = race(
        lambda: tables.write(replacement, uri, mode="overwrite", replace_where={"month": ["2024-01"]}),
        lambda: tables.write(_frame(spark, [("9", "Oncology", "2024-03")]), uri),
        tmp_path,
    )

    assert not outcome.loser_failed, outcome.loser
    assert _table(tables, uri) == [("2", "Surgery II", "2024-01"), ("3", "Neurology", "2024-02"), ("9", "Oncology", "2024-03")]


@pytest.mark.parametrize("isolation", [None, "Serializable"])
def test_append_into_the_replaced_partition_conflicts(spark, tables, config: Config, tmp_path: Path, isolation) -> None:
    """delta-spark 4.4 counts a blind append into the partitions a replaceWhere read as a
    conflict at its default isolation level as well as under Serializable; rs does the same."""
    uri = _base(spark, tables, config, isolation=isolation)
    replacement = held(_frame(spark, [("2", "Surgery II", "2024-01")]), tmp_path, "npi")

    outcome = race(
        lambda: tables.write(replacement, uri, mode="overwrite", replace_where={"month": ["2024-01"]}),
        lambda: tables.write(_frame(spark, [("9", "Oncology", "2024-01")]), uri),
        tmp_path,
    )

    assert isinstance(outcome.loser, DeltaConflictError), outcome.loser
    assert _table(tables, uri) == [*BASE, ("9", "Oncology", "2024-01")]


def test_merge_conflicts_with_an_append_of_the_same_key_and_the_retry_updates_it(spark, tables, config: Config, tmp_path: Path) -> None:
    uri = _base(spark, tables, config)
    upsert = held(_frame(spark, [("7", "Pediatrics", "2024-02")]), tmp_path, "npi")

    outcome = race(
        lambda: tables.merge(upsert, uri, KEYS),
        lambda: tables.write(_frame(spark, [("7", "Oncology", "2024-02")]), uri),
        tmp_path,
    )

    assert isinstance(outcome.loser, DeltaConflictError), outcome.loser
    retried = retry_on_conflict(lambda: tables.merge(_frame(spark, [("7", "Pediatrics", "2024-02")]), uri, KEYS), uri)
    assert retried.rows_updated == 1
    assert _table(tables, uri) == [*BASE, ("7", "Pediatrics", "2024-02")]


def test_two_merges_inserting_the_same_new_key_conflict_and_the_retry_keeps_one(spark, tables, config: Config, tmp_path: Path) -> None:
    uri = _base(spark, tables, config)
    upsert = held(_frame(spark, [("7", "Pediatrics", "2024-02")]), tmp_path, "npi")

    outcome = race(
        lambda: tables.merge(upsert, uri, KEYS),
        lambda: tables.merge(_frame(spark, [("7", "Oncology", "2024-02")]), uri, KEYS),
        tmp_path,
    )

    assert isinstance(outcome.loser, DeltaConflictError), outcome.loser
    assert _table(tables, uri) == [*BASE, ("7", "Oncology", "2024-02")]
    retried = retry_on_conflict(lambda: tables.merge(_frame(spark, [("7", "Pediatrics", "2024-02")]), uri, KEYS), uri)
    assert retried.rows_updated == 1
    assert _table(tables, uri) == [*BASE, ("7", "Pediatrics", "2024-02")]


def test_two_merges_updating_the_same_row_conflict(spark, tables, config: Config, tmp_path: Path) -> None:
    uri = _base(spark, tables, config)
    upsert = held(_frame(spark, [("1", "Pediatrics", "2024-01")]), tmp_path, "npi")

    outcome = race(
        lambda: tables.merge(upsert, uri, KEYS),
        lambda: tables.merge(_frame(spark, [("1", "Oncology", "2024-01")]), uri, KEYS),
        tmp_path,
    )

    assert isinstance(outcome.loser, DeltaConflictError), outcome.loser
    assert ("1", "Oncology", "2024-01") in _table(tables, uri)
    assert len(_table(tables, uri)) == 3


def test_two_blind_appends_both_commit(spark, tables, config: Config, tmp_path: Path) -> None:
    uri = _base(spark, tables, config)
    rows = held(_frame(spark, [("8", "Oncology", "2024-03")]), tmp_path, "npi")

    outcome = race(
        lambda: tables.write(rows, uri),
        lambda: tables.write(_frame(spark, [("9", "Surgery", "2024-03")]), uri),
        tmp_path,
    )

    assert not outcome.loser_failed, outcome.loser
    assert outcome.loser.version == outcome.winner.version + 1
    assert _table(tables, uri) == [*BASE, ("8", "Oncology", "2024-03"), ("9", "Surgery", "2024-03")]


def test_retry_on_conflict_gives_up_after_its_attempts() -> None:
    calls = []

    def always_conflicts() -> None:
        calls.append(1)
        raise DeltaConflictError("mem://t", "simulated")

    with pytest.raises(DeltaConflictError, match=r"still conflicting after 2 attempt\(s\)"):
        retry_on_conflict(always_conflicts, "mem://t", attempts=2, backoff_s=0)
    assert len(calls) == 2
