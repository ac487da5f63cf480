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
    assert any(n.startswith("fact_encounter: files 6 -> 1 after optimize (1 partitions of several files), 6 removed by vacuum") for n in summary.notes), summary.notes
    assert_df_equality(tables.read(uri).select("encounter_key", "npi", "v", "service_month", "npi_bucket"),
                       spark.createDataFrame(rows, SCHEMA), ignore_row_order=True, ignore_nullable=True)
    operations = [h["operation"] for h in tables.history(uri)]
    assert "OPTIMIZE" in operations, operations


def test_maintain_rewrites_only_partitions_of_several_files_and_then_nothing(spark: SparkSession, config, tables) -> None:
    from carelake.model import run_maintain
    from carelake.storage import table_uri

    uri = table_uri(config, "curated", "fact_encounter")
    crowded = [(f"E{i}", "1", i, "2024-01", 0) for i in range(3)]
    single = [("E9", "2", 9, "2024-02", 5)]
    for row in crowded + single:
        tables.write(spark.createDataFrame([row], SCHEMA), uri, mode="append", partition_by=["service_month", "npi_bucket"])
    single_file = [f["path"] for f in tables.files(uri) if f["partition_values"]["service_month"] == "2024-02"]

    run_maintain(spark, config, tables, "run-1")

    by_month = {}
    for f in tables.files(uri):
        by_month.setdefault(f["partition_values"]["service_month"], []).append(f["path"])
    assert len(by_month["2024-01"]) == 1
    assert by_month["2024-02"] == single_file  # left as it was, not rewritten
    version = tables.version(uri)

    summary = run_maintain(spark, config, tables, "run-2")

    later = [h["operation"] for h in tables.history(uri) if h["version"] > version]
    assert "OPTIMIZE" not in later, later  # nothing crowded: nothing rewritten (VACUUM may log)
    assert any(n.startswith("fact_encounter: files 2 -> 2 after optimize (0 partitions") for n in summary.notes), summary.notes
    assert sorted(r["encounter_key"] for r in tables.read(uri).collect()) == ["E0", "E1", "E2", "E9"]


def test_maintain_with_no_model_tables_has_nothing_to_do(spark: SparkSession, config, tables) -> None:
    from carelake.model import run_maintain

    assert run_maintain(spark, config, tables, "run-1").status == "nothing-to-do"


def test_compact_stage_compacts_raw_and_keeps_every_version_readable(spark: SparkSession, config, tables) -> None:
    from carelake.model.maintenance import run_compact
    from carelake.storage import table_uri

    uri = table_uri(config, "raw", "encounters")
    for i in range(3):  # three micro-batches' appends
        tables.write(spark.createDataFrame([(f"E{i}", f"b{i}")], "encounter_id string, _batch_id string"), uri, mode="append")
    first_version_rows = tables.read(uri, version=0).collect()

    summary = run_compact(spark, config, tables, "run-1")

    assert summary.status == "ok" and len(tables.files(uri)) == 1, summary.notes
    assert sorted(r["encounter_id"] for r in tables.read(uri).collect()) == ["E0", "E1", "E2"]
    assert tables.read(uri, version=0).collect() == first_version_rows
    assert run_compact(spark, config, tables, "run-2").status == "nothing-to-do"
