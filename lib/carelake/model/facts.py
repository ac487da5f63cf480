"""Partitioned facts keyed to the dimension versions valid at each event.

Every fact is partitioned by ``service_month`` ('yyyy-MM' of its event date; ``unknown`` when the
date is missing, so such rows stay visible instead of landing in a null partition) and
``npi_bucket`` = pmod(xxhash64(npi), N). Measures are numbers aggregates can sum: flags are 0/1
ints. Dimension keys (``provider_sk``, ``patient_sk``) are those of the version valid on the event
date, null when the key has no version then. Patients are identified by ``patient_token`` (the
keyed token of the processed ``patient_key``, see :func:`carelake.privacy.tokenise_patient_key`):
inputs are processed rows already tokenised.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

SERVICE_MONTH, NPI_BUCKET = "service_month", "npi_bucket"
PARTITION_COLUMNS = (SERVICE_MONTH, NPI_BUCKET)
UNKNOWN_MONTH = "unknown"


@dataclass(frozen=True)
class FactSpec:
    """A fact's business key and the column its NPI bucket (and z-order) comes from."""

    business_key: tuple[str, ...]
    npi_col: str


FACTS: dict[str, FactSpec] = {
    "fact_encounter": FactSpec(("encounter_key",), "npi"),
    "fact_procedure": FactSpec(("procedure_key",), "npi"),
    "fact_claim": FactSpec(("claim_id",), "npi"),
    "fact_referral": FactSpec(("referral_id",), "referring_npi"),
}


def npi_bucket(npi: Column, buckets: int) -> Column:
    """The NPI's bucket: pmod(xxhash64(npi), buckets), an int in [0, buckets)."""
    return F.pmod(F.xxhash64(npi), F.lit(buckets)).cast("int")


def with_partitions(facts: DataFrame, event_col: str, npi_col: str, buckets: int) -> DataFrame:
    """Facts -> the same plus ``date_key`` (yyyymmdd int of the event), ``service_month`` and
    ``npi_bucket``."""
    event = F.col(event_col)
    return facts.select(
        *facts.columns,
        F.date_format(event, "yyyyMMdd").cast("int").alias("date_key"),
        F.coalesce(F.date_format(event, "yyyy-MM"), F.lit(UNKNOWN_MONTH)).alias(SERVICE_MONTH),
        npi_bucket(F.col(npi_col), buckets).alias(NPI_BUCKET),
    )


def version_lookup(dim: DataFrame, natural_key: str, surrogate_col: str) -> DataFrame:
    """SCD2 dimension -> (``natural_key``, ``from_date``, ``to_date``, ``surrogate_col``): the days
    each version covers, ``from_date <= day < to_date``. The first version of a key has no
    ``from_date``: events recorded before the key's first change still find it."""
    first = F.row_number().over(Window.partitionBy(natural_key).orderBy("valid_from")) == 1
    return dim.select(
        natural_key,
        F.when(~first, F.to_date("valid_from")).alias("from_date"),
        F.to_date("valid_to").alias("to_date"),
        surrogate_col,
    )


def attach_version(
    facts: DataFrame, lookup: DataFrame, fact_key: str, event_col: str, surrogate_col: str, alias: str
) -> DataFrame:
    """Facts -> the same plus ``alias``: the ``surrogate_col`` of the version of ``fact_key``
    valid on ``event_col`` (a date), from a :func:`version_lookup`. Versions cover contiguous,
    non-overlapping day ranges, so at most one matches and the row count is unchanged."""
    lk = lookup.select(
        F.col(lookup.columns[0]).alias("_lk_key"), F.col("from_date").alias("_lk_from"),
        F.col("to_date").alias("_lk_to"), F.col(surrogate_col).alias(alias),
    )
    event = F.col(event_col)
    matches = (
        (F.col(fact_key) == F.col("_lk_key"))
        & (F.col("_lk_from").isNull() | (F.col("_lk_from") <= event))
        & (event < F.col("_lk_to"))
    )
    return facts.join(lk, matches, "left").drop("_lk_key", "_lk_from", "_lk_to")


def _flag(column: str) -> Column:
    return F.col(column).cast("int").alias(column)


def build_fact_encounter(
    encounters: DataFrame, procedures: DataFrame, providers: DataFrame, patients: DataFrame, buckets: int
) -> DataFrame:
    """Processed encounters, the processed procedures of those encounters, and the provider /
    patient version lookups -> ``fact_encounter``, one row per ``encounter_key``.

    Measures: ``length_of_stay_days`` (discharge - admit), ``procedure_count``,
    ``encounter_cost`` (sum of its procedures' charges; 0 without procedures),
    ``readmitted_30d`` and ``complication`` as 0/1, ``satisfaction_score``. Event date: admit.
    """
    costs = procedures.groupBy("encounter_key").agg(
        F.count(F.lit(1)).cast("int").alias("procedure_count"),
        F.sum("charge_amount").alias("encounter_cost"),
    )
    base = encounters.join(costs, "encounter_key", "left").select(
        "encounter_key", "source_system", "encounter_id", "patient_token", "npi", "department",
        "encounter_type", "diagnosis_code", "admit_date", "discharge_date",
        F.datediff("discharge_date", "admit_date").alias("length_of_stay_days"),
        F.coalesce("procedure_count", F.lit(0)).alias("procedure_count"),
        F.coalesce("encounter_cost", F.lit(0).cast("decimal(24,2)")).cast("decimal(24,2)").alias("encounter_cost"),
        _flag("readmitted_30d"), _flag("complication"), "satisfaction_score", "updated_at",
    )
    keyed = attach_version(base, providers, "npi", "admit_date", "provider_sk", "provider_sk")
    keyed = attach_version(keyed, patients, "patient_token", "admit_date", "patient_sk", "patient_sk")
    return with_partitions(keyed, "admit_date", "npi", buckets)


