"""Point-in-time training sets over the provider feature store.

Features come from :func:`carelake.curated.features.provider_features` as of each date (events
on/before it only); labels come only from the FOLLOWING window ``(as_of, as_of + days]``, so a
model never learns from the period it is asked to predict.
"""

from __future__ import annotations

from datetime import date
from functools import reduce

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from carelake.curated.features import COLUMNS as FEATURE_COLUMNS
from carelake.curated.features import provider_features
from carelake.curated.metrics import diagnosis_chapter, in_window, ratio
from carelake.curated.outcomes import FOLLOW_UP_DAYS  # the readmission measure's 30 days

# Identifiers and free-form categories: not model inputs (specialty is, as a category).
NOT_NUMERIC = frozenset({"npi", "as_of", "specialty", "zip", "zip3", "network_id", "employer_id", "top_procedure_code"})
NUMERIC_FEATURES: tuple[str, ...] = tuple(c for c in FEATURE_COLUMNS if c not in NOT_NUMERIC)
UNKNOWN_CATEGORY = "?"

LABEL_COLUMNS: dict[str, str] = {
    "label_encounters": "Encounters admitted in (as_of, as_of + window]",
    "label_cost_per_case": "Mean encounter cost of those encounters; null without any",
    "label_poor_outcomes": "Those encounters readmitted within 30 days or with a complication",
    "label_poor_outcome_rate": "label_poor_outcomes / encounters with a known outcome",
    "label_opportunity_value": "CRM opportunity value dated in (as_of, as_of + window]; 0 without activity",
}


def in_label_window(event: Column, as_of: date, days: int) -> Column:
    """True for events strictly after ``as_of`` and on/before ``as_of + days``."""
    return (event > F.lit(as_of)) & (event <= F.date_add(F.lit(as_of), days))


def followed_up(follow_up_end: date | None) -> Column:
    """Over encounter rows: True when the stay's 30-day readmission follow-up (discharge =
    admit + length of stay, 0 when unknown) ended by ``follow_up_end``; always True without one."""
    if follow_up_end is None:
        return F.lit(True)
    discharge = F.date_add(F.col("admit_date"), F.coalesce(F.col("length_of_stay_days"), F.lit(0)).cast("int"))
    return F.date_add(discharge, FOLLOW_UP_DAYS) <= F.lit(follow_up_end)


def poor_outcome(follow_up_end: date | None = None) -> Column:
    """Over encounter rows: 1 when readmitted within 30 days or with a complication, 0 when
    neither, null when both flags are unknown (greatest() skips a single null flag) or when the
    follow-up had not ended by ``follow_up_end`` (a readmission could still come)."""
    return F.when(followed_up(follow_up_end), F.greatest(F.col("readmitted_30d"), F.col("complication")).cast("int"))


def labels(encounters: DataFrame, crm: DataFrame, as_of: date, days: int, follow_up_end: date | None = None) -> DataFrame:
    """``fact_encounter`` and processed ``crm_activity`` -> per NPI the :data:`LABEL_COLUMNS`
    of the window ``(as_of, as_of + days]`` (NPIs with no event in it are absent); outcomes of
    stays whose follow-up had not ended by ``follow_up_end`` are unknown."""
    outcome = poor_outcome(follow_up_end)
    cases = (
        encounters.where(in_label_window(F.col("admit_date"), as_of, days))
        .groupBy("npi")
        .agg(
            F.count(F.lit(1)).alias("label_encounters"),
            F.round(F.avg(F.col("encounter_cost").cast("double")), 2).alias("label_cost_per_case"),
            F.sum(outcome).alias("label_poor_outcomes"),
            F.count(outcome).alias("_known"),
        )
        .withColumn("label_poor_outcome_rate", ratio(F.col("label_poor_outcomes"), F.col("_known")))
        .drop("_known")
    )
    opportunity = (
        crm.where(in_label_window(F.col("activity_date"), as_of, days))
        .groupBy("npi")
        .agg(F.sum(F.col("opportunity_value").cast("double")).alias("label_opportunity_value"))
    )
    return cases.join(opportunity, "npi", "full")


