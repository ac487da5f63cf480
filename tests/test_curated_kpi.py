"""KPI marts on the tiny model of tests/test_curated_data.py (worked by hand), and the generated
data dictionary covering every column the curated functions produce."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from carelake.curated import kpi
from carelake.curated.dictionary import TABLES, data_dictionary, write_data_dictionary
from tests.test_curated_data import CLAIM_SCHEMA, CLAIMS, claim, inputs

# A claim whose encounter is unknown and payer missing: hospital from the patient, labels 'unknown'.
ORPHAN_CLAIM = claim("c5", "E", "2", date(2024, 6, 3), "50.00", "40.00", "20.00", 0, "zz", payer=None)


@pytest.fixture(scope="module")
def data(spark: SparkSession) -> dict[str, DataFrame]:
    frames = inputs(spark)
    frames["claims"] = spark.createDataFrame([*CLAIMS, ORPHAN_CLAIM], CLAIM_SCHEMA)
    return frames


def same(spark: SparkSession, actual: DataFrame, schema: str, rows: list[tuple]) -> None:
    expected = spark.createDataFrame(rows, schema)
    assert_df_equality(actual.select(*expected.columns), expected, ignore_row_order=True, ignore_nullable=True)


def test_kpi_patient_by_month(spark: SparkSession, data: dict[str, DataFrame]) -> None:
    # 2024-06: e1 (A, satisfaction 5) and e4 (C, 2), no readmission.
    same(spark, kpi.kpi_patient(data["encounters"]),
         "service_month string, patients long, visits long, readmissions long, readmission_rate double, avg_satisfaction double",
         [("2024-06", 2, 2, 0, 0.0, 3.5), ("2024-05", 1, 1, 1, 1.0, 4.0), ("2024-03", 1, 1, 1, 1.0, 1.0),
          ("2023-09", 1, 1, 0, 0.0, 3.0), ("2023-01", 1, 1, 1, 1.0, 1.0)])


def test_kpi_provider_by_npi_and_month(spark: SparkSession, data: dict[str, DataFrame]) -> None:
    zero = D("0.00")
    same(spark, kpi.kpi_provider(data["encounters"], data["claims"]),
         "npi string, service_month string, encounters long, patients long, total_cost decimal(18,2), "
         "readmission_rate double, complication_rate double, avg_satisfaction double, billed decimal(18,2), paid decimal(18,2)",
         [("1", "2024-06", 1, 1, D("100.00"), 0.0, 0.0, 5.0, D("100.00"), D("60.00")),
          ("1", "2024-05", 1, 1, D("1000.00"), 1.0, 0.0, 4.0, D("1000.00"), zero),
          ("1", "2023-09", 1, 1, D("200.00"), 0.0, 1.0, 3.0, zero, zero),
          ("1", "2023-01", 1, 1, D("999.00"), 1.0, 1.0, 1.0, zero, zero),
          ("2", "2024-06", 1, 1, D("300.00"), 0.0, 0.0, 2.0, D("350.00"), D("170.00")),
          ("2", "2024-03", 1, 1, D("2000.00"), 1.0, 1.0, 1.0, zero, zero)])


def test_kpi_finance_by_month_hospital_department_payer(spark: SparkSession, data: dict[str, DataFrame]) -> None:
    # c1 + c4: Aetna, Cardiology encounters: 100 + 300 billed, 80 + 200 allowed, 60 + 150 paid.
    same(spark, kpi.kpi_finance(data["claims"], data["encounters"]),
         "service_month string, hospital string, department string, payer string, claims long, billed decimal(18,2), "
         "allowed decimal(18,2), paid decimal(18,2), denied_claims long, denial_rate double, collection_rate double",
         [("2024-06", "hospital_a", "Cardiology", "Aetna", 2, D("400.00"), D("280.00"), D("210.00"), 0, 0.0, 0.75),
          ("2024-05", "hospital_a", "Cardiology", "Medicare", 1, D("1000.00"), D("500.00"), D("0.00"), 1, 1.0, 0.0),
          ("2024-06", "hospital_a", "unknown", "unknown", 1, D("50.00"), D("40.00"), D("20.00"), 0, 0.0, 0.5)])


def test_kpi_hospital_census_and_services(spark: SparkSession, data: dict[str, DataFrame]) -> None:
    # May: e2 stays 3 days -> 3 / 31 = 0.0968 beds; March: e5 5 days -> 5 / 31 = 0.1613.
    same(spark, kpi.kpi_hospital(data["encounters"], data["procedures"]),
         "hospital string, department string, service_month string, encounters long, inpatient_encounters long, "
         "patient_days long, avg_daily_census double, procedures long, distinct_procedure_codes long",
         [("hospital_a", "Cardiology", "2024-06", 2, 0, 0, 0.0, 3, 2),
          ("hospital_a", "Cardiology", "2024-05", 1, 1, 3, 0.0968, 1, 1),
          ("hospital_a", "Cardiology", "2024-03", 1, 1, 5, 0.1613, 1, 1),
          ("hospital_a", "Cardiology", "2023-09", 1, 0, 0, 0.0, 1, 1),
          ("hospital_a", "Cardiology", "2023-01", 1, 0, 0, 0.0, 1, 1)])


def test_kpi_executive_growth(spark: SparkSession, data: dict[str, DataFrame]) -> None:
    # June against May: visits 2 vs 1 and patients 2 vs 1 -> +100%; paid 230 vs 0 -> no growth rate.
    patient = kpi.kpi_patient(data["encounters"])
    finance = kpi.kpi_finance(data["claims"], data["encounters"])
    zero = D("0.00")
    same(spark, kpi.kpi_executive(patient, finance),
         "service_month string, patients long, visits long, billed decimal(18,2), paid decimal(18,2), "
         "visits_mom_growth double, patients_mom_growth double, paid_mom_growth double",
         [("2024-06", 2, 2, D("450.00"), D("230.00"), 1.0, 1.0, None),
          ("2024-05", 1, 1, D("1000.00"), zero, None, None, None),
          ("2024-03", 1, 1, zero, zero, None, None, None),
          ("2023-09", 1, 1, zero, zero, None, None, None),
          ("2023-01", 1, 1, zero, zero, None, None, None)])


def test_dictionary_documents_every_kpi_column(data: dict[str, DataFrame]) -> None:
    patient = kpi.kpi_patient(data["encounters"])
    finance = kpi.kpi_finance(data["claims"], data["encounters"])
    produced = {
        "kpi_patient": patient, "kpi_provider": kpi.kpi_provider(data["encounters"], data["claims"]),
        "kpi_finance": finance, "kpi_hospital": kpi.kpi_hospital(data["encounters"], data["procedures"]),
        "kpi_executive": kpi.kpi_executive(patient, finance),
    }
    for table, df in produced.items():
        assert set(df.columns) == set(TABLES[table][1]), table


def test_written_dictionary_lists_every_table(tmp_path) -> None:
    path = write_data_dictionary(tmp_path / "docs" / "data_dictionary.md")
    text = path.read_text(encoding="utf-8")
    assert text == data_dictionary()
    assert all(f"## {table}" in text for table in TABLES)
    assert "| `composite_score` |" in text
    assert "## provider_outcomes" in text and "| `cost_per_case_oe_ratio_shrunk` |" in text