def build_fact_procedure(
    procedures: DataFrame, encounters: DataFrame, providers: DataFrame, patients: DataFrame, buckets: int
) -> DataFrame:
    """Processed procedures, their encounters (for the patient) and the version lookups ->
    ``fact_procedure``, one row per ``procedure_key``. Measures: ``units``, ``charge_amount``.
    Event date: procedure date."""
    patient_of = encounters.select("encounter_key", "patient_token")
    base = procedures.join(patient_of, "encounter_key", "left").select(
        "procedure_key", "source_system", "procedure_id", "encounter_key", "patient_token", "npi",
        "procedure_code", "code_system", "procedure_date", "units", "charge_amount",
    )
    keyed = attach_version(base, providers, "npi", "procedure_date", "provider_sk", "provider_sk")
    keyed = attach_version(keyed, patients, "patient_token", "procedure_date", "patient_sk", "patient_sk")
    return with_partitions(keyed, "procedure_date", "npi", buckets)


def build_fact_claim(claims: DataFrame, providers: DataFrame, patients: DataFrame, buckets: int) -> DataFrame:
    """Processed claims and the version lookups -> ``fact_claim``, one row per ``claim_id``.
    Measures: ``billed_amount``, ``allowed_amount``, ``paid_amount``, ``is_denied`` (0/1: status
    'denied', any case), ``days_to_payment`` (paid - submitted). Event date: service date."""
    base = claims.select(
        "claim_id", "patient_source_system", "encounter_key", "patient_token", "npi", "payer", "status",
        "service_date", "submitted_date", "paid_date", "billed_amount", "allowed_amount", "paid_amount",
        F.when(F.lower(F.trim("status")) == "denied", 1).otherwise(0).alias("is_denied"),
        F.datediff("paid_date", "submitted_date").alias("days_to_payment"),
        "updated_at",
    )
    keyed = attach_version(base, providers, "npi", "service_date", "provider_sk", "provider_sk")
    keyed = attach_version(keyed, patients, "patient_token", "service_date", "patient_sk", "patient_sk")
    return with_partitions(keyed, "service_date", "npi", buckets)


def build_fact_referral(referrals: DataFrame, providers: DataFrame, patients: DataFrame, buckets: int) -> DataFrame:
    """Processed referrals and the version lookups -> ``fact_referral``, one row per
    ``referral_id``, keyed to both providers (``referring_provider_sk``,
    ``referred_to_provider_sk``). Measure: ``referral_count`` (1). Event date: referral date;
    bucketed by the referring NPI."""
    base = referrals.select(
        "referral_id", "referring_npi", "referred_to_npi", "patient_source_system", "patient_token",
        "employer_id", "specialty_requested", "status", "referral_date",
        F.lit(1).alias("referral_count"), "updated_at",
    )
    keyed = attach_version(base, providers, "referring_npi", "referral_date", "provider_sk", "referring_provider_sk")
    keyed = attach_version(keyed, providers, "referred_to_npi", "referral_date", "provider_sk", "referred_to_provider_sk")
    keyed = attach_version(keyed, patients, "patient_token", "referral_date", "patient_sk", "patient_sk")
    return with_partitions(keyed, "referral_date", "referring_npi", buckets)


def touched_partitions(batch: DataFrame, existing: DataFrame, business_key: list[str]) -> DataFrame:
    """The (``service_month``, ``npi_bucket``) pairs a batch changes: where its rows go, and where
    rows with its business keys are now (a corrected event date moves a row between partitions).
    In: batch fact rows; the fact's existing rows (only key and partition columns are read)."""
    moved_from = existing.join(batch.select(*business_key), business_key, "left_semi")
    return batch.select(*PARTITION_COLUMNS).unionByName(moved_from.select(*PARTITION_COLUMNS)).distinct()


def replace_partitions(existing: DataFrame, batch: DataFrame, business_key: list[str]) -> DataFrame:
    """The new content of the partitions being replaced: the existing rows of those partitions
    whose business key is not in the batch, plus the batch (batch rows win)."""
    kept = existing.join(batch.select(*business_key), business_key, "left_anti")
    return kept.unionByName(batch.select(*existing.columns))
