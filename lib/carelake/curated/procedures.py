"""Per provider and procedure code: volume, cost, outcomes and rank within the specialty."""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from carelake.curated.column_sources import ENCOUNTERS, PROCEDURES, PROVIDERS, ColumnSources
from carelake.curated.features import LONG_DAYS, MONEY, expand_to_specialties, providers_as_of
from carelake.curated.metrics import RATIO_DIGITS, in_window, index_score, ratio

MIN_VOLUME_TO_RANK = 5  # fewer procedures in the 365 days: shown, but not ranked

COLUMNS: dict[str, str] = {
    "npi": "National Provider Identifier",
    "procedure_code": "CPT / HCPCS procedure code",
    "as_of": "Date the statistics are computed for: only procedures on/before it count",
    "specialty": "Provider specialty on as_of",
    "volume": "Procedures with this code in the 365 days to as_of",
    "units": "Units billed for them",
    "encounters": "Distinct encounters in which the provider performed the code",
    "mean_cost": "Mean charge per procedure",
    "cost_index": "mean_cost / the specialty's mean charge for the code (all its providers)",
    "readmission_rate": "Share of those encounters flagged readmitted within 30 days",
    "complication_rate": "Share of those encounters flagged with a complication",
    "procedure_score": "0.5 x clamp(1.5 - cost_index, 0, 1) + 0.25 x (1 - readmission_rate) + "
    "0.25 x (1 - complication_rate); higher is better",
    "specialty_rank": "Dense rank of procedure_score (1 = best) among the specialty's providers of the code "
    "with volume >= 5; null below that volume",
}


# Each column's input columns (the rules: carelake.curated.column_sources).
_SCORE = ((PROCEDURES, "charge_amount"), (ENCOUNTERS, "readmitted_30d"), (ENCOUNTERS, "complication"))
SOURCES: ColumnSources = {
    "npi": ((PROCEDURES, "npi"),),
    "procedure_code": ((PROCEDURES, "procedure_code"),),
    "specialty": ((PROVIDERS, "specialty"),),
    "units": ((PROCEDURES, "units"),),
    "encounters": ((PROCEDURES, "encounter_key"),),
    "mean_cost": ((PROCEDURES, "charge_amount"),),
    "cost_index": ((PROCEDURES, "charge_amount"),),
    "readmission_rate": ((ENCOUNTERS, "readmitted_30d"),),
    "complication_rate": ((ENCOUNTERS, "complication"),),
    "procedure_score": _SCORE,
    "specialty_rank": _SCORE,
}


