"""The aggregates stage on Delta tables: first run, idempotent re-run, incremental recompute of
only what a new fact touches, and the top-providers text."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carelake.config import Config
from carelake.curated import run_aggregates, top_providers_report
from carelake.curated.persons import PERSONS_SCHEMA
from carelake.curated.stage import TABLE_KEYS
from carelake.delta import open_tables
from carelake.model import upsert_fact
from carelake.model.persons import ENTERPRISE_TOKENS_TABLE
from carelake.storage import table_uri
from tests.test_curated_data import AS_OF, ENCOUNTER_SCHEMA, encounter, inputs, patients

FACTS = {"fact_encounter": ("encounters", "npi"), "fact_procedure": ("procedures", "npi"),
         "fact_claim": ("claims", "npi"), "fact_referral": ("referrals", "referring_npi")}


def bucketed(df: DataFrame, npi_col: str) -> DataFrame:
    """The hand-made rows as the model stage writes them: bucketed, with the discharge date and
    record time (filed the day after discharge / service / referral) of the real facts."""
    if "length_of_stay_days" in df.columns and "discharge_date" not in df.columns:
        df = df.withColumn("discharge_date", F.date_add("admit_date", F.col("length_of_stay_days")))
    event = next((c for c in ("discharge_date", "service_date", "referral_date") if c in df.columns), None)
    if event and "updated_at" not in df.columns:
        df = df.withColumn("updated_at", F.date_add(event, 1).cast("timestamp"))
    return df.withColumn("npi_bucket", F.pmod(F.xxhash64(npi_col), F.lit(4)).cast("int"))


def test_first_run_rerun_and_incremental(spark: SparkSession, config: Config) -> None:
    config = config.with_overrides(**{"curated.as_of": AS_OF.isoformat()})
    tables = open_tables(spark, config)
    data = inputs(spark)
    for fact, (name, npi_col) in FACTS.items():
        tables.write(bucketed(data[name], npi_col), table_uri(config, "curated", fact), partition_by=["service_month", "npi_bucket"])
    tables.write(data["providers"], table_uri(config, "curated", "dim_provider"))
    tables.write(patients(spark), table_uri(config, "curated", "dim_patient"))
    tables.write(data["crm"], table_uri(config, "processed", "crm_activity"))

    first = run_aggregates(spark, config, tables, "run-1")
    assert first.status == "ok"
    assert {name: first.entities[name].rows_written for name in ("provider_features", "patient_summary")} == {
        "provider_features": 3, "patient_summary": 4}
    assert set(TABLE_KEYS) <= set(first.entities)
    features_uri = table_uri(config, "curated", "provider_features")
    before = tables.read(features_uri).localCheckpoint(eager=True)
    patients_before = tables.read(table_uri(config, "curated", "patient_summary")).localCheckpoint(eager=True)
    versions = {uri: tables.version(uri) for uri in first.tables}

    again = run_aggregates(spark, config, tables, "run-2")
    assert again.status == "nothing-to-do"
    assert {uri: tables.version(uri) for uri in first.tables} == versions

    # A new encounter of patient A with npi 3, the only dermatologist, within the windows.
    new = spark.createDataFrame(
        [encounter("e9", "A", "3", "outpatient", "L57.0", date(2024, 6, 15), 0, "80.00", 0, 0, 5, dept="Dermatology")],
        ENCOUNTER_SCHEMA,
    )
    upsert_fact(tables, table_uri(config, "curated", "fact_encounter"), bucketed(new, "npi"), ["encounter_key"])
    third = run_aggregates(spark, config, tables, "run-3")
    assert third.status == "ok"
    counts = third.entities
    assert (counts["provider_features"].rows_in, counts["provider_features"].rows_written) == (1, 1)
    assert (counts["patient_summary"].rows_in, counts["patient_summary"].rows_written) == (1, 1)
    assert (counts["kpi_patient"].rows_in, counts["kpi_patient"].rows_written) == (1, 1)  # 2024-06 only

    after = tables.read(features_uri)
    assert_df_equality(after.where("npi <> '3'"), before.where("npi <> '3'"), ignore_row_order=True)
    three = after.where("npi = '3'").collect()[0]
    # One 80.00 case, the only one in its specialty and cell: cost index 1, score
    # 0.4 * 0.5 + 0.2 * 1 + 0.2 * 1 + 0.2 * (5 - 1) / 4 = 0.8.
    assert (three.encounters_365d, three.cost_per_case, three.cost_index, three.composite_score) == (1, D("80.00"), 1.0, 0.8)
    summary_after = tables.read(table_uri(config, "curated", "patient_summary"))
    assert_df_equality(summary_after.where("patient_token <> 'A'"), patients_before.where("patient_token <> 'A'"), ignore_row_order=True)
    assert summary_after.where("patient_token = 'A'").collect()[0].visits == 3

    outcomes = tables.read(table_uri(config, "curated", "provider_outcomes"))
    # npi 3's one outpatient visit (no claim): a complication case, no readmission or cost case.
    row = outcomes.where("npi = '3'").collect()[0]
    assert (row.as_of, row.complication_cases, row.readmission_30d_cases, row.cost_per_case_cases) == (AS_OF, 1, None, None)
    assert outcomes.count() == outcomes.select("npi", "as_of").distinct().count()

    # The match stage links A and B into one person: only their rows are recomputed, and the
    # person's counts are on both without counting anything twice.
    untouched = tables.read(table_uri(config, "curated", "patient_summary")).where("patient_token IN ('C', 'D')")
    untouched = untouched.localCheckpoint(eager=True)
    persons = spark.createDataFrame([("A", "P", "hospital_a", True), ("B", "P", "hospital_a", True)], PERSONS_SCHEMA)
    tables.write(persons, table_uri(config, "curated", ENTERPRISE_TOKENS_TABLE))
    fourth = run_aggregates(spark, config, tables, "run-4")
    assert fourth.entities["patient_summary"].rows_in == 2
    linked = tables.read(table_uri(config, "curated", "patient_summary"))
    assert_df_equality(linked.where("patient_token IN ('C', 'D')"), untouched, ignore_row_order=True)
    both = {r.patient_token: (r.enterprise_patient_token, r.visits, r.person_visits, r.person_records)
            for r in linked.where("patient_token IN ('A', 'B')").collect()}
    assert both == {"A": ("P", 3, 4, 2), "B": ("P", 1, 4, 2)}  # A's e1, e3, e9 and B's e2
    per_person = linked.groupBy("enterprise_patient_token").agg(F.max("person_visits").alias("v")).agg(F.sum("v"))
    assert per_person.collect()[0][0] == linked.agg(F.sum("visits")).collect()[0][0]

    report = top_providers_report(spark, config, tables, n=2)
    assert "no provider with 5 cases of cost_per_case does better than its case mix yet" in report
    assert "no provider with 5 cases of readmission_30d does better than its case mix yet" in report
    assert top_providers_report(spark, config.with_overrides(**{"lakehouse.root": str(config.root) + "-empty"}), tables) == (
        "table curated.provider_outcomes not built yet — run make run"
    )


def test_tables_written_by_an_earlier_version_are_rebuilt_with_their_new_columns(spark: SparkSession, config: Config) -> None:
    from carelake.curated.dictionary import TABLES
    from carelake.curated.sync import sync_table, tables_missing_columns
    from carelake.run import StageSummary

    tables = open_tables(spark, config)
    assert tables_missing_columns(config, tables) == []  # nothing written yet
    uri = table_uri(config, "curated", "network_adequacy")
    declared = list(TABLES["network_adequacy"][1])
    every = spark.createDataFrame([tuple("x" for _ in declared)], ", ".join(f"{c} string" for c in declared))
    tables.write(every.drop("completion_days_p50"), uri)
    assert tables_missing_columns(config, tables) == ["network_adequacy"]
    # The full rebuild that follows adds the column to the stored table.
    sync_table(tables, uri, every, TABLE_KEYS["network_adequacy"], None, True, StageSummary("aggregates"), "network_adequacy", {})
    assert tables_missing_columns(config, tables) == []
    assert tables.read(uri).select("completion_days_p50").collect()[0][0] == "x"
