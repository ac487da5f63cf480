"""A tiny hand-built curated model shared by the tests/test_curated_*.py files.

Three providers (1 and 2 cardiology in NET-1, 3 dermatology in NET-2), as of 2024-06-30.
Every expected value in the tests is worked out by hand from these rows.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal as D

from pyspark.sql import DataFrame, SparkSession

AS_OF = date(2024, 6, 30)

PROVIDER_SCHEMA = (
    "npi string, specialty string, zip string, network_id string, employer_id string, active boolean, "
    "valid_from timestamp, valid_to timestamp, is_current boolean, provider_sk bigint"
)
ENCOUNTER_SCHEMA = (
    "encounter_key string, source_system string, patient_token string, npi string, department string, "
    "encounter_type string, diagnosis_code string, admit_date date, length_of_stay_days int, "
    "procedure_count int, encounter_cost decimal(24,2), readmitted_30d int, complication int, "
    "satisfaction_score int, service_month string"
)
PROCEDURE_SCHEMA = (
    "procedure_key string, encounter_key string, patient_token string, npi string, procedure_code string, "
    "procedure_date date, units int, charge_amount decimal(14,2), service_month string"
)
CLAIM_SCHEMA = (
    "claim_id string, patient_source_system string, encounter_key string, patient_token string, npi string, "
    "payer string, service_date date, billed_amount decimal(14,2), allowed_amount decimal(14,2), "
    "paid_amount decimal(14,2), is_denied int, service_month string"
)
REFERRAL_SCHEMA = (
    "referral_id string, referring_npi string, referred_to_npi string, patient_token string, employer_id string, "
    "specialty_requested string, status string, referral_date date, service_month string"
)
CRM_SCHEMA = "activity_id string, npi string, activity_date date, marketing_spend decimal(14,2), contacts int, opportunity_value decimal(14,2)"
PATIENT_SCHEMA = (
    "patient_sk bigint, patient_token string, source_system string, sex string, birth_year int, zip3 string, "
    "valid_from timestamp, valid_to timestamp, is_current boolean"
)
OPEN = datetime(9999, 12, 31)
START = datetime(2020, 1, 1)


def month(d: date) -> str:
    return d.strftime("%Y-%m")


def providers(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [
            ("1", "Cardiology", "60601", "NET-1", "E1", True, START, OPEN, True, 1),
            ("2", "Cardiology", "60602", "NET-1", "E1", True, START, OPEN, True, 2),
            ("3", "Dermatology", "44101", "NET-2", "E2", True, START, OPEN, True, 3),
        ],
        PROVIDER_SCHEMA,
    )


def encounter(key, patient, npi, etype, dx, admit, los, cost, readm, comp, sat, dept="Cardiology", system="hospital_a"):
    return (key, system, patient, npi, dept, etype, dx, admit, los, 1, D(cost), readm, comp, sat, month(admit))


ENCOUNTERS = [
    encounter("e1", "A", "1", "outpatient", "I10", date(2024, 6, 20), 0, "100.00", 0, 0, 5),
    encounter("e2", "B", "1", "inpatient", "I25.10", date(2024, 5, 1), 3, "1000.00", 1, 0, 4),
    encounter("e3", "A", "1", "outpatient", "R07.9", date(2023, 9, 1), 0, "200.00", 0, 1, 3),
    encounter("e_old", "C", "1", "outpatient", "I10", date(2023, 1, 1), 0, "999.00", 1, 1, 1),
    encounter("e4", "C", "2", "outpatient", "I10", date(2024, 6, 1), 0, "300.00", 0, 0, 2),
    encounter("e5", "D", "2", "inpatient", "I50.9", date(2024, 3, 1), 5, "2000.00", 1, 1, 1),
]
# After AS_OF: must change nothing as of AS_OF.
FUTURE_ENCOUNTER = encounter("e_future", "D", "1", "inpatient", "I10", date(2024, 7, 5), 9, "5000.00", 1, 1, 1)


def procedure(key, encounter_key, patient, npi, code, day, charge="10.00"):
    return (key, encounter_key, patient, npi, code, day, 1, D(charge), month(day))


PROCEDURES = [
    procedure("p1", "e1", "A", "1", "93000", date(2024, 6, 20), "40.00"),
    procedure("p2", "e1", "A", "1", "99214", date(2024, 6, 20), "60.00"),
    procedure("p3", "e2", "B", "1", "93306", date(2024, 5, 1), "1000.00"),
    procedure("p4", "e3", "A", "1", "93000", date(2023, 9, 1), "200.00"),
    procedure("p_old", "e_old", "C", "1", "93306", date(2022, 1, 1), "999.00"),
    procedure("p5", "e4", "C", "2", "93000", date(2024, 6, 1), "300.00"),
    procedure("p6", "e5", "D", "2", "93458", date(2024, 3, 1), "2000.00"),
]
FUTURE_PROCEDURE = procedure("p_future", "e_future", "D", "1", "93458", date(2024, 7, 5), "5000.00")


def claim(cid, patient, npi, day, billed, allowed, paid, denied, encounter_key="e1", payer="Aetna", system="hospital_a"):
    return (cid, system, encounter_key, patient, npi, payer, day, D(billed), D(allowed), D(paid), denied, month(day))


CLAIMS = [
    claim("c1", "A", "1", date(2024, 6, 20), "100.00", "80.00", "60.00", 0, "e1"),
    claim("c2", "B", "1", date(2024, 5, 1), "1000.00", "500.00", "0.00", 1, "e2", "Medicare"),
    claim("c4", "C", "2", date(2024, 6, 1), "300.00", "200.00", "150.00", 0, "e4"),
]
FUTURE_CLAIM = claim("c_future", "A", "1", date(2024, 7, 10), "999.00", "999.00", "999.00", 0, "e1")


def referral(rid, source, target, patient, status, day, employer="E1", specialty="Cardiology"):
    return (rid, source, target, patient, employer, specialty, status, day, month(day))


REFERRALS = [
    referral("r1", "1", "2", "C", "completed", date(2024, 5, 15)),
    referral("r2", "1", "3", "X", "completed", date(2024, 4, 10), specialty="Dermatology"),
    referral("r3", "1", "2", "Y", "leaked", date(2024, 2, 1)),
    referral("r4", "2", "1", "A", "scheduled", date(2024, 6, 25), employer="E9"),
]
FUTURE_REFERRAL = referral("r_future", "1", "2", "A", "leaked", date(2024, 7, 2))

CRM = [
    ("a1", "2", date(2024, 3, 1), D("100.00"), 3, D("500.00")),
    ("a2", "2", date(2024, 6, 10), D("50.00"), 2, D("0.00")),
    ("a_old", "2", date(2022, 6, 10), D("9999.00"), 99, D("9999.00")),
]
FUTURE_CRM = ("a_future", "1", date(2024, 7, 1), D("777.00"), 7, D("777.00"))


def patients(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(
        [
            (1, "A", "hospital_a", "F", 1970, "606", START, OPEN, True),
            (2, "B", "hospital_a", "M", 1950, None, START, OPEN, True),
            (3, "C", "hospital_a", "F", 1990, "441", START, OPEN, True),
            (4, "D", "hospital_a", "M", 1940, "606", START, OPEN, True),
        ],
        PATIENT_SCHEMA,
    )


def inputs(spark: SparkSession, future: bool = False) -> dict[str, DataFrame]:
    """The fact, CRM and dimension DataFrames; ``future`` adds one event after AS_OF to each."""
    extra = (lambda row: [row]) if future else (lambda row: [])
    return {
        "encounters": spark.createDataFrame(ENCOUNTERS + extra(FUTURE_ENCOUNTER), ENCOUNTER_SCHEMA),
        "procedures": spark.createDataFrame(PROCEDURES + extra(FUTURE_PROCEDURE), PROCEDURE_SCHEMA),
        "claims": spark.createDataFrame(CLAIMS + extra(FUTURE_CLAIM), CLAIM_SCHEMA),
        "referrals": spark.createDataFrame(REFERRALS + extra(FUTURE_REFERRAL), REFERRAL_SCHEMA),
        "crm": spark.createDataFrame(CRM + extra(FUTURE_CRM), CRM_SCHEMA),
        "providers": providers(spark),
    }
