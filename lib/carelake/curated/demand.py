"""Network demand against supply per service area (zip3), specialty and month, and where to
route new demand."""

from __future__ import annotations

from datetime import date

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from carelake.curated.column_sources import (
    ENCOUNTERS,
    PATIENT_SUMMARY,
    PROVIDER_FEATURES,
    PROVIDERS,
    REFERRALS,
    ColumnSources,
    union,
)
from carelake.curated.features import flag_leaked, providers_as_of
from carelake.curated.metrics import RATIO_DIGITS, in_window, ratio

CAPACITY_PERCENTILE = 0.9
# Expand when demand reaches more than 90% of the capacity proxy: little headroom is left.
EXPAND_THRESHOLD = 0.9
ROUTE_TOP = 3

COLUMNS: dict[str, str] = {
    "zip3": "Service area: patient zip3 for referrals, provider zip3 for encounters",
    "specialty": "Specialty requested (referrals) or of the treating provider (encounters)",
    "service_month": "Month (yyyy-MM) of the referral or admission",
    "encounters": "Encounters with providers of the area and specialty in the month",
    "referrals_requested": "Referrals for the specialty from patients of the area in the month",
    "referrals_leaked": "Of those, leaked: status leaked or sent outside the referring provider's network",
    "leakage_rate": "referrals_leaked / referrals_requested",
    "active_providers": "Active providers of the specialty practising in the area (on as_of)",
    "p90_encounters_per_provider": "90th percentile of monthly encounters per provider in the specialty "
    "(all areas, months with encounters)",
    "capacity": "Capacity proxy: p90_encounters_per_provider x active_providers",
    "utilisation": "encounters / capacity",
    "demand": "encounters + referrals_leaked: care given plus care lost outside the network",
    "demand_capacity_ratio": "demand / capacity",
    "expand_network": "demand_capacity_ratio > 0.9, or demand with no capacity at all",
    "route_to": "Up to 3 active in-area providers of the specialty, best composite_score first",
}


# Each column's input columns (the rules: carelake.curated.column_sources).
_LEAKED = ((REFERRALS, "status"), (PROVIDERS, "network_id"))
_CAPACITY = ((PROVIDERS, "active"),)  # active providers x a percentile of counts
SOURCES: ColumnSources = {
    "zip3": ((PROVIDERS, "zip"), (PATIENT_SUMMARY, "zip3")),
    "specialty": ((PROVIDERS, "specialty"), (REFERRALS, "specialty_requested")),
    "service_month": ((ENCOUNTERS, "admit_date"), (REFERRALS, "referral_date")),
    "referrals_leaked": _LEAKED,
    "leakage_rate": _LEAKED,
    "active_providers": _CAPACITY,
    "capacity": _CAPACITY,
    "utilisation": _CAPACITY,
    "demand": _LEAKED,
    "demand_capacity_ratio": union(_LEAKED, _CAPACITY),
    "expand_network": union(_LEAKED, _CAPACITY),
    "route_to": ((PROVIDER_FEATURES, "npi"),),
}


