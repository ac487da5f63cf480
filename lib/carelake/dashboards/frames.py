"""Chart data for the dashboards: curated tables -> small frames at the grain a chart filters on.

Every frame names its filter columns the same way (``hospital``, ``service_month``,
``specialty``) so one set of page filters applies to every chart that has the column. Rates are
kept next to the weight they average over (``encounters``, ``visits``, ...) so a filtered view
can re-average them correctly. Money is ``double``: these frames are drawn, not summed into
ledgers. Nothing here reads or writes: each function is ``DataFrame -> DataFrame``.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType

UNKNOWN_MONTH = "unknown"
MIN_RANKED_ENCOUNTERS = 10  # fewer encounters in 365 days: too few to place a provider on a ranking
ROUTED_PROVIDERS = 3  # the routing table names the best three eligible providers of a cell
NOT_ROUTED = "not in referral_routing (no routing computed for this area and specialty)"
AGE_BANDS = ((0, 17, "0-17"), (18, 44, "18-44"), (45, 64, "45-64"), (65, 200, "65+"))


def require_columns(df: DataFrame, columns: tuple[str, ...], table: str) -> None:
    """Fail with the table and the missing columns when ``df`` lacks any of ``columns``."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{table}: expected column(s) {', '.join(missing)}; found {', '.join(df.columns)}")


def plain_numbers(df: DataFrame) -> DataFrame:
    """Decimal columns as double (JSON and the browser know no decimals)."""
    return df.select(
        *[F.col(f.name).cast("double").alias(f.name) if isinstance(f.dataType, DecimalType) else F.col(f.name) for f in df.schema]
    )


def dated_months(df: DataFrame) -> DataFrame:
    """Rows whose ``service_month`` is a real month (facts without a date read ``unknown``)."""
    return df.where(F.col("service_month").isNotNull() & (F.col("service_month") != UNKNOWN_MONTH))


def _weighted(rate: str, weight: str) -> Column:
    """``sum(rate x weight) / sum(weight)``: the rate of the group the rows make up."""
    return F.sum(F.col(rate) * F.col(weight)) / F.sum(F.when(F.col(rate).isNotNull(), F.col(weight)))


def specialty_months(kpi_provider: DataFrame, features: DataFrame) -> DataFrame:
    """``kpi_provider`` and ``provider_features`` (for each NPI's specialty) -> one row per
    specialty x month: providers seen, encounters, cost, billed, paid, and the readmission,
    complication and satisfaction means weighted by encounters."""
    require_columns(kpi_provider, ("npi", "service_month", "encounters", "readmission_rate"), "kpi_provider")
    specialty = features.select("npi", F.coalesce("specialty", F.lit("unknown")).alias("specialty"))
    return plain_numbers(
        dated_months(kpi_provider)
        .join(specialty, "npi", "left")
        .withColumn("specialty", F.coalesce("specialty", F.lit("unknown")))
        .groupBy("specialty", "service_month")
        .agg(
            F.count(F.when(F.col("encounters") > 0, 1)).alias("providers"),
            F.sum("encounters").alias("encounters"),
            F.sum("total_cost").alias("total_cost"),
            F.sum("billed").alias("billed"),
            F.sum("paid").alias("paid"),
            _weighted("readmission_rate", "encounters").alias("readmission_rate"),
            _weighted("complication_rate", "encounters").alias("complication_rate"),
            _weighted("avg_satisfaction", "encounters").alias("avg_satisfaction"),
        )
    )


def ranked_providers(features: DataFrame) -> DataFrame:
    """``provider_features`` -> the providers with enough volume to rank
    (:data:`MIN_RANKED_ENCOUNTERS` in 365 days): the columns the provider charts draw."""
    return plain_numbers(
        features.where(F.col("encounters_365d") >= MIN_RANKED_ENCOUNTERS).select(
            "npi", F.coalesce("specialty", F.lit("unknown")).alias("specialty"), "zip3",
            "encounters_365d", "cost_per_case", "cost_index", "readmission_rate", "readmission_rate_shrunk",
            "complication_rate_shrunk", "avg_satisfaction", "composite_score", "top_procedure_code",
            "top_procedure_share", "procedure_hhi", "referral_leakage_rate", "marketing_roi",
        )
    )


def age_band(birth_year: Column, as_of: date) -> Column:
    """The age band (:data:`AGE_BANDS`) of a Safe Harbor birth year at ``as_of``; ``unknown`` without one."""
    age = F.lit(as_of.year) - birth_year
    band = F.lit("unknown")
    for low, high, label in reversed(AGE_BANDS):
        band = F.when(age.between(low, high), F.lit(label)).otherwise(band)
    return F.when(birth_year.isNull(), F.lit("unknown")).otherwise(band)


