"""Outcome measures from encounter sequences, case-mix expectation, shrinkage, point in time.

Every expected value is worked out by hand from the rows below (as of 2024-12-31: index stays
must be discharged by 2024-11-17, 30 days of follow-up plus 14 days for the records to arrive).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal as D

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carelake.curated.features import providers_as_of
from carelake.curated.outcomes import (
    BINARY,
    COLUMNS,
    complication_cases,
    cost_cases,
    measure,
    measure_cases,
    provider_outcomes,
    provider_ratios,
    readmission_cases,
    shrink_ratios,
    with_expected,
)
from carelake.curated.procedures import procedure_specialisation
from tests.test_curated_data import OPEN, PATIENT_SCHEMA, PROVIDER_SCHEMA, START

AS_OF = date(2024, 12, 31)
ENCOUNTER_SCHEMA = (
    "encounter_key string, source_system string, patient_token string, npi string, encounter_type string, "
    "diagnosis_code string, admit_date date, discharge_date date, complication int, updated_at timestamp"
)
CLAIM_SCHEMA = (
    "claim_id string, encounter_key string, npi string, payer string, allowed_amount decimal(14,2), "
    "updated_at timestamp"
)


def stay(key, patient, npi, admit, nights, dx="I50.9", etype="inpatient", complication=0, system="hospital_a"):
    discharge = admit + timedelta(days=nights)
    filed = datetime(discharge.year, discharge.month, discharge.day) + timedelta(days=1, hours=8)
    return (key, system, patient, npi, etype, dx, admit, discharge, complication, filed)


ENCOUNTERS = [
    # A: readmitted 10 days after e1 at another hospital system (the token links them) -> e1 = 1.
    stay("e1", "A", "1", date(2024, 6, 5), 5),
    stay("e1r", "A", "2", date(2024, 6, 20), 2, system="hospital_b"),  # index itself, no follow-on -> 0
    # B: the later stay is planned chemotherapy: not a readmission, not an index.
    stay("e2", "B", "1", date(2024, 5, 1), 4),
    stay("e2p", "B", "1", date(2024, 5, 20), 1, dx="Z51.11"),
    # C: e3 transfers to npi 3 on its discharge day: e3t is the index; back 36 days later -> 0.
    stay("e3", "C", "2", date(2024, 3, 5), 5),
    stay("e3t", "C", "3", date(2024, 3, 10), 5),
    stay("e3l", "C", "2", date(2024, 4, 20), 1),  # index, -> 0
    # D: discharged 2024-12-01, after the last index date: follow-up incomplete, no index.
    stay("e4", "D", "2", date(2024, 11, 28), 3),
    # E: readmitted on day 30 exactly -> 1; outpatient visit between does not count.
    stay("e5", "E", "2", date(2024, 6, 28), 3),
    stay("e5o", "E", "2", date(2024, 7, 10), 0, dx="I10", etype="outpatient"),
    stay("e5r", "E", "1", date(2024, 7, 31), 2),  # index, -> 0
]


@pytest.fixture(scope="module")
def encounters(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(ENCOUNTERS, ENCOUNTER_SCHEMA)


def test_readmissions_come_from_encounter_sequences(spark: SparkSession, encounters: DataFrame) -> None:
    actual = readmission_cases(encounters, AS_OF).select("encounter_key", "npi", "outcome")
    expected = spark.createDataFrame(
        [("e1", "1", 1.0), ("e1r", "2", 0.0), ("e2", "1", 0.0), ("e3t", "3", 0.0), ("e3l", "2", 0.0),
         ("e5", "2", 1.0), ("e5r", "1", 0.0)],
        "encounter_key string, npi string, outcome double")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_readmission_one_day_after_the_window_does_not_count(spark: SparkSession) -> None:
    rows = [stay("i", "P", "1", date(2024, 6, 1), 2), stay("r", "P", "1", date(2024, 7, 4), 2)]  # 31 days
    cases = readmission_cases(spark.createDataFrame(rows, ENCOUNTER_SCHEMA), AS_OF)
    assert {r.encounter_key: r.outcome for r in cases.collect()} == {"i": 0.0, "r": 0.0}


def test_unknown_complication_is_no_case(spark: SparkSession) -> None:
    rows = [stay("k1", "A", "1", date(2024, 6, 1), 0, etype="outpatient", complication=1),
            stay("k0", "A", "1", date(2024, 6, 2), 0, etype="outpatient", complication=0),
            stay("kx", "A", "1", date(2024, 6, 3), 0, etype="outpatient", complication=None)]
    cases = complication_cases(spark.createDataFrame(rows, ENCOUNTER_SCHEMA), AS_OF)
    assert sorted((r.encounter_key, r.outcome) for r in cases.collect()) == [("k0", 0.0), ("k1", 1.0)]


def test_cost_is_the_allowed_amount_of_the_billing_npi_and_unknown_without_a_claim(spark: SparkSession) -> None:
    rows = [stay("c1", "A", "1", date(2024, 6, 1), 2, etype="inpatient"),
            stay("c2", "B", "1", date(2024, 6, 1), 0, etype="outpatient")]  # no claim: unknown cost
    claims = spark.createDataFrame([
        ("k1", "c1", "1", "Medicare", D("900.00"), datetime(2024, 7, 1)),
        ("k2", "c1", "9", "Medicare", D("100.00"), datetime(2024, 7, 1)),  # the anaesthetist's own bill
        ("k3", "c1", "1", "Medicare", D("50.00"), datetime(2024, 7, 2)),
    ], CLAIM_SCHEMA)
    cases = cost_cases(spark.createDataFrame(rows, ENCOUNTER_SCHEMA), claims, AS_OF)
    assert sorted((r.encounter_key, r.npi, r.outcome, r.payer_group) for r in cases.collect()) == [
        ("c1", "1", 950.0, "Medicare"), ("c1", "9", 100.0, "Medicare")]


def test_expected_uses_other_providers_only_and_falls_back_to_coarser_cells(spark: SparkSession) -> None:
    cases = spark.createDataFrame(
        [("a", "1", "X", 1.0), ("b", "1", "X", 1.0), ("c", "2", "X", 0.0), ("d", "2", "X", 0.0),
         ("e", "3", "Y", 1.0)],
        "case string, npi string, cell string, outcome double")
    actual = with_expected(cases, (("cell",), ()), min_cases=2).select("case", "expected")
    # X: npi 1 sees only npi 2's cases (0), npi 2 only npi 1's (1). Y has no other provider's
    # case, so e falls back to all other cases: (1 + 1 + 0 + 0) / 4.
    expected = spark.createDataFrame([("a", 0.0), ("b", 0.0), ("c", 1.0), ("d", 1.0), ("e", 0.5)],
                                     "case string, expected double")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_binary_ratio_and_its_sampling_variance(spark: SparkSession) -> None:
    cases = spark.createDataFrame([("1", 1.0, 0.5), ("1", 0.0, 0.5)], "npi string, outcome double, expected double")
    row = provider_ratios(cases, BINARY).collect()[0]
    # O = 1, E = 1, variance (0.25 + 0.25) / 1^2
    assert (row.cases, row.observed, row.expected, row.oe_ratio, row.sampling_variance) == (2, 1.0, 1.0, 1.0, 0.5)


def test_shrinkage_prior_is_estimated_from_the_spread_of_ratios(spark: SparkSession) -> None:
    ratios = spark.createDataFrame([("1", 1.5, 0.05, 2.0), ("2", 0.5, 0.05, 2.0), ("3", 1.0, 0.05, 2.0)],
                                   "npi string, oe_ratio double, sampling_variance double, expected double")
    # equal expected cases: tau^2 = mean(0.25, 0.25, 0) - 0.05 = 0.116667; weight = tau^2 / (tau^2 + 0.05) = 0.7
    rows = {r.npi: r for r in shrink_ratios(ratios).collect()}
    assert rows["1"].prior_variance == pytest.approx(0.116667, abs=1e-6)
    assert {k: round(r.oe_ratio_shrunk, 6) for k, r in rows.items()} == {"1": 1.35, "2": 0.65, "3": 1.0}
    noisy = shrink_ratios(ratios.withColumn("sampling_variance", F.lit(0.5)))
    # all the spread is noise: the prior floor leaves almost nothing of the raw ratio
    assert all(abs(r.oe_ratio_shrunk - 1) < 0.001 for r in noisy.collect())


def _providers(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [(n, "Cardiology", "60601", "NET-1", "E1", True, START, OPEN, True, int(n)) for n in ("1", "2", "3", "9")],
        PROVIDER_SCHEMA)


def _patients(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [(i, t, "hospital_a", "F", 1950, "606", START, OPEN, True) for i, t in enumerate("ABCDEP")], PATIENT_SCHEMA)


def _cost_rows(spark: SparkSession, encounters: DataFrame, claims: DataFrame, as_of: date) -> DataFrame:
    cases = measure_cases(encounters, claims, _patients(spark), as_of)["cost_per_case"]
    return measure("cost_per_case", cases, providers_as_of(_providers(spark), as_of), as_of)


def test_a_claim_filed_after_as_of_does_not_change_the_row(spark: SparkSession, encounters: DataFrame) -> None:
    claims = spark.createDataFrame([
        ("k1", "e1", "1", "Medicare", D("900.00"), datetime(2024, 7, 1)),
        ("k2", "e2", "1", "Medicare", D("700.00"), datetime(2024, 6, 1)),
        ("k3", "e3", "2", "Aetna", D("400.00"), datetime(2024, 4, 1)),
    ], CLAIM_SCHEMA)
    as_of = date(2024, 7, 15)
    late = spark.createDataFrame([("k9", "e5", "9", "Medicare", D("5000.00"), datetime(2024, 7, 20))], CLAIM_SCHEMA)
    before = _cost_rows(spark, encounters, claims, as_of).collect()
    after = _cost_rows(spark, encounters, claims.unionByName(late), as_of).collect()
    assert len(before) == 2
    assert sorted(after) == sorted(before)
    # the same claim on file by as_of does change it: the test can fail
    on_time = late.withColumn("updated_at", F.lit(datetime(2024, 7, 14)))
    assert len(_cost_rows(spark, encounters, claims.unionByName(on_time), as_of).collect()) == 3


def test_an_encounter_filed_after_as_of_is_not_a_case(spark: SparkSession, encounters: DataFrame) -> None:
    empty = spark.createDataFrame([], CLAIM_SCHEMA)
    # e5 (discharged 2024-07-01) is filed 2024-07-02: as of 2024-07-01 it is not known yet.
    cases = measure_cases(encounters, empty, _patients(spark), date(2024, 7, 1))["complication"]
    keys = {r.encounter_key for r in cases.collect()}
    assert "e5" not in keys and "e1r" in keys


def test_provider_outcomes_columns_are_documented(spark: SparkSession, encounters: DataFrame) -> None:
    out = provider_outcomes(encounters, spark.createDataFrame([], CLAIM_SCHEMA), _patients(spark), _providers(spark), AS_OF)
    assert out.columns == list(COLUMNS)
    readmission = {r.npi: r for r in out.where("measure = 'readmission_30d'").collect()}
    # npi 1: e1 (1), e2 (0), e5r (0) -> 3 cases, 1 event
    assert (readmission["1"].cases, readmission["1"].observed) == (3, 1.0)
    assert sorted(r.rank_in_specialty for r in readmission.values()) == [1, 2, 3]


def test_specialisation_is_the_code_done_more_than_peers_not_the_most_frequent(spark: SparkSession) -> None:
    rows = [(f"p{i}", n, code, date(2024, 6, 1)) for i, (n, code) in enumerate(
        [("1", "A")] * 3 + [("1", "B")] + [("2", "A")] * 3 + [("2", "C")])]
    procedures = spark.createDataFrame(rows, "procedure_id string, npi string, procedure_code string, procedure_date date")
    found = procedure_specialisation(procedures, _providers(spark), AS_OF, min_volume=4)
    # npi 1: A 0.75 / ((3 + 1) / (4 + 1)) = 0.9375; B 0.25 / ((0 + 1) / (4 + 1)) = 1.25 -> B
    assert sorted((r.npi, r.procedure_code, r.lift) for r in found.collect()) == [("1", "B", 1.25), ("2", "C", 1.25)]
