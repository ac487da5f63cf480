"""The model stage: de-identified dimension updates, config specs, and an incremental end-to-end run."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date, datetime
from decimal import Decimal

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from carelake.delta.scd2 import Scd2Spec
from carelake.model.dimensions import dimension_spec, patient_updates, provider_updates
from carelake.privacy import tokenise_patient_key
from carelake.sources.canonical import canonical_schema

KEY = bytes(range(32))

PII = {"first_name", "last_name", "ssn", "phone", "email", "street_address", "birth_date", "mrn", "zip", "patient_id",
       "patient_key"}


def token(patient_key: str) -> str:
    return hmac.new(KEY, patient_key.encode(), hashlib.sha256).hexdigest()


def lineage(batch: str) -> tuple:
    return ("hospital_a", "f.csv", batch, datetime(2024, 5, 1))


def patient(key: str, birth: date | None, zip_code: str | None, updated: datetime, batch: str = "b1") -> tuple:
    return (key, "hospital_a", key[2:], "Ann", "Lee", "123-45-6789", "555-0100", "a@x.org", "1 Main St",
            birth, "F", zip_code, "MRN1", updated, *lineage(batch))


def provider(npi: str, specialty: str, updated: datetime, batch: str = "b1") -> tuple:
    return (npi, "Sam", "Roe", specialty, "207R00000X", "Org", "60601", "N1", "E1", True, updated, *lineage(batch))


def test_patient_updates_are_deidentified(spark: SparkSession) -> None:
    patients = spark.createDataFrame(
        [
            patient("A-1", date(1980, 6, 1), "60601-1234", datetime(2024, 5, 1)),
            patient("A-2", date(1934, 5, 2), "03601", datetime(2024, 5, 1)),  # 89 on the record date
            patient("A-3", date(1934, 5, 1), "60601", datetime(2024, 5, 1)),  # 90 that day: grouped
            patient("A-4", None, None, datetime(2024, 5, 1)),
        ],
        canonical_schema("patients"),
    )
    actual = patient_updates(tokenise_patient_key(patients, KEY))
    assert not PII & set(actual.columns)
    expected = spark.createDataFrame(
        [
            (token("A-1"), "hospital_a", "F", 1980, "606", datetime(2024, 5, 1)),
            (token("A-2"), "hospital_a", "F", 1934, "000", datetime(2024, 5, 1)),  # 036 is a restricted zip3
            (token("A-3"), "hospital_a", "F", 1934, "606", datetime(2024, 5, 1)),
            (token("A-4"), "hospital_a", "F", None, None, datetime(2024, 5, 1)),
        ],
        "patient_token string, source_system string, sex string, birth_year int, zip3 string, updated_at timestamp",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_patients_over_89_are_shown_as_90(spark: SparkSession) -> None:
    patients = spark.createDataFrame(
        [patient("A-9", date(1920, 1, 1), "60601", datetime(2024, 5, 1))], canonical_schema("patients")
    )
    assert patient_updates(tokenise_patient_key(patients, KEY)).collect()[0]["birth_year"] == 2024 - 90


def test_provider_updates_keep_attributes_and_effective_time(spark: SparkSession) -> None:
    providers = spark.createDataFrame([provider("1", "cardio", datetime(2024, 1, 1))], canonical_schema("providers"))
    assert provider_updates(providers).columns == [
        "npi", "first_name", "last_name", "specialty", "taxonomy_code", "zip", "organization",
        "network_id", "employer_id", "active", "updated_at",
    ]


def test_dimension_spec_defaults_and_config_override(base_config) -> None:
    assert dimension_spec(base_config, "dim_patient").surrogate_col == "patient_sk"
    config = base_config.with_overrides(**{"model.dimensions.dim_provider.tracked": ["specialty"],
                                           "model.dimensions.dim_provider.snapshot": True})
    assert dimension_spec(config, "dim_provider") == Scd2Spec(("npi",), ("specialty",), "updated_at", "provider_sk", True)


# --- end to end through the Delta layer: runs once carelake.delta.open_tables exists -----------


def encounter(key: str, npi: str, admit: date, batch: str) -> tuple:
    return (key, "hospital_a", key, "A-1", npi, "cardiology", "inpatient", admit, admit, "I10",
            False, False, 5, datetime(2024, 5, 1), *lineage(batch))


def procedure(key: str, encounter_key: str, charge: str, batch: str) -> tuple:
    return (key, "hospital_a", key, encounter_key, "1", "99213", "CPT", date(2024, 3, 1), 1, Decimal(charge), *lineage(batch))


def write_processed(spark: SparkSession, tables, config, entity: str, rows: list[tuple]) -> None:
    from carelake.storage import table_uri

    df: DataFrame = spark.createDataFrame(rows, canonical_schema(entity))
    tables.write(df, table_uri(config, "processed", entity), mode="append")


def test_model_stage_is_incremental_and_idempotent(spark: SparkSession, config, tables) -> None:
    from carelake.model import run_model
    from carelake.storage import table_uri

    write_processed(spark, tables, config, "providers", [provider("1", "cardio", datetime(2024, 1, 1))])
    write_processed(spark, tables, config, "patients", [patient("A-1", date(1980, 6, 1), "60601", datetime(2024, 1, 1))])
    write_processed(spark, tables, config, "encounters", [encounter("E1", "1", date(2024, 3, 1), "b1")])
    write_processed(spark, tables, config, "procedures", [procedure("P1", "E1", "10.00", "b1")])

    first = run_model(spark, config, tables, "run-1")
    assert first.status == "ok", first.notes
    assert first.counts("fact_encounter").rows_in == 1 and first.counts("dim_provider").rows_written == 1
    assert all(c.reconciles for c in first.entities.values())
    versions = {uri: tables.version(uri) for uri in first.tables}

    again = run_model(spark, config, tables, "run-2")
    assert again.status == "nothing-to-do"
    assert {uri: tables.version(uri) for uri in first.tables} == versions

    # Batch 2: the provider changes specialty, a new procedure lands on the old encounter.
    write_processed(spark, tables, config, "providers", [provider("1", "ortho", datetime(2024, 4, 1), "b2")])
    write_processed(spark, tables, config, "procedures", [procedure("P2", "E1", "5.50", "b2")])
    second = run_model(spark, config, tables, "run-3")
    assert second.status == "ok", second.notes

    dim = tables.read(table_uri(config, "curated", "dim_provider"))
    assert sorted((r["specialty"], r["is_current"]) for r in dim.collect()) == [("cardio", False), ("ortho", True)]
    fact = tables.read(table_uri(config, "curated", "fact_encounter")).select("encounter_key", "encounter_cost", "provider_sk")
    cardio_sk = dim.where("specialty = 'cardio'").collect()[0]["provider_sk"]
    expected = spark.createDataFrame([("E1", Decimal("15.50"), cardio_sk)], "encounter_key string, encounter_cost decimal(24,2), provider_sk bigint")
    assert_df_equality(fact, expected, ignore_nullable=True)
    dates = tables.read(table_uri(config, "curated", "dim_date"))
    assert dates.count() == 366  # 2024, whole year
    curated_columns = {c for name in ("dim_patient", "fact_encounter", "fact_procedure")
                       for c in tables.read(table_uri(config, "curated", name)).columns}
    assert not (PII - {"zip"}) & curated_columns