def training_set(
    encounters: DataFrame,
    procedures: DataFrame,
    claims: DataFrame,
    referrals: DataFrame,
    crm: DataFrame,
    providers: DataFrame,
    as_of_dates: list[date],
    label_window_days: int,
    follow_up_end: date | None = None,
) -> DataFrame:
    """The inputs of :func:`provider_features` -> one row per NPI x ``as_of`` in ``as_of_dates``:
    the provider features as of that date (exactly the feature store's row for that date), then
    the :data:`LABEL_COLUMNS` of the ``label_window_days`` after it, outcomes only of stays
    followed up by ``follow_up_end``. Encounter counts and opportunity value are 0 without
    events; cost and rates stay null."""
    if not as_of_dates:
        raise ValueError("training_set: as_of_dates is empty, expected at least one date")
    if label_window_days <= 0:
        raise ValueError(f"training_set: label_window_days must be positive, found {label_window_days}")
    per_date = []
    for as_of in sorted(set(as_of_dates)):
        features = provider_features(encounters, procedures, claims, referrals, crm, providers, as_of)
        joined = features.join(labels(encounters, crm, as_of, label_window_days, follow_up_end), "npi", "left")
        per_date.append(
            joined.withColumn("label_encounters", F.coalesce("label_encounters", F.lit(0)).cast("long"))
            .withColumn("label_poor_outcomes", F.coalesce("label_poor_outcomes", F.lit(0)).cast("long"))
            .withColumn("label_opportunity_value", F.coalesce("label_opportunity_value", F.lit(0.0)))
        )
    return reduce(DataFrame.unionByName, per_date)


def case_mix(encounters: DataFrame) -> DataFrame:
    """Encounters -> the same with the case-mix categories ``encounter_type`` (``?`` when
    missing) and ``diagnosis_chapter`` (ICD-10 chapter letter)."""
    return encounters.withColumn("encounter_type", F.coalesce(F.col("encounter_type"), F.lit(UNKNOWN_CATEGORY))).withColumn(
        "diagnosis_chapter", diagnosis_chapter(F.col("diagnosis_code"))
    )


def outcome_training_set(
    encounters: DataFrame, training: DataFrame, label_window_days: int, follow_up_end: date | None = None
) -> DataFrame:
    """Encounters and a :func:`training_set` -> one row per NPI x as_of x case-mix cell
    (encounter_type, diagnosis_chapter) x ``poor_outcome`` (0/1) of the encounters admitted in
    the label window, with ``cases`` (their count, the row's weight) and the provider's features
    as of that date. Encounters of unknown outcome (also: not followed up by ``follow_up_end``)
    are left out."""
    dates = training.select("npi", F.col("as_of").alias("_as_of")).distinct()
    window_end = F.date_add(F.col("_as_of"), label_window_days)
    cells = (
        case_mix(encounters)
        .join(dates, "npi")
        .where((F.col("admit_date") > F.col("_as_of")) & (F.col("admit_date") <= window_end))
        .withColumn("poor_outcome", poor_outcome(follow_up_end))
        .where(F.col("poor_outcome").isNotNull())
        .groupBy("npi", F.col("_as_of").alias("as_of"), "encounter_type", "diagnosis_chapter", "poor_outcome")
        .agg(F.count(F.lit(1)).alias("cases"))
    )
    features = training.select("npi", "as_of", "specialty", *NUMERIC_FEATURES)
    return cells.join(features, ["npi", "as_of"])


def recent_case_mix(encounters: DataFrame, as_of: date, days: int = 365) -> DataFrame:
    """Per NPI and case-mix cell, the ``cases`` admitted in the ``days`` ending on ``as_of``: the
    mix a provider's expected poor-outcome probability is averaged over when scoring."""
    return (
        case_mix(encounters.where(in_window(F.col("admit_date"), as_of, days)))
        .groupBy("npi", "encounter_type", "diagnosis_chapter")
        .agg(F.count(F.lit(1)).alias("cases"))
    )
