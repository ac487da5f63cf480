"""The maintain stage: compaction, z-order by NPI and vacuum of curated model tables."""

from __future__ import annotations

from chispa import assert_df_equality
from pyspark.sql import SparkSession

SCHEMA = "encounter_key string, npi string, v int, service_month string, npi_bucket int"


def test_maintain_compacts_zorders_and_vacuums_without_changing_rows(spark: SparkSession, config, tables) -> None:
    from carelake.model import run_maintain
    from carelake.storage import table_uri

    config = config.with_overrides(**{"delta.vacuum_retention_hours": 0})
    uri = table_uri(config, "curated", "fact_encounter")
    rows = [(f"E{i}", str(i % 3), i, "2024-01", 0) for i in range(6)]
    for row in rows:  # one small file per append
        tables.write(spark.createDataFrame([row], SCHEMA), uri, mode="append", partition_by=["service_month", "npi_bucket"])
    before = len(tables.files(uri))

    summary = run_maintain(spark, config, tables, "run-1")

    after = len(tables.files(uri))
    assert before == 6 and after == 1, (before, after)
    assert summary.status == "ok" and uri in summary.tables
    assert any(n.startswith("fact_encounter: files 6 -> 1 after optimize, 6 removed by vacuum") for n in summary.notes), summary.notes
    assert_df_equality(tables.read(uri).select("encounter_key", "npi", "v", "service_month", "npi_bucket"),
                       spark.createDataFrame(rows, SCHEMA), ignore_row_order=True, ignore_nullable=True)
    operations = [h["operation"] for h in tables.history(uri)]
    assert "OPTIMIZE" in operations, operations


def test_maintain_with_no_model_tables_has_nothing_to_do(spark: SparkSession, config, tables) -> None:
    from carelake.model import run_maintain

    assert run_maintain(spark, config, tables, "run-1").status == "nothing-to-do"
