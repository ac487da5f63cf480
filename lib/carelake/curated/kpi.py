"""KPI marts: small tables at the grain a BI tool charts (month, provider x month, hospital x
department x month, ...). Months are the facts' ``service_month`` ('yyyy-MM', or ``unknown``
for events without a date). Missing group labels read ``unknown`` so every row has a full key."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from carelake.curated.column_sources import (
    CLAIMS,
    ENCOUNTERS,
    KPI_FINANCE,
    KPI_PATIENT,
    PROCEDURES,
    ColumnSources,
)
from carelake.curated.features import MONEY
from carelake.curated.metrics import RATIO_DIGITS, ratio

UNKNOWN = "unknown"

COLUMNS: dict[str, dict[str, str]] = {
    "kpi_patient": {
        "service_month": "Month of admission (yyyy-MM)",
        "patients": "Distinct patients with an encounter",
        "visits": "Encounters",
        "readmissions": "Encounters flagged readmitted within 30 days",
        "readmission_rate": "readmissions / visits",
        "avg_satisfaction": "Mean satisfaction score (1-5)",
    },
    "kpi_provider": {
        "npi": "National Provider Identifier",
        "service_month": "Month of admission / service (yyyy-MM)",
        "encounters": "Encounters with the provider",
        "patients": "Distinct patients seen",
        "total_cost": "Sum of encounter costs",
        "readmission_rate": "Readmitted encounters / encounters",
        "complication_rate": "Encounters with a complication / encounters",
        "avg_satisfaction": "Mean satisfaction score (1-5)",
        "billed": "Billed amount of the provider's claims with service in the month",
        "paid": "Paid amount of those claims",
    },
    "kpi_finance": {
        "service_month": "Month of service (yyyy-MM)",
        "hospital": "Hospital system (source system of the encounter, else of the patient)",
        "department": "Department of the claim's encounter",
        "payer": "Payer",
        "claims": "Claims",
        "billed": "Billed amount",
        "allowed": "Allowed amount",
        "paid": "Paid amount",
        "denied_claims": "Denied claims",
        "denial_rate": "denied_claims / claims",
        "collection_rate": "paid / allowed",
    },
    "kpi_hospital": {
        "hospital": "Hospital system (source system of the encounter)",
        "department": "Department",
        "service_month": "Month of admission (yyyy-MM)",
        "encounters": "Encounters",
        "inpatient_encounters": "Inpatient encounters",
        "patient_days": "Sum of lengths of stay (days)",
        "avg_daily_census": "Beds proxy: patient_days / days in the month",
        "procedures": "Procedures performed in those encounters",
        "distinct_procedure_codes": "Distinct procedure codes (services offered)",
    },
    "kpi_executive": {
        "service_month": "Month (yyyy-MM)",
        "patients": "Distinct patients with an encounter",
        "visits": "Encounters",
        "readmission_rate": "Readmitted encounters / encounters",
        "billed": "Billed amount of claims with service in the month",
        "paid": "Paid amount of those claims",
        "visits_mom_growth": "visits / visits of the previous calendar month - 1",
        "patients_mom_growth": "patients / patients of the previous calendar month - 1",
        "paid_mom_growth": "paid / paid of the previous calendar month - 1",
    },
}


# Each table's columns -> their input columns (the rules: carelake.curated.column_sources).
SOURCES: dict[str, ColumnSources] = {
    "kpi_patient": {
        "service_month": ((ENCOUNTERS, "service_month"),),
        "patients": ((ENCOUNTERS, "patient_token"),),
        "readmissions": ((ENCOUNTERS, "readmitted_30d"),),
        "readmission_rate": ((ENCOUNTERS, "readmitted_30d"),),
        "avg_satisfaction": ((ENCOUNTERS, "satisfaction_score"),),
    },
    "kpi_provider": {
        "npi": ((ENCOUNTERS, "npi"), (CLAIMS, "npi")),
        "service_month": ((ENCOUNTERS, "service_month"), (CLAIMS, "service_month")),
        "patients": ((ENCOUNTERS, "patient_token"),),
        "total_cost": ((ENCOUNTERS, "encounter_cost"),),
        "readmission_rate": ((ENCOUNTERS, "readmitted_30d"),),
        "complication_rate": ((ENCOUNTERS, "complication"),),
        "avg_satisfaction": ((ENCOUNTERS, "satisfaction_score"),),
        "billed": ((CLAIMS, "billed_amount"),),
        "paid": ((CLAIMS, "paid_amount"),),
    },
    "kpi_finance": {
        "service_month": ((CLAIMS, "service_month"),),
        "hospital": ((ENCOUNTERS, "source_system"), (CLAIMS, "patient_source_system")),
        "department": ((ENCOUNTERS, "department"),),
        "payer": ((CLAIMS, "payer"),),
        "billed": ((CLAIMS, "billed_amount"),),
        "allowed": ((CLAIMS, "allowed_amount"),),
        "paid": ((CLAIMS, "paid_amount"),),
        "denied_claims": ((CLAIMS, "is_denied"),),
        "denial_rate": ((CLAIMS, "is_denied"),),
        "collection_rate": ((CLAIMS, "paid_amount"), (CLAIMS, "allowed_amount")),
    },
    "kpi_hospital": {
        "hospital": ((ENCOUNTERS, "source_system"),),
        "department": ((ENCOUNTERS, "department"),),
        "service_month": ((ENCOUNTERS, "service_month"),),
        "inpatient_encounters": ((ENCOUNTERS, "encounter_type"),),
        "patient_days": ((ENCOUNTERS, "length_of_stay_days"),),
        "avg_daily_census": ((ENCOUNTERS, "length_of_stay_days"), (ENCOUNTERS, "service_month")),
        "distinct_procedure_codes": ((PROCEDURES, "procedure_code"),),
    },
    "kpi_executive": {
        "service_month": ((KPI_PATIENT, "service_month"), (KPI_FINANCE, "service_month")),
        **{c: ((KPI_PATIENT, c),) for c in ("patients", "visits", "readmission_rate")},
        **{c: ((KPI_FINANCE, c),) for c in ("billed", "paid")},
        "visits_mom_growth": ((KPI_PATIENT, "visits"),),
        "patients_mom_growth": ((KPI_PATIENT, "patients"),),
        "paid_mom_growth": ((KPI_FINANCE, "paid"),),
    },
}


def _label(column: str) -> Column:
    return F.coalesce(F.col(column), F.lit(UNKNOWN))


def kpi_patient(encounters: DataFrame) -> DataFrame:
    """``fact_encounter`` -> one row per month: patients, visits, readmissions and rate, mean
    satisfaction."""
    return encounters.groupBy("service_month").agg(
        F.countDistinct("patient_token").alias("patients"),
        F.count(F.lit(1)).alias("visits"),
        F.sum("readmitted_30d").cast("long").alias("readmissions"),
        F.round(F.avg("satisfaction_score"), RATIO_DIGITS).alias("avg_satisfaction"),
    ).select(
        "service_month", "patients", "visits", "readmissions",
        ratio(F.col("readmissions"), F.col("visits")).alias("readmission_rate"), "avg_satisfaction",
    )


def kpi_provider(encounters: DataFrame, claims: DataFrame) -> DataFrame:
    """``fact_encounter`` and ``fact_claim`` -> one row per NPI x month: encounters, patients,
    cost, outcome rates, satisfaction, billed and paid."""
    care = encounters.groupBy("npi", "service_month").agg(
        F.count(F.lit(1)).alias("encounters"),
        F.countDistinct("patient_token").alias("patients"),
        F.sum("encounter_cost").alias("_cost"),
        F.sum("readmitted_30d").alias("_readmitted"),
        F.sum("complication").alias("_complication"),
        F.round(F.avg("satisfaction_score"), RATIO_DIGITS).alias("avg_satisfaction"),
    )
    money = claims.groupBy("npi", "service_month").agg(
        F.sum("billed_amount").alias("_billed"), F.sum("paid_amount").alias("_paid")
    )
    return care.join(money, ["npi", "service_month"], "full").select(
        "npi", "service_month",
        F.coalesce("encounters", F.lit(0)).alias("encounters"),
        F.coalesce("patients", F.lit(0)).alias("patients"),
        F.coalesce("_cost", F.lit(0)).cast(MONEY).alias("total_cost"),
        ratio(F.col("_readmitted"), F.col("encounters")).alias("readmission_rate"),
        ratio(F.col("_complication"), F.col("encounters")).alias("complication_rate"),
        "avg_satisfaction",
        F.coalesce("_billed", F.lit(0)).cast(MONEY).alias("billed"),
        F.coalesce("_paid", F.lit(0)).cast(MONEY).alias("paid"),
    )


def kpi_finance(claims: DataFrame, encounters: DataFrame) -> DataFrame:
    """``fact_claim`` and ``fact_encounter`` (for the department and hospital of the claim's
    encounter) -> one row per month x hospital x department x payer: claims, billed, allowed,
    paid, denials and rates."""
    where = encounters.select(
        "encounter_key", F.col("source_system").alias("_hospital"), F.col("department").alias("department")
    )
    return (
        claims.join(where, "encounter_key", "left")
        .withColumn("hospital", F.coalesce("_hospital", "patient_source_system", F.lit(UNKNOWN)))
        .groupBy("service_month", "hospital", _label("department").alias("department"), _label("payer").alias("payer"))
        .agg(
            F.count(F.lit(1)).alias("claims"),
            F.sum("billed_amount").cast(MONEY).alias("billed"),
            F.sum("allowed_amount").cast(MONEY).alias("allowed"),
            F.sum("paid_amount").cast(MONEY).alias("paid"),
            F.sum("is_denied").cast("long").alias("denied_claims"),
        )
        .withColumn("denial_rate", ratio(F.col("denied_claims"), F.col("claims")))
        .withColumn("collection_rate", ratio(F.col("paid"), F.col("allowed")))
    )


def kpi_hospital(encounters: DataFrame, procedures: DataFrame) -> DataFrame:
    """``fact_encounter`` and ``fact_procedure`` -> one row per hospital x department x month:
    encounters, inpatient encounters, patient days, average daily census (beds proxy = patient
    days / days in the month) and the procedures of those encounters."""
    keyed = encounters.select(
        "encounter_key", _label("source_system").alias("hospital"), _label("department").alias("department"),
        "service_month", "encounter_type", "length_of_stay_days",
    )
    care = keyed.groupBy("hospital", "department", "service_month").agg(
        F.count(F.lit(1)).alias("encounters"),
        F.count(F.when(F.lower("encounter_type") == "inpatient", 1)).alias("inpatient_encounters"),
        F.coalesce(F.sum("length_of_stay_days"), F.lit(0)).cast("long").alias("patient_days"),
    )
    services = (
        procedures.select("encounter_key", "procedure_code")
        .join(keyed.select("encounter_key", "hospital", "department", "service_month"), "encounter_key")
        .groupBy("hospital", "department", "service_month")
        .agg(F.count(F.lit(1)).alias("procedures"), F.countDistinct("procedure_code").alias("distinct_procedure_codes"))
    )
    days = F.dayofmonth(F.last_day(F.to_date(F.concat(F.col("service_month"), F.lit("-01")))))
    cells = ["hospital", "department", "service_month"]
    return care.join(services, cells, "left").select(
        *cells, "encounters", "inpatient_encounters", "patient_days",
        F.round(F.col("patient_days") / days, RATIO_DIGITS).alias("avg_daily_census"),
        F.coalesce("procedures", F.lit(0)).alias("procedures"),
        F.coalesce("distinct_procedure_codes", F.lit(0)).alias("distinct_procedure_codes"),
    )


def kpi_executive(patient: DataFrame, finance: DataFrame) -> DataFrame:
    """``kpi_patient`` and ``kpi_finance`` -> one row per month: patients, visits, readmission
    rate, billed, paid, and growth against the previous calendar month (null without one)."""
    money = finance.groupBy("service_month").agg(
        F.sum("billed").cast(MONEY).alias("billed"), F.sum("paid").cast(MONEY).alias("paid")
    )
    months = patient.select("service_month", "patients", "visits", "readmission_rate").join(
        money, "service_month", "full"
    )
    previous = months.select(
        F.date_format(F.add_months(F.to_date(F.concat("service_month", F.lit("-01"))), 1), "yyyy-MM").alias("service_month"),
        F.col("visits").alias("_visits"), F.col("patients").alias("_patients"), F.col("paid").alias("_paid"),
    )
    return months.join(previous, "service_month", "left").select(
        "service_month",
        F.coalesce("patients", F.lit(0)).alias("patients"),
        F.coalesce("visits", F.lit(0)).alias("visits"),
        "readmission_rate",
        F.coalesce("billed", F.lit(0)).cast(MONEY).alias("billed"),
        F.coalesce("paid", F.lit(0)).cast(MONEY).alias("paid"),
        F.round(ratio(F.col("visits"), F.col("_visits")) - 1, RATIO_DIGITS).alias("visits_mom_growth"),
        F.round(ratio(F.col("patients"), F.col("_patients")) - 1, RATIO_DIGITS).alias("patients_mom_growth"),
        F.round(ratio(F.col("paid"), F.col("_paid")) - 1, RATIO_DIGITS).alias("paid_mom_growth"),
    )
