"""The ``carelake`` Spark data source: files, statistics, pruning and failure clean-up."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal

import pyarrow as pa
import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable, QueryBuilder
from pyspark.sql import functions as F
from pyspark.sql.datasource import EqualTo
from pyspark.sql.types import LongType, StringType, StructField, StructType

from carelake.config import Config
from carelake.delta import open_tables
from carelake.delta.datasource import CarelakeDataSource, DeltaArrowWriter
from carelake.delta.log import WriteRequest
from carelake.storage import table_uri

UTC = dt.timezone.utc


@pytest.fixture
def config(config: Config) -> Config:
    """This test's config on the rs engine, whose data source this module specifies."""
    return config.with_overrides(**{"delta.engine": "rs"})


def _source(uri: str, **options: str) -> CarelakeDataSource:
    return CarelakeDataSource({"uri": uri, **options})


def test_format_is_registered_and_reads_a_version(spark, config: Config) -> None:
    uri = table_uri(config, "processed", "patients")
    tables = open_tables(spark, config)
    tables.write(spark.createDataFrame([(1, "a")], "id long, name string"), uri)
    tables.write(spark.createDataFrame([(2, "b")], "id long, name string"), uri)

    version0 = spark.read.format("carelake").option("uri", uri).option("version", "0").load()

    assert_df_equality(version0, spark.createDataFrame([(1, "a")], "id long, name string"))
    assert spark.read.format("carelake").option("uri", uri).load().count() == 2


def test_empty_table_reads_empty_with_its_schema(spark, config: Config) -> None:
    uri = table_uri(config, "curated", "patient_summary")
    schema = "patient_key string, visits long, last_visit date"
    result = open_tables(spark, config).write(spark.createDataFrame([], schema), uri)

    frame = open_tables(spark, config).read(uri)

    assert (result.version, result.files_added) == (0, 0)
    assert frame.count() == 0
    assert frame.schema == spark.createDataFrame([], schema).schema


def test_types_and_odd_partition_values_round_trip(spark, config: Config) -> None:
    uri = table_uri(config, "curated", "network_demand_by_zip")
    schema = (
        "id long, zip string, amount decimal(12,2), seen_at timestamp, day date, flag boolean, "
        "ratio double, small int"
    )
    at = dt.datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    rows = [
        (1, "a b/c%d", Decimal("1234.56"), at, dt.date(2024, 3, 1), True, 0.5, 7),
        (2, None, None, None, None, None, None, None),
        (3, "02134", Decimal("-1.00"), at, dt.date(1999, 12, 31), False, -2.25, -1),
    ]
    frame = spark.createDataFrame(rows, schema)
    tables = open_tables(spark, config)
    tables.write(frame, uri, partition_by=["zip"])

    assert_df_equality(tables.read(uri), frame, ignore_row_order=True)
    # delta-rs reads the same partition values back from the log.
    table = DeltaTable(uri)
    reader = QueryBuilder().register("t", table).execute("SELECT id, zip FROM t ORDER BY id")
    assert pa.table(reader.read_all()).to_pylist() == [
        {"id": 1, "zip": "a b/c%d"}, {"id": 2, "zip": None}, {"id": 3, "zip": "02134"},
    ]


def test_files_are_hive_partitioned_with_statistics(spark, config: Config) -> None:
    uri = table_uri(config, "curated", "fact_encounter")
    frame = spark.createDataFrame(
        [(1, "2024-01", 10.0), (5, "2024-01", None), (3, "2024-02", 2.0)], "id long, month string, amount double"
    ).coalesce(1)
    open_tables(spark, config).write(frame, uri, partition_by=["month"])

    actions = pa.table(DeltaTable(uri).get_add_actions(flatten=True)).to_pylist()
    by_month = {a["partition.month"]: a for a in actions}

    assert sorted(a["path"].split("/")[0] for a in actions) == ["month=2024-01", "month=2024-02"]
    january = by_month["2024-01"]
    assert (january["num_records"], january["min.id"], january["max.id"]) == (2, 1, 5)
    assert (january["null_count.amount"], january["min.amount"], january["max.amount"]) == (1, 10.0, 10.0)
    assert (by_month["2024-02"]["min.id"], by_month["2024-02"]["max.id"]) == (3, 3)
    for action in actions:
        assert os.path.exists(os.path.join(uri, action["path"]))


