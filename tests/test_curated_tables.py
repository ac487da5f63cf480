"""provider_procedure_stats, patient_summary and network_demand_by_zip on the tiny model of
tests/test_curated_data.py; expected rows worked out by hand."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D

from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carelake.curated.demand import network_demand_by_zip
from carelake.curated.patients import patient_summary
from carelake.curated.procedures import provider_procedure_stats
from tests.test_curated_data import AS_OF, ENCOUNTER_SCHEMA, ENCOUNTERS, encounter, inputs, patients

STATS_SCHEMA = (
    "npi string, procedure_code string, specialty string, volume long, units long, encounters long, "
    "mean_cost decimal(18,2), cost_index double, readmission_rate double, complication_rate double, "
    "procedure_score double, specialty_rank int"
)


def test_procedure_stats_volume_cost_outcomes_and_rank(spark: SparkSession) -> None:
    # Cardiology 93000 charges 40, 200 (npi 1) and 300 (npi 2): code mean 180, npi 1 mean 120 -> index
    # 0.6667, score 0.5 * (1.5 - 0.6667) + 0.25 * 1 + 0.25 * (1 - 0.5: e3 had a complication) = 0.7917;
    # npi 2: index 1.6667 -> cost part 0, score 0.5. 93306 of 2022 is outside the 365 days.
    data = inputs(spark)
    actual = provider_procedure_stats(data["procedures"], data["encounters"], data["providers"], AS_OF, min_volume=1)
    expected = spark.createDataFrame(
        [
            ("1", "93000", "Cardiology", 2, 2, 2, D("120.00"), 0.6667, 0.0, 0.5, 0.7917, 1),
            ("2", "93000", "Cardiology", 1, 1, 1, D("300.00"), 1.6667, 0.0, 0.0, 0.5, 2),
            ("1", "99214", "Cardiology", 1, 1, 1, D("60.00"), 1.0, 0.0, 0.0, 0.75, 1),
            ("1", "93306", "Cardiology", 1, 1, 1, D("1000.00"), 1.0, 1.0, 0.0, 0.5, 1),
            ("2", "93458", "Cardiology", 1, 1, 1, D("2000.00"), 1.0, 1.0, 1.0, 0.25, 1),
        ],
        STATS_SCHEMA,
    )
    columns = [c.split()[0] for c in STATS_SCHEMA.split(", ")]
    assert_df_equality(actual.select(*columns), expected, ignore_row_order=True, ignore_nullable=True)
    ranked = provider_procedure_stats(data["procedures"], data["encounters"], data["providers"], AS_OF, min_volume=2)
    assert {(r.npi, r.procedure_code) for r in ranked.where("specialty_rank IS NOT NULL").collect()} == {("1", "93000")}


SUMMARY_SCHEMA = (
    "patient_token string, source_system string, sex string, birth_year int, zip3 string, zip3_from_provider boolean, "
    "procedure_codes array<string>, visits long, visits_365d long, inpatient_encounters_365d long, "
    "total_cost decimal(18,2), readmissions long, readmissions_365d long, referral_employer_id string, "
    "high_risk boolean"
)


def as_facts(encounters: DataFrame) -> DataFrame:
    """The hand-made encounters with the discharge date and record time of the real facts (the
    person readmission counts need them)."""
    discharge = F.date_add("admit_date", F.col("length_of_stay_days"))
    return encounters.withColumn("discharge_date", discharge).withColumn("updated_at", F.date_add(discharge, 1).cast("timestamp"))


def test_patient_summary(spark: SparkSession) -> None:
    # B has no zip3: its only provider is npi 1 (606). C's e_old readmission (2023-01) is outside the
    # 365 days but inside the totals. A's latest referral is r4 (employer E9).
    data = inputs(spark)
    actual = patient_summary(
        as_facts(data["encounters"]), data["procedures"], data["referrals"], patients(spark), data["providers"], AS_OF
    )
    expected = spark.createDataFrame(
        [
            ("A", "hospital_a", "F", 1970, "606", False, ["93000", "99214"], 2, 2, 0, D("300.00"), 0, 0, "E9", False),
            ("B", "hospital_a", "M", 1950, "606", True, ["93306"], 1, 1, 1, D("1000.00"), 1, 1, None, False),
            ("C", "hospital_a", "F", 1990, "441", False, ["93000", "93306"], 2, 1, 0, D("1299.00"), 1, 0, "E1", False),
            ("D", "hospital_a", "M", 1940, "606", False, ["93458"], 1, 1, 1, D("2000.00"), 1, 1, None, False),
        ],
        SUMMARY_SCHEMA,
    )
    columns = [c.split()[0] for c in SUMMARY_SCHEMA.split(", ")]
    assert_df_equality(actual.select(*columns), expected, ignore_row_order=True, ignore_nullable=True)
    assert {"first_name", "ssn", "birth_date", "mrn", "admit_date"}.isdisjoint(actual.columns)


def test_patient_high_risk_rule(spark: SparkSession) -> None:
    # D: a second readmission in the 365 days -> high risk. B (e2 readmitted once): 3 more inpatient
    # stays = 4 -> high risk.
    # C: one more readmission in the 365 days; e_old's (2023-01) is older -> 1, not high risk.
    extra = [
        encounter("x1", "D", "2", "inpatient", "I10", date(2024, 4, 1), 2, "10.00", 1, 0, 3),
        *[encounter(f"x{i}", "B", "1", "inpatient", "I10", date(2024, 6, i), 1, "10.00", 0, 0, 3) for i in (2, 3, 4)],
        encounter("x9", "C", "2", "outpatient", "I10", date(2024, 2, 1), 0, "10.00", 1, 0, 3),
    ]
    data = inputs(spark)
    actual = patient_summary(
        as_facts(spark.createDataFrame(ENCOUNTERS + extra, ENCOUNTER_SCHEMA)), data["procedures"], data["referrals"],
        patients(spark), data["providers"], AS_OF,
    ).select("patient_token", "readmissions_365d", "inpatient_encounters_365d", "high_risk")
    expected = spark.createDataFrame(
        [("A", 0, 0, False), ("B", 1, 4, True), ("C", 1, 0, False), ("D", 2, 2, True)],
        "patient_token string, readmissions_365d long, inpatient_encounters_365d long, high_risk boolean",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


DEMAND_SCHEMA = (
    "zip3 string, specialty string, service_month string, encounters long, referrals_requested long, "
    "referrals_leaked long, leakage_rate double, active_providers long, p90_encounters_per_provider double, "
    "capacity double, utilisation double, demand long, demand_capacity_ratio double, expand_network boolean, "
    "route_to array<string>"
)


def test_network_demand_by_zip(spark: SparkSession) -> None:
    # Cardiology in 606 has 2 active providers, each with at most 1 encounter a month -> p90 1,
    # capacity 2. June: 2 encounters -> demand/capacity 1.0 > 0.9 -> expand. Referrals from X and Y
    # (no zip3 known) fall in the referring provider's area 606; r2 and r3 leaked. Dermatology is
    # requested in 606 where no dermatologist practises -> expand with no capacity.
    data = inputs(spark)
    zip3 = spark.createDataFrame([("A", "606"), ("B", "606"), ("C", "441"), ("D", "606")], "patient_token string, zip3 string")
    features = spark.createDataFrame(
        [("1", "606", "Cardiology", 0.3), ("2", "606", "Cardiology", 0.8), ("3", "441", "Dermatology", None)],
        "npi string, zip3 string, specialty string, composite_score double",
    )
    actual = network_demand_by_zip(data["encounters"], data["referrals"], data["providers"], zip3, features, AS_OF)
    quiet = (0, 0, None, 2, 1.0, 2.0, 0.5, 1, 0.5, False, ["2", "1"])
    expected = spark.createDataFrame(
        [
            ("606", "Cardiology", "2024-06", 2, 1, 0, 0.0, 2, 1.0, 2.0, 1.0, 2, 1.0, True, ["2", "1"]),
            ("606", "Cardiology", "2024-05", 1, *quiet),
            ("606", "Cardiology", "2024-03", 1, *quiet),
            ("606", "Cardiology", "2023-09", 1, *quiet),
            ("606", "Cardiology", "2023-01", 1, *quiet),
            ("606", "Cardiology", "2024-02", 0, 1, 1, 1.0, 2, 1.0, 2.0, 0.0, 1, 0.5, False, ["2", "1"]),
            ("441", "Cardiology", "2024-05", 0, 1, 0, 0.0, 0, 1.0, 0.0, None, 0, None, False, []),
            ("606", "Dermatology", "2024-04", 0, 1, 1, 1.0, 0, None, 0.0, None, 1, None, True, []),
        ],
        DEMAND_SCHEMA,
    )
    columns = [c.split()[0] for c in DEMAND_SCHEMA.split(", ")]
    assert_df_equality(actual.select(*columns), expected, ignore_row_order=True, ignore_nullable=True)