def patient_mix(patient_summary: DataFrame, as_of: date) -> DataFrame:
    """``patient_summary`` -> one row per hospital x sex x age band: patients, high-risk
    patients, visits and readmissions in the 365 days, total cost."""
    require_columns(patient_summary, ("source_system", "sex", "birth_year", "high_risk"), "patient_summary")
    return plain_numbers(
        patient_summary.groupBy(
            F.coalesce("source_system", F.lit("unknown")).alias("hospital"),
            F.coalesce("sex", F.lit("unknown")).alias("sex"),
            age_band(F.col("birth_year"), as_of).alias("age_band"),
        ).agg(
            F.count(F.lit(1)).alias("patients"),
            F.count(F.when(F.col("high_risk"), 1)).alias("high_risk_patients"),
            F.sum("visits_365d").alias("visits_365d"),
            F.sum("readmissions_365d").alias("readmissions_365d"),
            F.sum("total_cost").alias("total_cost"),
        )
    )


def procedure_volume(stats: DataFrame) -> DataFrame:
    """``provider_procedure_stats`` -> one row per specialty x procedure code: procedures in the
    365 days and the providers performing the code."""
    require_columns(stats, ("npi", "procedure_code", "volume"), "provider_procedure_stats")
    return stats.groupBy(
        F.coalesce("specialty", F.lit("unknown")).alias("specialty"), "procedure_code"
    ).agg(F.sum("volume").alias("volume"), F.countDistinct("npi").alias("providers"))


def demand_months(demand: DataFrame) -> DataFrame:
    """``network_demand_by_zip`` -> one row per specialty x month: demand, capacity, referrals
    requested and leaked, and the area cells flagged for expansion."""
    return plain_numbers(
        dated_months(demand)
        .groupBy(F.coalesce("specialty", F.lit("unknown")).alias("specialty"), "service_month")
        .agg(
            F.sum("demand").alias("demand"),
            F.sum("capacity").alias("capacity"),
            F.sum("referrals_requested").alias("referrals_requested"),
            F.sum("referrals_leaked").alias("referrals_leaked"),
            F.count(F.when(F.col("expand_network"), 1)).alias("cells_to_expand"),
        )
    )


def routing_latest(demand: DataFrame, routing: DataFrame) -> DataFrame:
    """``network_demand_by_zip`` and ``referral_routing`` -> the area x specialty cells that
    leaked referrals in the latest month with leaks, with where to route them: the first
    :data:`ROUTED_PROVIDERS` eligible NPIs by rank (comma-separated; null when none is eligible),
    how many are eligible, and ``routing_reason`` (rank 1's reason, or why no provider is)."""
    require_columns(demand, ("zip3", "specialty", "service_month", "referrals_leaked"), "network_demand_by_zip")
    require_columns(routing, ("zip3", "specialty", "rank", "npi", "eligible_providers", "reason"), "referral_routing")
    # The latest month with leaks, not the latest month: a partial last month (as_of early in
    # it) has no referrals yet and would leave the table empty.
    leaks = dated_months(demand).where(F.col("referrals_leaked") > 0)
    latest = leaks.agg(F.max("service_month").alias("service_month"))
    # rank 0 is a cell's only row when no provider is eligible: it carries no NPI, only the reason.
    routed_npis = F.array_sort(F.collect_list(F.when(F.col("rank") >= 1, F.struct("rank", "npi"))))
    routes = routing.where(F.col("rank") <= ROUTED_PROVIDERS).groupBy("zip3", "specialty").agg(
        F.array_join(F.transform(routed_npis, lambda r: r["npi"]), ", ").alias("route_to"),
        F.max("eligible_providers").alias("eligible_providers"),
        F.min_by("reason", "rank").alias("routing_reason"),
    )
    leaked = (leaks.join(latest, "service_month", "left_semi")
              .select("service_month", "zip3", "specialty", "referrals_requested", "referrals_leaked", "leakage_rate",
                      "demand_capacity_ratio", "expand_network"))
    return plain_numbers(
        leaked.join(routes, ["zip3", "specialty"], "left")
        .select(
            "service_month", "zip3", F.coalesce("specialty", F.lit("unknown")).alias("specialty"),
            "referrals_requested", "referrals_leaked", "leakage_rate", "demand_capacity_ratio", "expand_network",
            F.coalesce("eligible_providers", F.lit(0)).alias("eligible_providers"),
            F.when(F.col("route_to") != "", F.col("route_to")).alias("route_to"),
            F.coalesce("routing_reason", F.lit(NOT_ROUTED)).alias("routing_reason"),
        )
    )


def quarantine_by_rule(quarantine: DataFrame) -> DataFrame:
    """``processed/_quarantine`` -> one row per day quarantined x hospital x entity x rule:
    rows. A row failing several rules counts once under each rule."""
    require_columns(quarantine, ("entity", "source_system", "reasons", "quarantined_at"), "_quarantine")
    return (
        quarantine.select(
            F.date_format("quarantined_at", "yyyy-MM-dd").alias("quarantined_on"),
            F.coalesce("source_system", F.lit("unknown")).alias("hospital"),
            "entity",
            F.explode_outer("reasons").alias("rule"),
        )
        .withColumn("rule", F.coalesce("rule", F.lit("unknown")))
        .groupBy("quarantined_on", "hospital", "entity", "rule")
        .agg(F.count(F.lit(1)).alias("rows"))
    )