def network_demand_by_zip(
    encounters: DataFrame,
    referrals: DataFrame,
    providers: DataFrame,
    patient_zip3: DataFrame,
    features: DataFrame,
    as_of: date,
) -> DataFrame:
    """``fact_encounter``, ``fact_referral``, ``dim_provider``, patients' zip3 (``patient_token``,
    ``zip3``, e.g. ``patient_summary``) and ``provider_features`` -> one row per zip3 x specialty
    x month with encounters or referrals on/before ``as_of`` (:data:`COLUMNS`).

    A referral's area is its patient's zip3, else the referring provider's. Capacity proxy =
    the specialty's 90th-percentile monthly encounters per provider x the area's active
    providers; ``expand_network`` when (encounters + leaked referrals) / capacity > 0.9 or there
    is demand and no capacity. ``route_to`` ranks the area's active providers of the specialty by
    ``composite_score`` (higher first; unscored last; ties by NPI).
    """
    attributes = providers_as_of(providers, as_of)
    treated = (
        encounters.where(in_window(F.col("admit_date"), as_of, None))
        .join(attributes.select("npi", "zip3", "specialty"), "npi")
        .withColumn("service_month", F.date_format("admit_date", "yyyy-MM"))
    )
    delivered = treated.groupBy("zip3", "specialty", "service_month").agg(F.count(F.lit(1)).alias("encounters"))
    per_provider = treated.groupBy("specialty", "npi", "service_month").agg(F.count(F.lit(1)).alias("_n"))
    p90 = per_provider.groupBy("specialty").agg(
        F.percentile(F.col("_n"), CAPACITY_PERCENTILE).alias("p90_encounters_per_provider")
    )
    patient_area = patient_zip3.select("patient_token", F.col("zip3").alias("_patient_zip3"))
    sender_area = attributes.select(F.col("npi").alias("referring_npi"), F.col("zip3").alias("_sender_zip3"))
    requested = (
        flag_leaked(referrals.where(in_window(F.col("referral_date"), as_of, None)), attributes)
        .join(patient_area, "patient_token", "left")
        .join(sender_area, "referring_npi", "left")
        .groupBy(
            F.coalesce("_patient_zip3", "_sender_zip3").alias("zip3"),
            F.col("specialty_requested").alias("specialty"),
            F.date_format("referral_date", "yyyy-MM").alias("service_month"),
        )
        .agg(F.count(F.lit(1)).alias("referrals_requested"), F.count(F.when(F.col("leaked"), 1)).alias("referrals_leaked"))
    )
    active = attributes.where(F.col("active"))
    supply = active.groupBy("zip3", "specialty").agg(F.count(F.lit(1)).alias("active_providers"))
    best_first = Window.partitionBy("zip3", "specialty").orderBy(F.col("composite_score").desc_nulls_last(), "npi")
    routes = (
        features.join(active.select("npi"), "npi", "left_semi")
        .withColumn("_rank", F.row_number().over(best_first))
        .where(F.col("_rank") <= ROUTE_TOP)
        .groupBy("zip3", "specialty")
        .agg(F.array_sort(F.collect_list(F.struct("_rank", "npi"))).alias("_ranked"))
        .select("zip3", "specialty", F.col("_ranked.npi").alias("route_to"))
    )
    cells = ["zip3", "specialty", "service_month"]
    joined = (
        delivered.join(requested, cells, "full")
        .join(supply, ["zip3", "specialty"], "left")
        .join(p90, "specialty", "left")
        .join(routes, ["zip3", "specialty"], "left")
    )
    encounters_n = F.coalesce("encounters", F.lit(0))
    leaked = F.coalesce("referrals_leaked", F.lit(0))
    providers_n = F.coalesce("active_providers", F.lit(0))
    capacity = F.round(F.coalesce("p90_encounters_per_provider", F.lit(0.0)) * providers_n, RATIO_DIGITS)
    demand = encounters_n + leaked
    return joined.select(
        *cells,
        encounters_n.alias("encounters"),
        F.coalesce("referrals_requested", F.lit(0)).alias("referrals_requested"),
        leaked.alias("referrals_leaked"),
        ratio(leaked, F.col("referrals_requested")).alias("leakage_rate"),
        providers_n.alias("active_providers"),
        F.round("p90_encounters_per_provider", RATIO_DIGITS).alias("p90_encounters_per_provider"),
        capacity.alias("capacity"),
        ratio(encounters_n, capacity).alias("utilisation"),
        demand.alias("demand"),
        ratio(demand, capacity).alias("demand_capacity_ratio"),
        ((demand > capacity * EXPAND_THRESHOLD) & (demand > 0)).alias("expand_network"),
        F.coalesce("route_to", F.array().cast("array<string>")).alias("route_to"),
    )
