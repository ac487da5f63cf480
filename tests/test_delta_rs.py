"""The rs engine of carelake.delta: Spark writes and reads, delta-rs keeps the log."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable, QueryBuilder

from carelake.config import Config
from carelake.delta import (
    DeltaConflictError,
    DeltaTables,
    MergeSpec,
    open_tables,
    storage_options,
)
from carelake.storage import table_uri
from tests.delta_engines import FEB, JAN
from tests.delta_engines import fact_rows as _facts
from tests.delta_engines import typed_rows as _rows


def _rs_read(uri: str, version: int | None = None) -> list[dict]:
    """Rows as delta-rs itself reads them (its SQL engine), sorted by id."""
    table = DeltaTable(uri, version=version)
    reader = QueryBuilder().register("t", table).execute("SELECT * FROM t ORDER BY id")
    return pa.table(reader.read_all()).to_pylist()


@pytest.fixture
def tables(spark, config: Config) -> DeltaTables:
    """The rs engine (the suite's default is jvm when the Delta jars load)."""
    return open_tables(spark, config.with_overrides(**{"delta.engine": "rs"}))


def test_engine_is_rs_when_configured(tables: DeltaTables) -> None:
    assert tables.engine == "rs"


def test_replace_where_rejects_rows_outside_the_named_partitions(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "curated", "fact_claim")
    tables.write(_facts(spark), uri, partition_by=["service_month"])
    with pytest.raises(ValueError, match="replace_where expected service_month in"):
        tables.write(_facts(spark), uri, mode="overwrite", replace_where={"service_month": ["2024-01"]})
    assert tables.version(uri) == 0
    with pytest.raises(ValueError, match="replace_where needs mode='overwrite'"):
        tables.write(_facts(spark), uri, replace_where={"service_month": ["2024-01"]})


def test_time_travel_history_restore_and_independent_delta_rs_reads(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "curated", "fact_procedure")
    tables.write(_facts(spark), uri, partition_by=["service_month"], commit_metadata={"run_id": "r1", "batch_id": "b1"})
    tables.write(
        _rows(spark, [(4, "2024-02", 9, Decimal("4.00"), FEB, True)]),
        uri,
        commit_metadata={"run_id": "r2", "batch_id": "b2"},
    )

    assert tables.read(uri, version=0).count() == 3
    assert sorted(r["id"] for r in tables.read(uri, version=1).collect()) == [1, 2, 3, 4]
    history = tables.history(uri)
    assert [(h["version"], h["operation"]) for h in history] == [(1, "WRITE"), (0, "CREATE TABLE")]
    assert {k: history[0]["metadata"][k] for k in ("run_id", "batch_id")} == {"run_id": "r2", "batch_id": "b2"}
    assert history[1]["metadata"]["run_id"] == "r1"

    # delta-rs alone (its own reader) sees the same rows, types and partition column.
    version0 = _rs_read(uri, 0)
    assert version0[0] == {
        "id": 1, "service_month": "2024-01", "npi_bucket": 3, "amount": Decimal("10.50"),
        "service_date": JAN, "active": True,
    }
    assert [r["id"] for r in version0] == [1, 2, 3]
    assert [r["id"] for r in _rs_read(uri, 1)] == [1, 2, 3, 4]
    assert DeltaTable(uri).metadata().partition_columns == ["service_month"]
    rs_schema = {f.name: f.type.type for f in DeltaTable(uri).schema().fields}
    assert rs_schema == {
        "id": "long", "service_month": "string", "npi_bucket": "integer", "amount": "decimal(10,2)",
        "service_date": "date", "active": "boolean",
    }

    restored = tables.restore(uri, 0)
    assert (restored.version, restored.operation) == (2, "RESTORE")
    assert [r["id"] for r in _rs_read(uri)] == [1, 2, 3]


def test_optimize_compacts_files_and_keeps_rows_then_vacuum_deletes_old(spark, config: Config) -> None:
    small_files = config.with_overrides(**{"delta.engine": "rs", "delta.target_file_rows": 2})
    tables = open_tables(spark, small_files)
    uri = table_uri(small_files, "curated", "provider_features")
    tables.write(spark.range(5).coalesce(1), uri)
    assert len(tables.files(uri)) == 3  # 5 rows at 2 rows per file

    metrics = tables.optimize(uri)

    assert (metrics["numFilesRemoved"], metrics["numFilesAdded"]) == (3, 1)
    assert len(tables.files(uri)) == 1
    assert sorted(r["id"] for r in tables.read(uri).collect()) == [0, 1, 2, 3, 4]
    deleted = tables.vacuum(uri, retention_hours=0)
    assert len(deleted) == 3
    assert sorted(r["id"] for r in tables.read(uri).collect()) == [0, 1, 2, 3, 4]


def test_storage_options_empty_for_local_and_from_config_for_s3(config: Config, monkeypatch) -> None:
    assert storage_options(config) == {}
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    s3 = config.with_overrides(
        **{"lakehouse.root": "s3://lake/prefix", "storage.endpoint_url": "http://127.0.0.1:8333",
           "storage.region": "us-east-1", "storage.path_style": True}
    )
    assert storage_options(s3) == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:8333", "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false", "AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret",
    }


