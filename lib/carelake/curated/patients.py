"""The de-identified patient table: one row per patient record with utilisation, cost and risk,
and the same for the person behind it across every hospital's records.

Only dim_patient's de-identified attributes (patient token, source system, sex, Safe Harbor birth
year, zip3), the keyed enterprise patient token and aggregates reach it: no names, contact
details, MRN or dates of service. The ``person_*`` columns repeat on each record of a person:
sum the record columns (``visits``, ``total_cost``) for totals, and count distinct
``enterprise_patient_token`` for people.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from carelake.curated.column_sources import (
    ENCOUNTERS,
    PATIENTS,
    PERSONS,
    PROCEDURES,
    PROVIDERS,
    REFERRALS,
    ColumnSources,
    union,
)
from carelake.curated.features import LONG_DAYS, MONEY, providers_as_of
from carelake.curated.metrics import in_window, recorded_by, version_as_of
from carelake.curated.outcomes import readmission_cases
from carelake.curated.persons import person_scope, with_person
from carelake.model.persons import ENTERPRISE_TOKEN

# High risk: at least this many 30-day readmissions, or inpatient stays, in the 365 days to as_of.
HIGH_RISK_READMISSIONS = 2
HIGH_RISK_INPATIENT = 4

COLUMNS: dict[str, str] = {
    "patient_token": "Keyed token of the patient (HMAC-SHA256 of the processed patient key)",
    "as_of": "Date the summary is computed for: only events on/before it count",
    "source_system": "Hospital system the patient record comes from",
    "sex": "Recorded sex",
    "birth_year": "Safe Harbor birth year (patients over 89 grouped at 90)",
    "zip3": "Patient's Safe Harbor zip3; when missing, the zip3 of the provider they saw most",
    "zip3_from_provider": "True when zip3 comes from the most frequent provider",
    "procedure_codes": "Distinct procedure codes the patient received, sorted",
    "visits": "Encounters on/before as_of",
    "visits_365d": "Encounters in the 365 days to as_of",
    "inpatient_encounters_365d": "Inpatient encounters in the 365 days to as_of",
    "total_cost": "Sum of encounter costs on/before as_of",
    "readmissions": "Encounters flagged readmitted within 30 days, on/before as_of",
    "readmissions_365d": "Of those, in the 365 days to as_of",
    "referral_employer_id": "Employer id of the patient's most recent referral",
    "high_risk": "readmissions_365d >= 2 or inpatient_encounters_365d >= 4",
    ENTERPRISE_TOKEN: "Keyed token of the person's enterprise patient id (patient matching, docs/matching.md): "
                      "the same on every record of one person at any hospital",
    "person_records": "Patient records of the person (at all hospitals)",
    "person_source_systems": "Hospital systems the person has a record at",
    "person_visits": "Encounters of the person on/before as_of, at any hospital",
    "person_visits_365d": "Of those, in the 365 days to as_of",
    "person_inpatient_encounters_365d": "Inpatient encounters of the person in the 365 days to as_of, at any hospital",
    "person_total_cost": "Sum of the person's encounter costs on/before as_of, at any hospital",
    "person_readmissions_30d": "Index stays of the person (30-day readmission measure, docs/measures.md) followed "
                               "by an unplanned inpatient readmission within 30 days at any hospital",
    "person_readmissions_30d_elsewhere": "Of those, readmitted at another hospital system than the one that discharged",
}


# Each column's input columns (the rules: carelake.curated.column_sources).
_READMISSION = tuple((ENCOUNTERS, c) for c in ("admit_date", "discharge_date", "encounter_type", "diagnosis_code"))
SOURCES: ColumnSources = {
    "patient_token": ((PATIENTS, "patient_token"),),
    **{c: ((PATIENTS, c),) for c in ("source_system", "sex", "birth_year")},
    "zip3": ((PATIENTS, "zip3"), (PROVIDERS, "zip")),
    "zip3_from_provider": ((PATIENTS, "zip3"), (PROVIDERS, "zip")),
    "procedure_codes": ((PROCEDURES, "procedure_code"),),
    "inpatient_encounters_365d": ((ENCOUNTERS, "encounter_type"),),
    "total_cost": ((ENCOUNTERS, "encounter_cost"),),
    "readmissions": ((ENCOUNTERS, "readmitted_30d"),),
    "readmissions_365d": ((ENCOUNTERS, "readmitted_30d"),),
    "referral_employer_id": ((REFERRALS, "employer_id"),),
    "high_risk": ((ENCOUNTERS, "readmitted_30d"), (ENCOUNTERS, "encounter_type")),
    ENTERPRISE_TOKEN: ((PERSONS, ENTERPRISE_TOKEN), (PATIENTS, "patient_token")),
    "person_source_systems": ((PATIENTS, "source_system"),),
    "person_inpatient_encounters_365d": ((ENCOUNTERS, "encounter_type"),),
    "person_total_cost": ((ENCOUNTERS, "encounter_cost"),),
    # The readmission measure's outcome: a later unplanned inpatient admission within 30 days.
    "person_readmissions_30d": _READMISSION,
    "person_readmissions_30d_elsewhere": union(_READMISSION, ((ENCOUNTERS, "source_system"),)),
}


def patient_summary(
    encounters: DataFrame,
    procedures: DataFrame,
    referrals: DataFrame,
    patients: DataFrame,
    providers: DataFrame,
    as_of: date,
    scope: DataFrame | None = None,
    persons: DataFrame | None = None,
) -> DataFrame:
    """``fact_encounter``, ``fact_procedure``, ``fact_referral``, ``dim_patient``,
    ``dim_provider`` and ``patient_enterprise_tokens`` (None: each record its own person) -> one
    row per patient of dim_patient as of ``as_of`` (:data:`COLUMNS`).

    ``scope`` (a DataFrame with ``patient_token``), when given, limits the output to the people of
    those patients: every record of each (:func:`carelake.curated.persons.person_scope`), so the
    ``person_*`` counts are whole.
    High-risk rule: at least 2 readmissions or at least 4 inpatient encounters in the 365 days.
    """
    people = with_person(version_as_of(patients, "patient_token", as_of).select(
        "patient_token", "source_system", "sex", "birth_year", "zip3"
    ), persons)
    encounters = with_person(encounters, persons)
    if scope is not None:
        keys = scope.select("patient_token") if persons is None else person_scope(scope, persons)
        people = people.join(keys, "patient_token", "left_semi")
        encounters = encounters.join(keys, "patient_token", "left_semi")
        procedures = procedures.join(keys, "patient_token", "left_semi")
        referrals = referrals.join(keys, "patient_token", "left_semi")
    seen = encounters.where(in_window(F.col("admit_date"), as_of, None))
    recent = in_window(F.col("admit_date"), as_of, LONG_DAYS)
    visits = seen.groupBy("patient_token").agg(
        F.count(F.lit(1)).alias("visits"),
        F.count(F.when(recent, 1)).alias("visits_365d"),
        F.count(F.when(recent & (F.lower("encounter_type") == "inpatient"), 1)).alias("inpatient_encounters_365d"),
        F.sum("encounter_cost").alias("total_cost"),
        F.sum("readmitted_30d").alias("readmissions"),
        F.sum(F.when(recent, F.col("readmitted_30d"))).alias("readmissions_365d"),
    )
    codes = (
        procedures.where(in_window(F.col("procedure_date"), as_of, None))
        .groupBy("patient_token")
        .agg(F.array_sort(F.collect_set("procedure_code")).alias("procedure_codes"))
    )
    by_provider = seen.groupBy("patient_token", "npi").agg(F.count(F.lit(1)).alias("_n"))
    usual = (
        by_provider.withColumn(
            "_rank", F.row_number().over(Window.partitionBy("patient_token").orderBy(F.col("_n").desc(), "npi"))
        )
        .where(F.col("_rank") == 1)
        .join(providers_as_of(providers, as_of).select("npi", F.col("zip3").alias("_provider_zip3")), "npi")
        .select("patient_token", "_provider_zip3")
    )
    last_referral = (
        referrals.where(in_window(F.col("referral_date"), as_of, None))
        .withColumn(
            "_rank",
            F.row_number().over(
                Window.partitionBy("patient_token").orderBy(F.col("referral_date").desc(), F.col("referral_id").desc())
            ),
        )
        .where(F.col("_rank") == 1)
        .select("patient_token", F.col("employer_id").alias("referral_employer_id"))
    )
    person = people.groupBy(ENTERPRISE_TOKEN).agg(
        F.count(F.lit(1)).alias("person_records"), F.countDistinct("source_system").alias("person_source_systems"))
    person_visits = seen.groupBy(ENTERPRISE_TOKEN).agg(
        F.count(F.lit(1)).alias("person_visits"),
        F.count(F.when(recent, 1)).alias("person_visits_365d"),
        F.count(F.when(recent & (F.lower("encounter_type") == "inpatient"), 1)).alias("person_inpatient_encounters_365d"),
        F.sum("encounter_cost").alias("person_total_cost"),
    )
    # The readmission measure's own definition, over the person: one count per index stay.
    person_readmissions = readmission_cases(recorded_by(encounters, as_of), as_of).groupBy(ENTERPRISE_TOKEN).agg(
        F.sum("outcome").cast("long").alias("person_readmissions_30d"),
        F.sum("readmitted_elsewhere").cast("long").alias("person_readmissions_30d_elsewhere"),
    )
    joined = (
        people.join(visits, "patient_token", "left")
        .join(codes, "patient_token", "left")
        .join(usual, "patient_token", "left")
        .join(last_referral, "patient_token", "left")
        .join(person, ENTERPRISE_TOKEN, "left")
        .join(person_visits, ENTERPRISE_TOKEN, "left")
        .join(person_readmissions, ENTERPRISE_TOKEN, "left")
    )
    readmissions_365d = F.coalesce(F.col("readmissions_365d"), F.lit(0)).cast("long")
    inpatient = F.coalesce(F.col("inpatient_encounters_365d"), F.lit(0))
    return joined.select(
        "patient_token", F.lit(as_of).alias("as_of"), "source_system", "sex", "birth_year",
        F.coalesce("zip3", "_provider_zip3").alias("zip3"),
        (F.col("zip3").isNull() & F.col("_provider_zip3").isNotNull()).alias("zip3_from_provider"),
        F.coalesce("procedure_codes", F.array().cast("array<string>")).alias("procedure_codes"),
        F.coalesce("visits", F.lit(0)).alias("visits"),
        F.coalesce("visits_365d", F.lit(0)).alias("visits_365d"),
        inpatient.alias("inpatient_encounters_365d"),
        F.coalesce("total_cost", F.lit(0)).cast(MONEY).alias("total_cost"),
        F.coalesce("readmissions", F.lit(0)).cast("long").alias("readmissions"),
        readmissions_365d.alias("readmissions_365d"),
        "referral_employer_id",
        ((readmissions_365d >= HIGH_RISK_READMISSIONS) | (inpatient >= HIGH_RISK_INPATIENT)).alias("high_risk"),
        ENTERPRISE_TOKEN,
        F.col("person_records").cast("long").alias("person_records"),
        F.col("person_source_systems").cast("long").alias("person_source_systems"),
        *[F.coalesce(c, F.lit(0)).cast("long").alias(c) for c in (
            "person_visits", "person_visits_365d", "person_inpatient_encounters_365d")],
        F.coalesce("person_total_cost", F.lit(0)).cast(MONEY).alias("person_total_cost"),
        *[F.coalesce(c, F.lit(0)).cast("long").alias(c) for c in (
            "person_readmissions_30d", "person_readmissions_30d_elsewhere")],
    )
