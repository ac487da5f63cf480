"""Tables written by one engine are standard Delta tables the other reads, merges and time-travels."""

from __future__ import annotations

import pyarrow as pa
from deltalake import DeltaTable, QueryBuilder

from carelake.config import Config
from carelake.delta import MergeSpec, Rows
from carelake.storage import table_uri
from tests.delta_engines import engine_tables

SCHEMA = "npi string, specialty string, month string, cases long"


def _delta_rs_rows(uri: str, version: int) -> list[tuple]:
    """The rows delta-rs's own SQL engine reads at ``version``, sorted."""
    reader = QueryBuilder().register("t", DeltaTable(uri, version=version)).execute(
        "SELECT npi, specialty, month, cases FROM t"
    )
    return sorted(tuple(r.values()) for r in pa.table(reader.read_all()).to_pylist())


def _spark_rows(frame) -> list[tuple]:
    return sorted(tuple(r) for r in frame.select("npi", "specialty", "month", "cases").collect())


def test_every_version_jvm_writes_reads_the_same_in_delta_rs(spark, config: Config) -> None:
    jvm = engine_tables(spark, config, "jvm")
    uri = table_uri(config, "curated", "fact_encounter")
    jvm.write(spark.createDataFrame([("1", "Cardiology", "2024-01", 3), ("2", "Surgery", "2024-02", 1)], SCHEMA), uri, partition_by=["month"])
    jvm.write(spark.createDataFrame([("3", "Neurology", "2024-01", 2)], SCHEMA), uri)
    jvm.merge(spark.createDataFrame([("1", "Cardiology", "2024-01", 5), ("4", "Oncology", "2024-03", 1)], SCHEMA), uri, MergeSpec(["npi", "month"]))
    jvm.delete(uri, Rows.where(npi=["2"]))
    jvm.write(spark.createDataFrame([("5", "Pediatrics", "2024-03", 9)], SCHEMA), uri, mode="overwrite", replace_where={"month": ["2024-03"]})
    jvm.optimize(uri)

    expected_by_version = {
        0: [("1", "Cardiology", "2024-01", 3), ("2", "Surgery", "2024-02", 1)],
        1: [("1", "Cardiology", "2024-01", 3), ("2", "Surgery", "2024-02", 1), ("3", "Neurology", "2024-01", 2)],
        2: [("1", "Cardiology", "2024-01", 5), ("2", "Surgery", "2024-02", 1), ("3", "Neurology", "2024-01", 2), ("4", "Oncology", "2024-03", 1)],
        3: [("1", "Cardiology", "2024-01", 5), ("3", "Neurology", "2024-01", 2), ("4", "Oncology", "2024-03", 1)],
        4: [("1", "Cardiology", "2024-01", 5), ("3", "Neurology", "2024-01", 2), ("5", "Pediatrics", "2024-03", 9)],
    }
    expected_by_version[5] = expected_by_version[4]
    assert jvm.version(uri) == 5
    for version, expected in expected_by_version.items():
        assert _spark_rows(jvm.read(uri, version=version)) == expected, f"jvm at version {version}"
        assert _delta_rs_rows(uri, version) == expected, f"delta-rs at version {version}"
    assert DeltaTable(uri).metadata().partition_columns == ["month"]


def test_a_table_rs_writes_is_read_merged_and_time_travelled_by_jvm(spark, config: Config) -> None:
    rs = engine_tables(spark, config, "rs")
    jvm = engine_tables(spark, config, "jvm")
    uri = table_uri(config, "processed", "providers")
    rs.write(spark.createDataFrame([("1", "Cardiology", "2024-01", 3), ("2", "Surgery", "2024-02", 1)], SCHEMA), uri, partition_by=["month"])
    rs.merge(spark.createDataFrame([("2", "Surgery", "2024-02", 4), ("3", "Neurology", "2024-01", 2)], SCHEMA), uri, MergeSpec(["npi", "month"]))
    rs.delete(uri, Rows.where(npi=["1"]))

    assert _spark_rows(jvm.read(uri, version=0)) == [("1", "Cardiology", "2024-01", 3), ("2", "Surgery", "2024-02", 1)]
    assert _spark_rows(jvm.read(uri, version=1)) == [("1", "Cardiology", "2024-01", 3), ("2", "Surgery", "2024-02", 4), ("3", "Neurology", "2024-01", 2)]
    assert _spark_rows(jvm.read(uri)) == [("2", "Surgery", "2024-02", 4), ("3", "Neurology", "2024-01", 2)]

    merged = jvm.merge(spark.createDataFrame([("3", "Neurology", "2024-01", 7), ("4", "Oncology", "2024-03", 1)], SCHEMA), uri, MergeSpec(["npi", "month"]))

    assert (merged.version, merged.rows_inserted, merged.rows_updated) == (3, 1, 1)
    assert _spark_rows(rs.read(uri)) == [("2", "Surgery", "2024-02", 4), ("3", "Neurology", "2024-01", 7), ("4", "Oncology", "2024-03", 1)]
    assert jvm.restore(uri, 1).version == 4
    assert _spark_rows(rs.read(uri)) == _spark_rows(jvm.read(uri, version=1))
    assert [h["operation"] for h in jvm.history(uri)][:2] == ["RESTORE", "MERGE"]