def _three_months(spark, config: Config) -> str:
    uri = table_uri(config, "curated", "fact_claim")
    frame = spark.createDataFrame(
        [(1, "2024-01", 3), (2, "2024-02", 3), (3, "2024-03", 4)], "id long, month string, bucket int"
    )
    open_tables(spark, config).write(frame, uri, partition_by=["month", "bucket"])
    return uri


def _planned_files(reader) -> int:
    return sum(len(group.files) for group in reader.partitions())


def test_partition_filter_option_and_pushed_filters_prune_files(spark, config: Config) -> None:
    uri = _three_months(spark, config)
    schema = StructType(
        [StructField("id", LongType()), StructField("month", StringType()), StructField("bucket", LongType())]
    )
    assert _planned_files(_source(uri).reader(schema)) == 3
    assert _planned_files(_source(uri, partition_filter='{"month": ["2024-01", "2024-03"]}').reader(schema)) == 2

    pushdown = _source(uri, filter_pushdown="true").reader(schema)
    wanted = EqualTo(("bucket",), 3)
    other = EqualTo(("id",), 1)
    returned = list(pushdown.pushFilters([wanted, other]))
    assert returned == [wanted, other]  # Spark still applies every filter
    assert _planned_files(pushdown) == 2

    pruned = _source(uri, partition_filter='{"month": ["2024-02"]}')
    assert _planned_files(pruned.reader(schema)) == 1


def test_pushed_down_partition_filter_gives_right_rows(spark, config: Config) -> None:
    uri = _three_months(spark, config)
    spark.conf.set("spark.sql.python.filterPushdown.enabled", "true")
    try:
        frame = open_tables(spark, config).read(uri).where(F.col("bucket") == 3)
        ids = sorted(r["id"] for r in frame.collect())
    finally:
        spark.conf.unset("spark.sql.python.filterPushdown.enabled")
    assert ids == [1, 2]


def _writer(uri: str, replace_where: dict | None = None) -> DeltaArrowWriter:
    schema = StructType([StructField("id", LongType()), StructField("month", StringType())])
    request = WriteRequest(
        uri=uri, mode="overwrite" if replace_where else "append", schema=schema, partition_by=["month"],
        replace_where=replace_where, schema_mode=None, commit_metadata={}, write_id="w",
        read_version=None, storage_options={},
    )
    return DeltaArrowWriter(request, target_file_rows=10, partition_by=["month"])


def _batch(ids: list[int], months: list[str]) -> pa.RecordBatch:
    return pa.record_batch({"id": pa.array(ids, pa.int64()), "month": pa.array(months, pa.string())})


def _data_files(uri: str) -> list[str]:
    return [os.path.join(d, f) for d, _, fs in os.walk(uri) for f in fs if f.endswith(".parquet")]


def test_abort_deletes_the_written_files(tmp_path) -> None:
    uri = str(tmp_path / "t")
    writer = _writer(uri)
    message = writer.write(iter([_batch([1, 2, 3], ["a", "b", "a"])]))
    assert sorted(f.num_records for f in message.files) == [1, 2]
    assert len(_data_files(uri)) == 2

    writer.abort([message, None])

    assert _data_files(uri) == []
    assert not DeltaTable.is_deltatable(uri)


def test_a_failing_task_removes_its_own_files(tmp_path) -> None:
    uri = str(tmp_path / "t")
    writer = _writer(uri, replace_where={"month": ["a"]})
    batches = iter([_batch([1], ["a"]), _batch([2], ["b"])])
    with pytest.raises(ValueError, match=r"replace_where expected month in \['a'\], found a row with month='b'"):
        writer.write(batches)
    assert _data_files(uri) == []


def test_target_file_rows_splits_files(tmp_path) -> None:
    uri = str(tmp_path / "t")
    message = _writer(uri).write(iter([_batch(list(range(25)), ["a"] * 25)]))
    assert sorted(f.num_records for f in message.files) == [5, 10, 10]
