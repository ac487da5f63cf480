"""Role views: each role's database returns only what the role may see."""

from __future__ import annotations

import logging
from datetime import date

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession

from carelake.config import ConfigError
from carelake.serve.access import create_role_views, role_policies

ROLES = {
    "access.roles": {"analyst": {}, "clinician": {"hospital": "hospital_a"}, "engineer": {}},
}
ZONE_DATABASES = ("processed", "curated")
ROLE_DATABASES = ("analyst", "clinician_hospital_a", "engineer")


@pytest.fixture
def zones(spark: SparkSession):
    """Tiny ``processed`` and ``curated`` databases as the catalog registers them; dropped after."""
    for database in (*ZONE_DATABASES, *ROLE_DATABASES):
        spark.sql(f"DROP DATABASE IF EXISTS {database} CASCADE")
        if database in ZONE_DATABASES:
            spark.sql(f"CREATE DATABASE {database}")
    spark.createDataFrame(
        [("ka", "hospital_a", date(1980, 6, 1)), ("kb", "hospital_b", date(1975, 1, 2))],
        "patient_key string, source_system string, birth_date date",
    ).write.saveAsTable("processed.patients")
    spark.createDataFrame(
        [("ka", "hospital_a", "Ann", "Lee", "123-45-6789"), ("kb", "hospital_b", "Bob", "Roe", "987-65-4321")],
        "patient_key string, source_system string, first_name string, last_name string, ssn string",
    ).write.saveAsTable("processed.patients_pii")
    spark.createDataFrame(
        [("patients", "hospital_a", '{"ssn": "123-45-6789"}')],
        "entity string, source_system string, raw_payload string",
    ).write.saveAsTable("processed._quarantine")
    spark.createDataFrame(
        [("ta", "hospital_a", 1980, "606"), ("tb", "hospital_b", 1975, "000")],
        "patient_token string, source_system string, birth_year int, zip3 string",
    ).write.saveAsTable("curated.dim_patient")
    spark.createDataFrame(
        [("E1", "ta", "hospital_a", "kaa"), ("E2", "tb", "hospital_b", "kbb")],
        # patient_key here stands for an identifier that must never be served to analysts
        "encounter_key string, patient_token string, source_system string, patient_key string",
    ).write.saveAsTable("curated.fact_encounter")
    spark.createDataFrame([("t1", 3)], "patient_token string, visits int").write.saveAsTable(
        "curated.unattributed"
    )
    yield
    for database in (*ROLE_DATABASES, *ZONE_DATABASES):
        spark.sql(f"DROP DATABASE IF EXISTS {database} CASCADE")


def test_each_role_gets_only_its_views(spark: SparkSession, base_config, zones) -> None:
    created = create_role_views(spark, base_config.with_overrides(**ROLES))
    assert created == {
        "analyst": ["curated__dim_patient", "curated__fact_encounter", "curated__unattributed"],
        "clinician_hospital_a": [
            "curated__dim_patient", "curated__fact_encounter", "processed__patients", "processed__patients_pii",
        ],
        # Engineers debug the pipeline from the quarantine; the identifiers table is not theirs.
        "engineer": [
            "curated__dim_patient", "curated__fact_encounter", "curated__unattributed",
            "processed___quarantine", "processed__patients",
        ],
    }


def test_analyst_views_never_return_processed_pii(spark: SparkSession, base_config, zones) -> None:
    create_role_views(spark, base_config.with_overrides(**ROLES))
    analyst_tables = {t.name for t in spark.catalog.listTables("analyst")}
    assert not {n for n in analyst_tables if n.startswith("processed__")}
    assert spark.table("analyst.curated__fact_encounter").columns == ["encounter_key", "patient_token", "source_system"]


def test_clinician_sees_own_hospital_rows_with_masked_ssn(spark: SparkSession, base_config, zones) -> None:
    create_role_views(spark, base_config.with_overrides(**ROLES))
    expected = spark.createDataFrame(
        [("ka", "hospital_a", "Ann", "Lee", "***-**-6789")],
        "patient_key string, source_system string, first_name string, last_name string, ssn string",
    )
    assert_df_equality(spark.table("clinician_hospital_a.processed__patients_pii"), expected, ignore_nullable=True)
    assert [r["patient_key"] for r in spark.table("clinician_hospital_a.processed__patients").collect()] == ["ka"]
    facts = spark.table("clinician_hospital_a.curated__fact_encounter").collect()
    assert [r["encounter_key"] for r in facts] == ["E1"]


def test_engineer_sees_quarantine_payload(spark: SparkSession, base_config, zones) -> None:
    create_role_views(spark, base_config.with_overrides(**ROLES))
    row = spark.table("engineer.processed___quarantine").collect()[0]
    assert row["raw_payload"] == '{"ssn": "123-45-6789"}'


def test_views_of_a_removed_role_scope_are_dropped(spark: SparkSession, base_config, zones) -> None:
    config = base_config.with_overrides(**ROLES)
    create_role_views(spark, config)
    spark.sql("DROP TABLE curated.unattributed")
    assert "curated__unattributed" not in create_role_views(spark, config)["analyst"]
    assert "curated__unattributed" not in {t.name for t in spark.catalog.listTables("analyst")}


def test_role_views_are_rebuilt_only_when_the_tables_under_them_change(
    spark: SparkSession, base_config, zones, caplog: pytest.LogCaptureFixture
) -> None:
    config = base_config.with_overrides(**ROLES)
    create_role_views(spark, config)
    with caplog.at_level(logging.INFO, logger="carelake.serve.access"):
        create_role_views(spark, config)
        assert not [r for r in caplog.records if r.getMessage().startswith("role database")]
        spark.sql("ALTER TABLE curated.dim_patient ADD COLUMNS (region string)")
        create_role_views(spark, config)
    rebuilt = {r.getMessage().split(":")[0] for r in caplog.records}
    # dim_patient is curated: every role database shows it, so every one is rebuilt.
    assert rebuilt == {f"role database {database}" for database in ROLE_DATABASES}
    assert spark.table("analyst.curated__dim_patient").columns == ["patient_token", "source_system", "birth_year", "zip3", "region"]


@pytest.mark.parametrize(
    "roles, message",
    [
        ({"auditor": {}}, "unknown role 'auditor'"),
        ({"clinician": {}}, "'hospital' (a source system or a list) is required"),
        ({"clinician": {"hospital": "hospital_z"}}, "'hospital_z' is not a configured source system"),
    ],
)
def test_bad_role_config_fails_clearly(base_config, roles, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        role_policies(base_config.with_overrides(**{"access.roles": roles}))