def provider_procedure_stats(
    procedures: DataFrame,
    encounters: DataFrame,
    providers: DataFrame,
    as_of: date,
    min_volume: int = MIN_VOLUME_TO_RANK,
    scope: DataFrame | None = None,
) -> DataFrame:
    """``fact_procedure``, ``fact_encounter`` and ``dim_provider`` -> one row per NPI x procedure
    code performed in the 365 days to ``as_of`` (:data:`COLUMNS`).

    Outcome rates are over the distinct encounters the code was performed in (an encounter's
    readmission counts once per code). ``specialty_rank`` is the dense rank of
    ``procedure_score`` descending within specialty x code, among providers with at least
    ``min_volume`` procedures of the code. ``scope`` (npi), when given, limits the output to the
    specialties of those NPIs (ranks stay exact: whole specialties are kept).
    """
    attributes = providers_as_of(providers, as_of).select("npi", "specialty")
    if scope is not None:
        npis = expand_to_specialties(scope, providers_as_of(providers, as_of))
        attributes = attributes.join(npis, "npi", "left_semi")
    outcomes = encounters.where(in_window(F.col("admit_date"), as_of, None)).select(
        "encounter_key", "readmitted_30d", "complication"
    )
    recent = procedures.where(in_window(F.col("procedure_date"), as_of, LONG_DAYS)).join(attributes, "npi")
    per_encounter = (
        recent.select("npi", "specialty", "procedure_code", "encounter_key")
        .distinct()
        .join(outcomes, "encounter_key", "left")
        .groupBy("npi", "procedure_code")
        .agg(
            F.count(F.lit(1)).alias("encounters"),
            F.sum("readmitted_30d").alias("_readmitted"),
            F.sum("complication").alias("_complication"),
            F.count("readmitted_30d").alias("_known"),
        )
    )
    stats = recent.groupBy("npi", "specialty", "procedure_code").agg(
        F.count(F.lit(1)).alias("volume"),
        F.sum("units").alias("units"),
        F.sum("charge_amount").alias("_charges"),
    )
    code = Window.partitionBy("specialty", "procedure_code")
    cost_index = (F.col("_charges") / F.col("volume")).cast("double") / (
        F.sum("_charges").over(code) / F.sum("volume").over(code)
    ).cast("double")
    readmission = ratio(F.col("_readmitted"), F.col("_known"))
    complication = ratio(F.col("_complication"), F.col("_known"))
    scored = stats.join(per_encounter, ["npi", "procedure_code"]).select(
        "npi", "procedure_code", F.lit(as_of).alias("as_of"), "specialty", "volume",
        F.col("units").cast("long").alias("units"), "encounters",
        (F.col("_charges") / F.col("volume")).cast(MONEY).alias("mean_cost"),
        F.round(cost_index, RATIO_DIGITS).alias("cost_index"),
        readmission.alias("readmission_rate"),
        complication.alias("complication_rate"),
        F.round(
            F.lit(0.5) * F.coalesce(index_score(cost_index), F.lit(0.5))
            + F.lit(0.25) * F.coalesce(1 - readmission, F.lit(0.5))
            + F.lit(0.25) * F.coalesce(1 - complication, F.lit(0.5)),
            RATIO_DIGITS,
        ).alias("procedure_score"),
    )
    eligible = F.col("volume") >= min_volume
    rank = F.dense_rank().over(
        Window.partitionBy("specialty", "procedure_code", eligible).orderBy(F.col("procedure_score").desc())
    )
    return scored.withColumn("specialty_rank", F.when(eligible, rank))


def procedure_specialisation(procedures: DataFrame, providers: DataFrame, as_of: date,
                             min_volume: int = MIN_VOLUME_TO_RANK) -> DataFrame:
    """``fact_procedure`` + ``dim_provider`` -> one row per NPI with at least ``min_volume``
    procedures in the 365 days to ``as_of``: ``npi``, ``specialty``, ``procedure_code`` (the code
    whose share of the provider's procedures most exceeds its share among the specialty's
    peers) and ``lift`` (that ratio; ties: lowest code).

    The most frequent code says what the specialty does (office visits); the lift says what
    this provider does more of than its peers, with its own procedures kept out of the peers."""
    attributes = providers_as_of(providers, as_of).select("npi", "specialty")
    counts = (procedures.where(in_window(F.col("procedure_date"), as_of, LONG_DAYS)).join(attributes, "npi")
              .groupBy("npi", "specialty", "procedure_code").agg(F.count(F.lit(1)).alias("_n")))
    by_npi = Window.partitionBy("npi")
    code = Window.partitionBy("specialty", "procedure_code")
    spec = Window.partitionBy("specialty")
    total = F.sum("_n").over(by_npi)
    peers_code = F.sum("_n").over(code) - F.col("_n")
    peers_all = F.sum("_n").over(spec) - total
    lift = (F.col("_n") / total) / ((peers_code + 1) / (peers_all + 1))  # +1: a code no peer uses
    ranked = counts.withColumn("_total", total).withColumn("lift", F.round(lift, RATIO_DIGITS))
    best = Window.partitionBy("npi").orderBy(F.col("lift").desc(), F.col("procedure_code"))
    return (ranked.where(F.col("_total") >= min_volume).withColumn("_r", F.row_number().over(best))
            .where(F.col("_r") == 1).select("npi", "specialty", "procedure_code", "lift"))
