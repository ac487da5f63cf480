"""The contract of carelake.delta's table API, specified once and run on both engines.

Every expected frame is written out by hand. Where the engines legitimately differ (the name of
a table's first operation, the metrics keys of OPTIMIZE) the test says so.
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pytest
from chispa import assert_df_equality

from carelake.config import Config
from carelake.delta import (
    DeltaTables,
    MergeSpec,
    Rows,
    SchemaMismatchError,
    TableNotFoundError,
)
from carelake.delta.audit import current_actor
from carelake.delta.scd2 import Scd2Spec, apply_scd2
from carelake.storage import table_uri
from tests.delta_engines import ENGINES, FEB, JAN, engine_tables
from tests.delta_engines import fact_rows as _facts
from tests.delta_engines import typed_rows as _rows


@pytest.fixture(params=ENGINES)
def tables(request, spark, config: Config) -> DeltaTables:
    """The table API on each engine in turn."""
    return engine_tables(spark, config, request.param)


def test_append_creates_then_appends_and_overwrite_replaces(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "processed", "encounters")
    first = tables.write(_facts(spark), uri, commit_metadata={"run_id": "r1"})
    second = tables.write(_rows(spark, [(4, "2024-03", 1, Decimal("1.00"), FEB, True)]), uri)
    assert (first.version, first.rows_inserted) == (0, 3)
    assert (second.version, second.operation, second.files_removed) == (1, "WRITE", 0)
    assert tables.read(uri).count() == 4
    live_files = len(tables.files(uri))

    replaced = tables.write(_rows(spark, [(9, "2024-05", 2, Decimal("9.99"), FEB, False)]), uri, mode="overwrite")

    assert (replaced.version, replaced.operation, replaced.files_removed, replaced.rows_inserted) == (2, "WRITE", live_files, 1)
    expected = _rows(spark, [(9, "2024-05", 2, Decimal("9.99"), FEB, False)])
    assert_df_equality(tables.read(uri), expected, ignore_row_order=True)


def test_replace_where_replaces_only_named_partitions(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "curated", "fact_encounter")
    tables.write(_facts(spark), uri, partition_by=["service_month", "npi_bucket"])
    before = {f["path"]: f["partition_values"] for f in tables.files(uri)}
    assert sorted(before.values(), key=str) == sorted(
        [
            {"service_month": "2024-01", "npi_bucket": "3"},
            {"service_month": "2024-01", "npi_bucket": "5"},
            {"service_month": "2024-02", "npi_bucket": "3"},
        ],
        key=str,
    )

    result = tables.write(
        _rows(spark, [(7, "2024-01", 3, Decimal("70.00"), JAN, True)]),
        uri,
        mode="overwrite",
        replace_where={"service_month": ["2024-01"], "npi_bucket": [3]},
    )

    after = {f["path"]: f["partition_values"] for f in tables.files(uri)}
    assert [before[p] for p in set(before) - set(after)] == [{"service_month": "2024-01", "npi_bucket": "3"}]
    assert len(set(after) - set(before)) == 1
    assert (result.files_added, result.files_removed) == (1, 1)
    expected = _rows(
        spark,
        [
            (7, "2024-01", 3, Decimal("70.00"), JAN, True),
            (2, "2024-01", 5, Decimal("20.00"), JAN, False),
            (3, "2024-02", 3, None, FEB, None),
        ],
    )
    assert_df_equality(tables.read(uri), expected, ignore_row_order=True)


def test_replace_where_rejects_rows_outside_the_named_partitions(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "curated", "fact_claim")
    tables.write(_facts(spark), uri, partition_by=["service_month"])
    with pytest.raises(Exception, match="(?i)replace_?where"):
        tables.write(_facts(spark), uri, mode="overwrite", replace_where={"service_month": ["2024-01"]})
    assert tables.version(uri) == 0
    with pytest.raises(ValueError, match="replace_where needs mode='overwrite'"):
        tables.write(_facts(spark), uri, replace_where={"service_month": ["2024-01"]})


def test_schema_merge_adds_new_nullable_column(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "raw", "providers")
    tables.write(spark.createDataFrame([("1", "a")], "npi string, name string"), uri)
    wider = spark.createDataFrame([("2", "b", "x")], "npi string, name string, new_col string")

    with pytest.raises((SchemaMismatchError, Exception), match="new_col|schema mismatch"):
        tables.write(wider, uri)
    tables.write(wider, uri, schema_mode="merge")

    expected = spark.createDataFrame([("1", "a", None), ("2", "b", "x")], "npi string, name string, new_col string")
    assert_df_equality(tables.read(uri), expected, ignore_row_order=True)


def test_merge_upserts_by_keys_with_counts_and_metadata(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "processed", "providers")
    schema = "npi string, specialty string, visits long"
    created = tables.merge(spark.createDataFrame([("1", "cardio", 1), ("2", "derm", 2)], schema), uri, MergeSpec(["npi"]))
    assert (created.version, created.rows_inserted) == (0, 2)

    result = tables.merge(
        spark.createDataFrame([("2", "dermatology", 5), ("3", "onco", 7)], schema),
        uri,
        MergeSpec(["npi"]),
        commit_metadata={"run_id": "r9", "batch_id": "b2"},
    )

    assert (result.version, result.operation, result.rows_inserted, result.rows_updated) == (1, "MERGE", 1, 1)
    expected = spark.createDataFrame([("1", "cardio", 1), ("2", "dermatology", 5), ("3", "onco", 7)], schema)
    assert_df_equality(tables.read(uri), expected, ignore_row_order=True)
    metadata = tables.history(uri, limit=1)[0]["metadata"]
    assert {k: metadata[k] for k in ("run_id", "batch_id")} == {"run_id": "r9", "batch_id": "b2"}
    assert metadata["carelake.actor"] == current_actor()


def test_merge_insert_only_leaves_matches_alone(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "processed", "claims")
    schema = "claim_id string, paid double"
    tables.merge(spark.createDataFrame([("c1", 1.0)], schema), uri, MergeSpec(["claim_id"]))
    result = tables.merge(spark.createDataFrame([("c1", 9.0), ("c2", 2.0)], schema), uri, MergeSpec(["claim_id"], update=False))
    assert result.rows_inserted == 1
    expected = spark.createDataFrame([("c1", 1.0), ("c2", 2.0)], schema)
    assert_df_equality(tables.read(uri), expected, ignore_row_order=True)


def test_merge_update_if_newer_keeps_newer_target_rows(spark, tables: DeltaTables, config: Config) -> None:
    """A late, older version must not overwrite a newer one; a newer one (or a null date) updates."""
    uri = table_uri(config, "processed", "providers")
    schema = "npi string, zip string, updated_at date"
    tables.merge(spark.createDataFrame([("1", "60601", FEB), ("2", "60602", JAN), ("4", "60604", JAN)], schema), uri, MergeSpec(["npi"]))

    tables.merge(
        spark.createDataFrame([("1", "99999", JAN), ("2", "60699", FEB), ("3", "60603", JAN), ("4", "60644", None)], schema),
        uri,
        MergeSpec(["npi"], update_if_newer="updated_at"),
    )

    expected = spark.createDataFrame(
        [("1", "60601", FEB), ("2", "60699", FEB), ("3", "60603", JAN), ("4", "60644", None)], schema
    )
    assert_df_equality(tables.read(uri), expected, ignore_row_order=True)


def test_merge_deletes_unmatched_target_rows_within_a_scope(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "curated", "provider_procedure_stats")
    schema = "npi string, code string, cases long"
    target = [("1", "a", 1), ("1", "b", 2), ("2", "a", 3), ("3", "c", 4)]
    tables.write(spark.createDataFrame(target, schema), uri)

    # NPIs 1 and 2 were recomputed: 1/b and 2/a vanished, 1/a changed, 2/d is new; 3 is untouched.
    result = tables.merge(
        spark.createDataFrame([("1", "a", 10), ("2", "d", 5)], schema),
        uri,
        MergeSpec(["npi", "code"], delete_unmatched=Rows.where(npi=["1", "2"])),
    )

    expected = spark.createDataFrame([("1", "a", 10), ("2", "d", 5), ("3", "c", 4)], schema)
    assert_df_equality(tables.read(uri), expected, ignore_row_order=True)
    assert (result.rows_inserted, result.rows_updated, result.rows_deleted) == (1, 1, 2)

    everything = tables.merge(spark.createDataFrame([("3", "c", 4)], schema), uri, MergeSpec(["npi", "code"], delete_unmatched=True))
    assert everything.rows_deleted == 2
    assert_df_equality(tables.read(uri), spark.createDataFrame([("3", "c", 4)], schema))


def test_merge_rejects_keys_missing_from_the_source(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "processed", "claims")
    with pytest.raises(ValueError, match=r"missing \['claim_id'\]"):
        tables.merge(spark.createDataFrame([("x",)], "other string"), uri, MergeSpec(["claim_id"]))
    with pytest.raises(ValueError, match="non-empty"):
        MergeSpec([])


def test_delete_removes_matching_rows_only(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "processed", "encounters")
    tables.write(_facts(spark), uri, partition_by=["service_month"])

    by_value = tables.delete(uri, Rows.where(npi_bucket=[5]))
    assert (by_value.version, by_value.operation, by_value.rows_deleted) == (1, "DELETE", 1)
    by_partition = tables.delete(uri, Rows.where(service_month=["2024-02"]))
    assert by_partition.version == 2

    assert_df_equality(tables.read(uri), _rows(spark, [(1, "2024-01", 3, Decimal("10.50"), JAN, True)]))


def test_delete_by_key_tuples_and_null_values(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "curated", "patient_summary")
    schema = "hospital string, patient string, visits int"
    tables.write(spark.createDataFrame([("a", "1", 1), ("a", "2", 2), ("b", "1", 3), (None, "9", 4), ("it's", "1", 5)], schema), uri)

    tables.delete(uri, Rows.keys(["hospital", "patient"], [("a", "2"), ("b", "1"), ("it's", "1")]))
    tables.delete(uri, Rows.where(hospital=[None]))

    assert_df_equality(tables.read(uri), spark.createDataFrame([("a", "1", 1)], schema))


def test_time_travel_by_version_and_timestamp_history_and_restore(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "curated", "fact_procedure")
    tables.write(_facts(spark), uri, partition_by=["service_month"], commit_metadata={"run_id": "r1", "batch_id": "b1"})
    time.sleep(1.1)  # commit timestamps have millisecond resolution; keep the versions apart
    between = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
    time.sleep(1.1)
    tables.write(_rows(spark, [(4, "2024-02", 9, Decimal("4.00"), FEB, True)]), uri, commit_metadata={"run_id": "r2", "batch_id": "b2"})

    assert tables.read(uri, version=0).count() == 3
    assert sorted(r["id"] for r in tables.read(uri, version=1).collect()) == [1, 2, 3, 4]
    assert sorted(r["id"] for r in tables.read(uri, timestamp=between).collect()) == [1, 2, 3]
    history = tables.history(uri)
    assert [h["version"] for h in history] == [1, 0]
    assert history[0]["operation"] == "WRITE"
    assert {k: history[0]["metadata"][k] for k in ("run_id", "batch_id")} == {"run_id": "r2", "batch_id": "b2"}
    assert history[1]["metadata"]["run_id"] == "r1"
    assert tables.version(uri) == 1

    restored = tables.restore(uri, 0)

    assert (restored.version, restored.operation) == (2, "RESTORE")
    assert sorted(r["id"] for r in tables.read(uri).collect()) == [1, 2, 3]


def test_optimize_compacts_z_orders_and_vacuum_deletes_old_files(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "curated", "fact_claim")
    for part in range(3):
        tables.write(spark.range(part * 10, part * 10 + 10).withColumnRenamed("id", "npi").coalesce(1), uri)
    assert len(tables.files(uri)) == 3

    tables.optimize(uri)

    assert len(tables.files(uri)) == 1
    assert sorted(r["npi"] for r in tables.read(uri).collect()) == list(range(30))
    tables.write(spark.range(30, 35).withColumnRenamed("id", "npi").coalesce(1), uri)
    tables.optimize(uri, zorder_by=["npi"])
    assert len(tables.files(uri)) == 1
    assert sorted(r["npi"] for r in tables.read(uri).collect()) == list(range(35))

    deleted = tables.vacuum(uri, retention_hours=0)

    assert len(deleted) == 5  # the three first files, the compacted one and the fourth append
    assert sorted(r["npi"] for r in tables.read(uri).collect()) == list(range(35))


def test_vacuum_keeps_files_younger_than_the_retention_it_is_given(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "curated", "fact_claim")
    for part in range(2):
        tables.write(spark.range(part, part + 1).withColumnRenamed("id", "npi").coalesce(1), uri)
    tables.optimize(uri)  # the two appended files are now unreferenced, seconds old
    # The table's own retention says 0 hours: the one the call passes (1 hour) must win.
    tables.set_properties(uri, {"delta.deletedFileRetentionDuration": "interval 0 hours"})

    assert tables.vacuum(uri, retention_hours=1) == []
    assert len(tables.vacuum(uri, retention_hours=0)) == 2


def test_optimize_where_rewrites_only_the_named_partitions(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "curated", "fact_claim")
    for month, npi in [("2024-01", 1), ("2024-01", 2), ("2024-02", 3), ("2024-02", 4), ("2024-03", 5)]:
        rows = spark.createDataFrame([(npi, month)], "npi long, service_month string")
        tables.write(rows, uri, mode="append", partition_by=["service_month"])
    before = {f["path"]: f["partition_values"]["service_month"] for f in tables.files(uri)}

    tables.optimize(uri, zorder_by=["npi"], where=Rows.where(service_month=["2024-01", "2024-03"]))

    after = {f["path"]: f["partition_values"]["service_month"] for f in tables.files(uri)}
    assert sorted(after.values()) == ["2024-01", "2024-02", "2024-02", "2024-03"]
    assert {p for p, m in before.items() if m == "2024-02"} <= set(after)  # untouched
    assert sorted(r["npi"] for r in tables.read(uri).collect()) == [1, 2, 3, 4, 5]


def test_scd2_apply_writes_history_then_nothing_on_reapply(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "curated", "dim_provider")
    spec = Scd2Spec(natural_key=("npi",), tracked=("specialty",), effective_col="updated_at", surrogate_col="provider_sk")
    schema = "npi string, specialty string, updated_at timestamp"
    day1, day2 = dt.datetime(2024, 1, 1), dt.datetime(2024, 2, 1)
    apply_scd2(tables, uri, spark.createDataFrame([("1", "cardio", day1), ("2", "derm", day1)], schema), spec)
    changed = spark.createDataFrame([("1", "oncology", day2), ("2", "derm", day2)], schema)

    assert apply_scd2(tables, uri, changed, spec) is not None
    version = tables.version(uri)
    assert apply_scd2(tables, uri, changed, spec) is None

    assert tables.version(uri) == version
    rows = sorted((r["npi"], r["specialty"], r["valid_from"], r["valid_to"].year, r["is_current"]) for r in tables.read(uri).collect())
    assert rows == [("1", "cardio", day1, 2024, False), ("1", "oncology", day2, 9999, True), ("2", "derm", day1, 9999, True)]


def test_set_properties_is_a_commit_and_missing_tables_are_named(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "processed", "referrals")
    tables.write(spark.createDataFrame([(1,)], "id long"), uri)
    result = tables.set_properties(uri, {"delta.isolationLevel": "Serializable"})
    assert result.version == 1

    missing = table_uri(config, "processed", "nowhere")
    assert tables.exists(missing) is False
    for call in (lambda: tables.read(missing), lambda: tables.history(missing), lambda: tables.version(missing)):
        with pytest.raises(TableNotFoundError, match=missing):
            call()
