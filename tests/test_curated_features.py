"""provider_features: every metric on the tiny model of tests/test_curated_data.py, worked by hand."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal as D

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carelake.curated.features import COLUMNS, provider_features, providers_as_of
from tests.test_curated_data import (
    AS_OF,
    CLAIM_SCHEMA,
    ENCOUNTER_SCHEMA,
    OPEN,
    PROVIDER_SCHEMA,
    START,
    claim,
    encounter,
    inputs,
)


@pytest.fixture(scope="module")
def features(spark: SparkSession) -> DataFrame:
    return provider_features(**inputs(spark), as_of=AS_OF).cache()


def check(spark: SparkSession, actual: DataFrame, schema: str, rows: list[tuple]) -> None:
    columns = [c.split()[0] for c in schema.split(", ")]
    expected = spark.createDataFrame(rows, schema)
    assert_df_equality(actual.select(*columns), expected, ignore_row_order=True, ignore_nullable=True)


def test_columns_are_documented_and_one_row_per_provider(features: DataFrame) -> None:
    assert features.columns == list(COLUMNS)
    assert sorted(r.npi for r in features.collect()) == ["1", "2", "3"]


def test_volumes_over_90_and_365_days(spark: SparkSession, features: DataFrame) -> None:
    # 90 days to 2024-06-30 starts after 2024-04-01; 365 days after 2023-07-01. e_old (2023-01-01)
    # and p_old (2022) fall outside both.
    check(spark, features,
          "npi string, encounters_90d long, encounters_365d long, patients_90d long, patients_365d long, "
          "procedures_90d long, procedures_365d long",
          [("1", 2, 3, 2, 2, 3, 4), ("2", 1, 2, 1, 2, 1, 2), ("3", 0, 0, 0, 0, 0, 0)])


def test_cost_per_case_and_case_mix_adjustment(spark: SparkSession, features: DataFrame) -> None:
    # Cardiology cells: outpatient|I = (100 + 300) / 2 = 200, inpatient|I = (1000 + 2000) / 2 = 1500,
    # outpatient|R = 200; specialty mean = 3600 / 5 = 720.
    # npi 1: observed 1300 / 3 = 433.33, expected (200 + 1500 + 200) / 3 = 633.33,
    #        index 1300 / 1900 = 0.6842, risk-adjusted 0.68421 * 720 = 492.63.
    # npi 2: observed 1150, expected (200 + 1500) / 2 = 850, index 1.3529, risk-adjusted 974.12.
    check(spark, features,
          "npi string, cost_per_case decimal(18,2), expected_cost_per_case decimal(18,2), cost_index double, "
          "risk_adjusted_cost_per_case double",
          [("1", D("433.33"), D("633.33"), 0.6842, 492.63), ("2", D("1150.00"), D("850.00"), 1.3529, 974.12),
           ("3", None, None, None, None)])


def test_revenue_collection_and_denials(spark: SparkSession, features: DataFrame) -> None:
    # npi 1: billed 1100, allowed 580, paid 60 -> 60/1100 = 0.0545, 60/580 = 0.1034; 1 of 2 denied.
    check(spark, features,
          "npi string, claims_365d long, billed_365d decimal(18,2), allowed_365d decimal(18,2), "
          "paid_365d decimal(18,2), paid_billed_ratio double, collection_rate double, "
          "denied_claims_365d long, denial_rate double",
          [("1", 2, D("1100.00"), D("580.00"), D("60.00"), 0.0545, 0.1034, 1, 0.5),
           ("2", 1, D("300.00"), D("200.00"), D("150.00"), 0.5, 0.75, 0, 0.0),
           ("3", 0, D("0.00"), D("0.00"), D("0.00"), None, None, 0, None)])


def test_outcome_rates_with_small_volume_corrections(spark: SparkSession, features: DataFrame) -> None:
    # Cardiology: 2 readmissions and 2 complications in 5 encounters -> prior 0.4.
    # Shrunk: npi 1 (1 + 20 * 0.4) / (3 + 20) = 0.3913; npi 2 (1 + 8) / (2 + 20) = 0.4091.
    # Wilson 95%: 1 of 3 -> [0.0615, 0.7923]; 1 of 2 -> [0.0945, 0.9055].
    check(spark, features,
          "npi string, readmissions_365d long, readmission_rate double, readmission_rate_shrunk double, "
          "readmission_rate_wilson_low double, readmission_rate_wilson_high double, complications_365d long, "
          "complication_rate double, complication_rate_shrunk double, complication_rate_wilson_low double",
          [("1", 1, 0.3333, 0.3913, 0.0615, 0.7923, 1, 0.3333, 0.3913, 0.0615),
           ("2", 1, 0.5, 0.4091, 0.0945, 0.9055, 1, 0.5, 0.4091, 0.0945),
           ("3", 0, None, None, None, None, 0, None, None, None)])


def test_satisfaction_stay_and_procedure_mix(spark: SparkSession, features: DataFrame) -> None:
    # npi 1 procedures: 93000 x2, 93306, 99214 -> top 93000 at 0.5, HHI .25 + .0625 + .0625 = .375.
    # npi 2: 93000 and 93458 tie -> the lower code; HHI .25 + .25.
    check(spark, features,
          "npi string, avg_satisfaction double, avg_length_of_stay_days double, top_procedure_code string, "
          "top_procedure_share double, procedure_hhi double",
          [("1", 4.0, 1.0, "93000", 0.5, 0.375), ("2", 1.5, 2.5, "93000", 0.5, 0.5),
           ("3", None, None, None, None, None)])


def test_referrals_leakage_and_marketing_roi(spark: SparkSession, features: DataFrame) -> None:
    # npi 1 sent r1 (in network), r2 (to NET-2: leaked), r3 (status leaked) -> 2 of 3.
    # npi 2's claim c4 for patient C follows referral r1 to npi 2 -> 150 referred-in revenue;
    # npi 1's claim c1 for A predates referral r4 -> none. CRM on npi 2: 100 + 50 spend.
    check(spark, features,
          "npi string, referrals_in_365d long, referrals_out_365d long, referrals_leaked_365d long, "
          "referral_leakage_rate double, marketing_spend_365d decimal(18,2), contacts_365d long, "
          "opportunity_value_365d decimal(18,2), referred_in_revenue_365d decimal(18,2), marketing_roi double",
          [("1", 1, 3, 2, 0.6667, D("0.00"), 0, D("0.00"), D("0.00"), None),
           ("2", 2, 1, 0, 0.0, D("150.00"), 5, D("500.00"), D("150.00"), 1.0),
           ("3", 1, 0, 0, None, D("0.00"), 0, D("0.00"), D("0.00"), None)])


def test_attributes_and_composite_score(spark: SparkSession, features: DataFrame) -> None:
    # npi 1: 0.4 * (1.5 - 0.6842) + 2 * 0.2 * (1.5 - 0.3913 / 0.4) + 0.2 * (4 - 1) / 4 = 0.685
    # npi 2: 0.4 * (1.5 - 1.3529) + 2 * 0.2 * (1.5 - 0.4091 / 0.4) + 0.2 * (1.5 - 1) / 4 = 0.2747
    check(spark, features,
          "npi string, as_of date, specialty string, zip3 string, network_id string, employer_id string, "
          "composite_score double",
          [("1", AS_OF, "Cardiology", "606", "NET-1", "E1", 0.685), ("2", AS_OF, "Cardiology", "606", "NET-1", "E1", 0.2747),
           ("3", AS_OF, "Dermatology", "441", "NET-2", "E2", None)])


def test_point_in_time_events_after_as_of_change_nothing(spark: SparkSession, features: DataFrame) -> None:
    with_future = provider_features(**inputs(spark, future=True), as_of=AS_OF)
    assert_df_equality(with_future, features, ignore_row_order=True)


def recorded(frame: DataFrame, event: str, days: int) -> DataFrame:
    """``frame`` with the record time ``updated_at`` ``days`` after its ``event`` date, at noon."""
    return frame.withColumn("updated_at", F.expr(f"to_timestamp(date_add({event}, {days})) + INTERVAL 12 HOURS"))


def test_rows_recorded_after_as_of_change_nothing(spark: SparkSession, features: DataFrame) -> None:
    # Every row recorded within days of its event, plus two that were only recorded after AS_OF
    # (2024-06-30): a claim of 06-25 adjudicated on 07-20, and a stay admitted on 06-28 whose
    # record was filed at its discharge on 07-04.
    data = inputs(spark)
    late_claim = spark.createDataFrame([claim("c_late", "C", "2", date(2024, 6, 25), "700.00", "600.00", "500.00", 0, "e4")],
                                       CLAIM_SCHEMA).withColumn("updated_at", F.lit(datetime(2024, 7, 20, 9)))
    late_stay = spark.createDataFrame([encounter("e_late", "B", "2", "inpatient", "I50.9", date(2024, 6, 28), 6, "9000.00",
                                                 0, 0, 5)], ENCOUNTER_SCHEMA).withColumn("updated_at", F.lit(datetime(2024, 7, 4, 16)))
    known = {
        **data,
        "encounters": recorded(data["encounters"], "admit_date", 1).unionByName(late_stay),
        "claims": recorded(data["claims"], "service_date", 3).unionByName(late_claim),
        "referrals": recorded(data["referrals"], "referral_date", 0),
        "crm": recorded(data["crm"], "activity_date", 1),
    }
    assert_df_equality(provider_features(**known, as_of=AS_OF), features, ignore_row_order=True)
    # The same rows without their record times count as of AS_OF: the check above can fail.
    unrecorded = {**known, "encounters": known["encounters"].drop("updated_at"), "claims": known["claims"].drop("updated_at")}
    row = provider_features(**unrecorded, as_of=AS_OF).where("npi = '2'").collect()[0]
    assert (row.claims_365d, row.encounters_365d) == (2, 3)
    # And once recorded, they count: as of 2024-07-20 both are in.
    later = provider_features(**known, as_of=date(2024, 7, 20)).where("npi = '2'").collect()[0]
    assert (later.claims_365d, later.encounters_365d) == (2, 3)


def test_earlier_as_of_sees_only_earlier_events(spark: SparkSession) -> None:
    # On 2024-04-30 npi 1 has e3 (2023-09-01) only in 365 days; e2 and e1 come later.
    early = provider_features(**inputs(spark), as_of=date(2024, 4, 30))
    row = early.where("npi = '1'").collect()[0]
    assert (row.encounters_365d, row.encounters_90d, row.cost_per_case) == (1, 0, D("200.00"))


def test_provider_attributes_are_those_in_effect_on_as_of(spark: SparkSession) -> None:
    dim = spark.createDataFrame(
        [
            ("1", "Cardiology", "60601", "NET-1", "E1", True, START, datetime(2024, 7, 1), False, 1),
            ("1", "Surgery", "98101", "NET-3", "E1", True, datetime(2024, 7, 1), OPEN, True, 2),
            ("9", "Dermatology", "30301", "NET-2", "E2", True, datetime(2024, 8, 1), OPEN, True, 3),
        ],
        PROVIDER_SCHEMA,
    )
    expected = spark.createDataFrame(
        [("1", "Cardiology", "60601", "606", "NET-1", "E1", True),
         ("9", "Dermatology", "30301", "303", "NET-2", "E2", True)],
        "npi string, specialty string, zip string, zip3 string, network_id string, employer_id string, active boolean",
    )
    assert_df_equality(providers_as_of(dim, AS_OF), expected, ignore_row_order=True, ignore_nullable=True)


def test_scope_keeps_whole_specialties(spark: SparkSession, features: DataFrame) -> None:
    scoped = provider_features(**inputs(spark), as_of=AS_OF, scope=spark.createDataFrame([("2",)], "npi string"))
    assert_df_equality(scoped, features.where("specialty = 'Cardiology'"), ignore_row_order=True)
