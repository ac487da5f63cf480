"""Facts: dimension versions valid at the event date, measures, partitions, partition upserts."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructField, StructType

from carelake.model.facts import (
    build_fact_claim,
    build_fact_encounter,
    build_fact_referral,
    replace_partitions,
    touched_partitions,
    version_lookup,
    with_partitions,
)
from carelake.sources.canonical import canonical_schema


def tokenised(entity: str) -> StructType:
    """The processed schema as the model reads it: ``patient_key`` already replaced by ``patient_token``."""
    return StructType(
        [StructField("patient_token" if f.name == "patient_key" else f.name, f.dataType, f.nullable)
         for f in canonical_schema(entity)]
    )

OPEN = datetime(9999, 12, 31)
LINEAGE = ("hospital_a", "f.csv", "b1", datetime(2024, 1, 1))


def provider_dim(spark: SparkSession) -> DataFrame:
    """npi 1 changed on 2024-03-15 08:00; npi 2 has one version from 2024-02-01."""
    return spark.createDataFrame(
        [
            (101, "1", datetime(2024, 1, 1, 10), datetime(2024, 3, 15, 8), False),
            (102, "1", datetime(2024, 3, 15, 8), OPEN, True),
            (201, "2", datetime(2024, 2, 1), OPEN, True),
        ],
        "provider_sk bigint, npi string, valid_from timestamp, valid_to timestamp, is_current boolean",
    )


def patient_dim(spark: SparkSession) -> DataFrame:
    """Patient A-1 moved on 2024-03-01; patient A-2 was end-dated on 2024-02-01."""
    return spark.createDataFrame(
        [
            (501, "A-1", datetime(2024, 2, 1), datetime(2024, 3, 1), False),
            (502, "A-1", datetime(2024, 3, 1), OPEN, True),
            (601, "A-2", datetime(2024, 1, 1), datetime(2024, 2, 1), False),
        ],
        "patient_sk bigint, patient_token string, valid_from timestamp, valid_to timestamp, is_current boolean",
    )


def lookups(spark: SparkSession) -> tuple[DataFrame, DataFrame]:
    return (
        version_lookup(provider_dim(spark), "npi", "provider_sk"),
        version_lookup(patient_dim(spark), "patient_token", "patient_sk"),
    )


def encounter(key: str, patient: str, npi: str, admit: date, discharge: date, readmit: bool | None = False) -> tuple:
    return (key, "hospital_a", key, patient, npi, "cardiology", "inpatient", admit, discharge, "I10",
            readmit, True, 4, datetime(2024, 4, 1), *LINEAGE)


def procedure(key: str, encounter_key: str, charge: str) -> tuple:
    return (key, "hospital_a", key, encounter_key, "1", "99213", "CPT", date(2024, 1, 10), 1, Decimal(charge), *LINEAGE)


def test_encounter_facts_take_the_versions_valid_on_admit_date(spark: SparkSession) -> None:
    encounters = spark.createDataFrame(
        [
            encounter("E1", "A-1", "1", date(2024, 1, 10), date(2024, 1, 13)),  # before A-1's first version
            encounter("E2", "A-1", "1", date(2024, 3, 14), date(2024, 3, 14)),  # day before npi 1 changed
            encounter("E3", "A-1", "1", date(2024, 3, 15), date(2024, 3, 16)),  # the day it changed
            encounter("E4", "A-2", "9", date(2024, 3, 1), date(2024, 3, 2), None),  # unknown npi, ended patient
        ],
        tokenised("encounters"),
    )
    procedures = spark.createDataFrame(
        [procedure("P1", "E1", "100.50"), procedure("P2", "E1", "20.00"), procedure("P3", "E3", "7.25")],
        canonical_schema("procedures"),
    )
    providers, patients = lookups(spark)
    actual = build_fact_encounter(encounters, procedures, providers, patients, 16).select(
        "encounter_key", "provider_sk", "patient_sk", "length_of_stay_days", "procedure_count",
        "encounter_cost", "readmitted_30d", "complication", "satisfaction_score", "date_key", "service_month",
    )
    expected = spark.createDataFrame(
        [
            ("E1", 101, 501, 3, 2, Decimal("120.50"), 0, 1, 4, 20240110, "2024-01"),
            ("E2", 101, 502, 0, 0, Decimal("0.00"), 0, 1, 4, 20240314, "2024-03"),
            ("E3", 102, 502, 1, 1, Decimal("7.25"), 0, 1, 4, 20240315, "2024-03"),
            ("E4", None, None, 1, 0, Decimal("0.00"), None, 1, 4, 20240301, "2024-03"),
        ],
        "encounter_key string, provider_sk bigint, patient_sk bigint, length_of_stay_days int, "
        "procedure_count int, encounter_cost decimal(24,2), readmitted_30d int, complication int, "
        "satisfaction_score int, date_key int, service_month string",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_claim_measures_and_denial_flag(spark: SparkSession) -> None:
    claims = spark.createDataFrame(
        [
            ("C1", "hospital_a", "E1", "A-1", "2", "acme", Decimal("200.00"), Decimal("150.00"),
             Decimal("120.00"), "paid", date(2024, 3, 2), date(2024, 3, 5), date(2024, 3, 25), datetime(2024, 4, 1), *LINEAGE),
            ("C2", "hospital_a", "E1", "A-1", "2", "acme", Decimal("80.00"), Decimal("0.00"),
             Decimal("0.00"), " Denied", None, date(2024, 3, 5), None, datetime(2024, 4, 1), *LINEAGE),
        ],
        tokenised("claims"),
    )
    providers, patients = lookups(spark)
    actual = build_fact_claim(claims, providers, patients, 4).select(
        "claim_id", "provider_sk", "patient_sk", "billed_amount", "paid_amount", "is_denied", "days_to_payment", "service_month"
    )
    expected = spark.createDataFrame(
        [
            ("C1", 201, 502, Decimal("200.00"), Decimal("120.00"), 0, 20, "2024-03"),
            ("C2", None, None, Decimal("80.00"), Decimal("0.00"), 1, None, "unknown"),
        ],
        "claim_id string, provider_sk bigint, patient_sk bigint, billed_amount decimal(14,2), "
        "paid_amount decimal(14,2), is_denied int, days_to_payment int, service_month string",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_referral_is_keyed_to_both_providers_and_bucketed_by_referring_npi(spark: SparkSession) -> None:
    referrals = spark.createDataFrame(
        [("R1", "1", "2", "hospital_a", "A-1", "emp", date(2024, 2, 20), "open", "ortho", datetime(2024, 4, 1), *LINEAGE)],
        tokenised("referrals"),
    )
    providers, patients = lookups(spark)
    actual = build_fact_referral(referrals, providers, patients, 1).select(
        "referral_id", "referring_provider_sk", "referred_to_provider_sk", "patient_sk", "referral_count", "npi_bucket"
    )
    expected = spark.createDataFrame(
        [("R1", 101, 201, 501, 1, 0)],
        "referral_id string, referring_provider_sk bigint, referred_to_provider_sk bigint, "
        "patient_sk bigint, referral_count int, npi_bucket int",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_npi_bucket_is_stable_and_in_range(spark: SparkSession) -> None:
    df = spark.createDataFrame([(str(n), date(2024, 1, 1)) for n in range(40)] + [("7", date(2024, 2, 1))], "npi string, d date")
    rows = with_partitions(df, "d", "npi", 4).collect()
    assert {r["npi_bucket"] for r in rows} <= {0, 1, 2, 3} and len({r["npi_bucket"] for r in rows}) > 1
    assert len({r["npi_bucket"] for r in rows if r["npi"] == "7"}) == 1


PART = "id string, v int, service_month string, npi_bucket int"


def test_touched_partitions_include_where_a_moved_row_was(spark: SparkSession) -> None:
    existing = spark.createDataFrame(
        [("a", 1, "2024-01", 0), ("b", 1, "2024-01", 1), ("c", 1, "2024-02", 0)], PART
    )
    batch = spark.createDataFrame([("a", 2, "2024-03", 0), ("d", 1, "2024-02", 0)], PART)
    actual = touched_partitions(batch, existing, ["id"])
    expected = spark.createDataFrame(
        [("2024-03", 0), ("2024-02", 0), ("2024-01", 0)], "service_month string, npi_bucket int"
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_replaced_partitions_keep_other_rows_and_take_the_batch(spark: SparkSession) -> None:
    in_scope = spark.createDataFrame([("a", 1, "2024-01", 0), ("c", 1, "2024-02", 0)], PART)
    batch = spark.createDataFrame([("a", 2, "2024-03", 0), ("d", 1, "2024-02", 0)], PART)
    actual = replace_partitions(in_scope, batch, ["id"])
    expected = spark.createDataFrame(
        [("c", 1, "2024-02", 0), ("a", 2, "2024-03", 0), ("d", 1, "2024-02", 0)], PART
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


# --- through the Delta layer: runs once carelake.delta.open_tables exists ---------------------


def test_second_batch_rewrites_only_the_partitions_of_its_month(spark: SparkSession, config, tables) -> None:
    from carelake.model.stage import upsert_fact
    from carelake.storage import table_uri

    uri = table_uri(config, "curated", "fact_test")
    schema = "id string, npi string, v int, service_month string, npi_bucket int"
    first = spark.createDataFrame(
        [("a", "1", 1, "2024-01", 0), ("b", "2", 1, "2024-01", 1), ("c", "1", 1, "2024-02", 0), ("d", "2", 1, "2024-02", 1)],
        schema,
    )
    upsert_fact(tables, uri, first, ["id"])
    before = {f["path"] for f in tables.files(uri)}
    second = spark.createDataFrame([("c", "1", 2, "2024-02", 0), ("e", "1", 1, "2024-02", 0)], schema)
    upsert_fact(tables, uri, second, ["id"])
    after = {f["path"] for f in tables.files(uri)}

    added, removed = after - before, before - after
    assert added and removed
    assert all("service_month=2024-02" in p and "npi_bucket=0" in p for p in added | removed), (added, removed)
    expected = spark.createDataFrame(
        [("a", "1", 1, "2024-01", 0), ("b", "2", 1, "2024-01", 1), ("c", "1", 2, "2024-02", 0),
         ("d", "2", 1, "2024-02", 1), ("e", "1", 1, "2024-02", 0)],
        schema,
    )
    assert_df_equality(tables.read(uri).select(*expected.columns), expected, ignore_row_order=True, ignore_nullable=True)