def _commit_during_write(spark, uri: str, action: str):
    """Rows whose computation commits to ``uri`` with delta-rs while the write is running,
    i.e. after the write read its snapshot and before it commits."""
    from pyspark.sql import functions as F

    def interleave(value):  # no hints: they would make Spark treat it as a pandas UDF
        import pyarrow as pa
        from deltalake import DeltaTable, write_deltalake

        if action == "delete":
            DeltaTable(uri).delete("service_month = '2024-01'")
        else:
            extra = pa.table({"id": pa.array([100], pa.int64()), "service_month": ["2024-09"]})
            write_deltalake(uri, extra, mode="append")
        return value

    udf = F.udf(interleave, "long")
    frame = spark.createDataFrame([(5, "2024-01")], "id long, service_month string")
    return frame.select(udf("id").alias("id"), "service_month")


def test_conflicting_concurrent_commit_raises_delta_conflict_error(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "curated", "fact_referral")
    tables.write(spark.createDataFrame([(1, "2024-01")], "id long, service_month string"), uri, partition_by=["service_month"])

    with pytest.raises(DeltaConflictError, match=uri):
        tables.write(_commit_during_write(spark, uri, "delete"), uri, mode="overwrite", replace_where={"service_month": ["2024-01"]})

    # The concurrent delete (version 1) stands; the conflicting write left no commit.
    assert tables.version(uri) == 1
    assert tables.read(uri).count() == 0


def test_concurrent_appends_both_land(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "raw", "referrals")
    tables.write(spark.createDataFrame([(1, "2024-01")], "id long, service_month string"), uri)

    result = tables.write(_commit_during_write(spark, uri, "append"), uri)

    assert result.version == 2
    assert sorted(r["id"] for r in tables.read(uri).collect()) == [1, 5, 100]


def test_merge_in_spark_rewrites_only_partitions_of_the_source(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "curated", "fact_encounter")
    schema = "id long, month string, amount double"
    target = [(1, "2024-01", 1.0), (2, "2024-01", 2.0), (3, "2024-02", 3.0), (4, "2024-03", 4.0)]
    tables.write(spark.createDataFrame(target, schema).coalesce(1), uri, partition_by=["month"])
    before = {f["path"]: f["partition_values"]["month"] for f in tables.files(uri)}

    result = tables.merge(
        spark.createDataFrame([(2, "2024-01", 20.0), (5, "2024-01", 5.0)], schema), uri, MergeSpec(["id", "month"]),
        commit_metadata={"run_id": "big"},
    )

    after = {f["path"]: f["partition_values"]["month"] for f in tables.files(uri)}
    assert sorted(before[p] for p in set(before) - set(after)) == ["2024-01"]
    assert {after[p] for p in set(after) - set(before)} == {"2024-01"}
    assert (result.operation, result.rows_inserted, result.rows_updated, result.files_removed) == ("MERGE", 1, 1, 1)
    expected = spark.createDataFrame(
        [(1, "2024-01", 1.0), (2, "2024-01", 20.0), (3, "2024-02", 3.0), (4, "2024-03", 4.0), (5, "2024-01", 5.0)], schema
    )
    assert_df_equality(tables.read(uri), expected, ignore_row_order=True)
    assert tables.history(uri, limit=1)[0]["metadata"]["run_id"] == "big"


def test_merge_in_spark_prunes_files_by_key_statistics(spark, tables: DeltaTables, config: Config) -> None:
    uri = table_uri(config, "processed", "procedures")
    schema = "id long, code string"
    tables.write(spark.createDataFrame([(1, "a"), (2, "b")], schema).coalesce(1), uri)
    tables.write(spark.createDataFrame([(10, "c"), (11, "d")], schema).coalesce(1), uri)
    actions = pa.table(DeltaTable(uri).get_add_actions(flatten=True)).to_pylist()
    low_file = next(a["path"] for a in actions if a["min.id"] == 1)

    result = tables.merge(spark.createDataFrame([(11, "D"), (12, "e")], schema), uri, MergeSpec(["id"]))

    assert low_file in [f["path"] for f in tables.files(uri)]
    assert (result.rows_inserted, result.rows_updated, result.files_removed) == (1, 1, 1)
    expected = spark.createDataFrame([(1, "a"), (2, "b"), (10, "c"), (11, "D"), (12, "e")], schema)
    assert_df_equality(tables.read(uri), expected, ignore_row_order=True)


