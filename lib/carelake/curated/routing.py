"""Where to route an incoming referral: per patient area (zip3) and specialty, the in-network
providers that can take it, best first, with the reason for each rank (docs/routing.md).

A provider is eligible for an area and specialty when all five rules hold (``curated.routing``):

- **network** — their ``network_id`` is one of ``networks`` (every network on file when unset);
- **active** — ``dim_provider`` says active on ``as_of``;
- **volume** — at least ``min_cases`` cases of both the complication and the cost measure of
  ``provider_outcomes`` (encounters with an outcome, and encounters with a claim, in 365 days);
- **capacity** — headroom of at least ``min_headroom``: their encounters per month over the
  ``recent_days`` to ``as_of`` against ``capacity_multiple`` x the specialty's typical
  provider's sustained monthly throughput (``network_adequacy.throughput_per_provider``);
- **distance** — their practice zip within ``max_distance_km`` of the area's centroid.

Eligible providers are ranked on ``routing_score`` = ``quality_weight`` x quality O/E +
(1 - ``quality_weight``) x cost O/E, lower first (ties: nearer, then NPI), where quality O/E is
the mean of the shrunk readmission and complication observed/expected ratios and cost O/E the
shrunk cost-per-case ratio, all from ``provider_outcomes``. A cell with no eligible provider
keeps one row, ``rank`` 0, whose ``reason`` counts the providers each rule excluded.

:func:`referral_routing` builds the curated table; :func:`route_referral` answers one referral
(optionally for one procedure, or within the referring provider's network) from its rows, for
the API and notebooks alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from carelake.config import Config, ConfigError
from carelake.curated.column_sources import (
    NETWORK_ADEQUACY,
    PATIENT_SUMMARY,
    PROVIDER_OUTCOMES,
    PROVIDERS,
    ColumnSources,
    union,
)
from carelake.curated.features import providers_as_of
from carelake.curated.metrics import RATIO_DIGITS, in_window
from carelake.curated.procedures import MIN_VOLUME_TO_RANK
from carelake.geo import area_to_zip_distances

DAYS_PER_MONTH = 365.25 / 12
NO_PROVIDER_RANK = 0

COLUMNS: dict[str, str] = {
    "zip3": "Patients' home area (zip3) the referral comes from",
    "specialty": "Specialty the referral asks for (providers' specialty on as_of)",
    "rank": "1 = best eligible provider; 0 = no provider is eligible (reason says why)",
    "as_of": "Date the routing is computed for",
    "npi": "Eligible provider; null on a rank 0 row",
    "network_id": "The provider's network",
    "provider_zip": "The provider's practice zip",
    "distance_km": "Great-circle km from the area's centroid to the practice zip's (carelake.geo)",
    "quality_oe": "Mean of the shrunk readmission_30d and complication observed/expected ratios of "
    "provider_outcomes (a measure without cases counts as 1, its shrunk prior); lower is better",
    "readmission_oe": "readmission_30d_oe_ratio_shrunk of provider_outcomes",
    "complication_oe": "complication_oe_ratio_shrunk of provider_outcomes",
    "cost_oe": "cost_per_case_oe_ratio_shrunk of provider_outcomes; lower is better",
    "routing_score": "quality_weight x quality_oe + (1 - quality_weight) x cost_oe; ranked ascending",
    "cases": "The fewer of the provider's complication and cost_per_case cases (the volume rule)",
    "recent_monthly_encounters": "Encounters admitted in the recent_days to as_of, per month (365.25/12 days)",
    "capacity": "capacity_multiple x the specialty's throughput_per_provider (network_adequacy)",
    "headroom": "1 - recent_monthly_encounters / capacity",
    "eligible_providers": "Providers eligible for the area and specialty (0 on a rank 0 row)",
    "candidates": "Providers of the specialty on file on as_of, wherever they practise",
    "reason": "Why this rank (quality O/E, cost O/E, headroom, distance), or why no provider is eligible",
}


# Each column's input columns (the rules: carelake.curated.column_sources). Distances come from
# the zip centroids of carelake.geo; encounter and candidate counts have no input column.
_READMISSION = ((PROVIDER_OUTCOMES, "readmission_30d_oe_ratio_shrunk"),)
_COMPLICATION = ((PROVIDER_OUTCOMES, "complication_oe_ratio_shrunk"),)
_COST = ((PROVIDER_OUTCOMES, "cost_per_case_oe_ratio_shrunk"),)
_SCORE = union(_READMISSION, _COMPLICATION, _COST)
_DISTANCE = ((PATIENT_SUMMARY, "zip3"), (PROVIDERS, "zip"))
_CAPACITY = ((NETWORK_ADEQUACY, "throughput_per_provider"),)
SOURCES: ColumnSources = {
    "zip3": ((PATIENT_SUMMARY, "zip3"),),
    "specialty": ((PROVIDERS, "specialty"),),
    "rank": _SCORE,
    "npi": ((PROVIDERS, "npi"),),
    "network_id": ((PROVIDERS, "network_id"),),
    "provider_zip": ((PROVIDERS, "zip"),),
    "distance_km": _DISTANCE,
    "quality_oe": union(_READMISSION, _COMPLICATION),
    "readmission_oe": _READMISSION,
    "complication_oe": _COMPLICATION,
    "cost_oe": _COST,
    "routing_score": _SCORE,
    "cases": ((PROVIDER_OUTCOMES, "complication_cases"), (PROVIDER_OUTCOMES, "cost_per_case_cases")),
    "capacity": _CAPACITY,
    "headroom": _CAPACITY,
    "reason": union(_SCORE, _CAPACITY, _DISTANCE),
}


@dataclass(frozen=True)
class RoutingSettings:
    """The eligibility rules and ranking weight (config section ``curated.routing``)."""

    # Network ids counted as in network; None: every network on file (a provider with no
    # network_id is out). A deployment lists the networks it contracts with.
    networks: tuple[str, ...] | None = None
    # The floor the top-providers report and procedure ranking use: fewer cases and the shrunk
    # ratio is mostly its prior, not the provider.
    min_cases: int = 5
    # Full at twice the specialty's typical sustained pace: the threshold network adequacy calls
    # an area short at (curated.adequacy.utilisation_threshold), applied to one provider.
    capacity_multiple: float = 2.0
    min_headroom: float = 0.1  # a provider within 10% of full gets no new referrals
    recent_days: int = 90  # three months: a recent pace, not one busy week
    # 50 miles: about the longest time-distance standard Medicare Advantage sets for specialists
    # outside rural counties; it keeps a referral within its metro area.
    max_distance_km: float = 80.0
    # Outcomes first: a cheaper provider with more readmissions costs more after them.
    quality_weight: float = 0.7

    @classmethod
    def from_config(cls, config: Config) -> RoutingSettings:
        block, where = config.settings("curated.routing", [f.name for f in fields(cls)])
        values: dict[str, Any] = {}
        for key, value in block.items():
            if key == "networks":
                if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
                    raise ConfigError(f"{where}.networks: expected a list of network ids or null, found {value!r}")
                values[key] = None if value is None else tuple(value)
                continue
            try:
                values[key] = type(getattr(cls, key))(value)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}.{key}: expected a number, found {value!r}") from exc
        settings = cls(**values)
        if (settings.min_cases < 0 or settings.capacity_multiple <= 0 or not 0 <= settings.min_headroom < 1
                or settings.recent_days <= 0 or settings.max_distance_km <= 0 or not 0 <= settings.quality_weight <= 1):
            raise ConfigError(f"{where}: expected min_cases >= 0, capacity_multiple > 0, 0 <= min_headroom < 1, "
                              f"recent_days > 0, max_distance_km > 0 and 0 <= quality_weight <= 1, found {settings}")
        return settings


def routing_distances(spark: SparkSession, areas: DataFrame, providers: DataFrame) -> DataFrame:
    """Patient areas (``zip3``) and ``dim_provider`` (``zip``) -> the small table of
    :func:`carelake.geo.area_to_zip_distances` for every area and practice zip (both collected:
    a few hundred values)."""
    zip3s = [r[0] for r in areas.select("zip3").distinct().collect()]
    zips = [r[0] for r in providers.select("zip").distinct().collect()]
    return area_to_zip_distances(spark, zip3s, zips)


def _measures(outcomes: DataFrame, as_of: date) -> DataFrame:
    """provider_outcomes rows of ``as_of`` -> per NPI the ratios and volume the rules use."""
    prior = F.lit(1.0)  # a shrunk ratio without cases is its prior
    readmission, complication = F.col("readmission_30d_oe_ratio_shrunk"), F.col("complication_oe_ratio_shrunk")
    return outcomes.where(F.col("as_of") == F.lit(as_of)).select(
        "npi",
        readmission.alias("readmission_oe"),
        complication.alias("complication_oe"),
        F.round((F.coalesce(readmission, prior) + F.coalesce(complication, prior)) / 2, RATIO_DIGITS).alias("quality_oe"),
        F.col("cost_per_case_oe_ratio_shrunk").alias("cost_oe"),
        F.least(F.coalesce("complication_cases", F.lit(0)), F.coalesce("cost_per_case_cases", F.lit(0))).alias("cases"),
    )


def referral_routing(
    providers: DataFrame,
    outcomes: DataFrame,
    encounters: DataFrame,
    throughput: DataFrame,
    areas: DataFrame,
    distances: DataFrame,
    as_of: date,
    settings: RoutingSettings = RoutingSettings(),
) -> DataFrame:
    """``dim_provider`` (SCD2), ``provider_outcomes``, ``fact_encounter`` (npi, admit_date), the
    specialties' typical throughput (``specialty``, ``throughput_per_provider``, e.g. the
    ``network_adequacy`` rows), patient areas (``zip3``) and area-to-zip distances
    (:func:`routing_distances`) -> one row per area x specialty x rank (:data:`COLUMNS`): every
    eligible provider ranked, or a rank 0 row saying why none is (module notes)."""
    s = settings
    attributes = providers_as_of(providers, as_of).where(F.col("specialty").isNotNull())
    recent = (encounters.where(in_window(F.col("admit_date"), as_of, s.recent_days))
              .groupBy("npi").agg(F.count(F.lit(1)).alias("_recent")))
    typical = throughput.where(F.col("throughput_per_provider").isNotNull()).groupBy("specialty").agg(
        F.max("throughput_per_provider").alias("_throughput"))
    capacity = F.round(F.lit(s.capacity_multiple) * F.col("_throughput"), RATIO_DIGITS)
    monthly = F.round(F.coalesce("_recent", F.lit(0)) * F.lit(DAYS_PER_MONTH / s.recent_days), 2)
    per_provider = (
        attributes.join(_measures(outcomes, as_of), "npi", "left")
        .join(recent, "npi", "left")
        .join(F.broadcast(typical), "specialty", "left")
        .select("npi", "specialty", "network_id", F.col("zip").alias("provider_zip"), "active",
                "readmission_oe", "complication_oe", "quality_oe", "cost_oe", F.coalesce("cases", F.lit(0)).alias("cases"),
                monthly.alias("recent_monthly_encounters"), capacity.alias("capacity"))
        .withColumn("headroom", F.round(F.when(F.col("capacity") > 0, 1 - F.col("recent_monthly_encounters") / F.col("capacity")),
                                        RATIO_DIGITS))
    )
    located = distances.select("zip3", F.col("zip").alias("provider_zip"), "distance_km")
    candidates = (
        F.broadcast(areas.select("zip3").where(F.col("zip3").isNotNull()).distinct())
        .crossJoin(per_provider)
        .join(F.broadcast(located), ["zip3", "provider_zip"], "left")
    )
    rules = {
        "_in_network": F.col("network_id").isNotNull() & (F.col("network_id").isin(list(s.networks)) if s.networks is not None else F.lit(True)),
        "_active": F.coalesce(F.col("active"), F.lit(False)),
        "_volume": F.col("cases") >= s.min_cases,
        "_capacity": F.coalesce(F.col("headroom") >= s.min_headroom, F.lit(False)),
        "_near": F.coalesce(F.col("distance_km") <= s.max_distance_km, F.lit(False)),
    }
    for name, rule in rules.items():
        candidates = candidates.withColumn(name, rule)
    eligible = F.col("_in_network") & F.col("_active") & F.col("_volume") & F.col("_capacity") & F.col("_near")
    score = F.round(F.lit(s.quality_weight) * F.col("quality_oe") + F.lit(1 - s.quality_weight) * F.col("cost_oe"), RATIO_DIGITS)
    cell = Window.partitionBy("zip3", "specialty")
    checked = (candidates.withColumn("_eligible", eligible)
               .withColumn("routing_score", score)
               .withColumn("candidates", F.count(F.lit(1)).over(cell))
               .withColumn("eligible_providers", F.count(F.when(F.col("_eligible"), 1)).over(cell)))

    best_first = cell.orderBy(F.col("routing_score").asc_nulls_last(), F.col("distance_km").asc(), F.col("npi"))
    ranked = (
        checked.where(F.col("_eligible"))
        .withColumn("rank", F.row_number().over(best_first))
        .withColumn("reason", F.format_string(
            "quality O/E %.2f, cost O/E %.2f, headroom %d%%, %.1f km", F.col("quality_oe"), F.col("cost_oe"),
            F.round(F.col("headroom") * 100).cast("int"), F.col("distance_km")))
    )
    unserved = (
        checked.where(F.col("eligible_providers") == 0)
        .groupBy("zip3", "specialty")
        .agg(F.count(F.lit(1)).alias("candidates"),
             *[F.count(F.when(~F.col(name), 1)).alias(name) for name in rules],
             F.min("distance_km").alias("_nearest"))
        .select("zip3", "specialty", F.lit(NO_PROVIDER_RANK).alias("rank"), "candidates",
                F.lit(0).cast("long").alias("eligible_providers"), _exclusion_reason(s).alias("reason"))
    )
    columns = list(COLUMNS)
    return ranked.withColumn("as_of", F.lit(as_of)).select(*columns).unionByName(
        unserved.withColumn("as_of", F.lit(as_of)), allowMissingColumns=True).select(*columns)


def _exclusion_reason(s: RoutingSettings) -> Column:
    """Per cell with no eligible provider (columns: ``candidates``, one count per rule, ``_nearest``)
    the counts of providers each rule excluded (a provider may fail several)."""
    parts = [
        F.when(F.col("_in_network") > 0, F.format_string("%d out of network", F.col("_in_network"))),
        F.when(F.col("_active") > 0, F.format_string("%d inactive", F.col("_active"))),
        F.when(F.col("_volume") > 0, F.format_string(f"%d with fewer than {s.min_cases} cases", F.col("_volume"))),
        F.when(F.col("_capacity") > 0, F.format_string(f"%d with less than {s.min_headroom:.0%}% headroom",
                                                       F.col("_capacity"))),
        F.when(F.col("_near") > 0, F.concat(
            F.format_string(f"%d beyond {s.max_distance_km:g} km", F.col("_near")),
            F.when(F.col("_nearest").isNotNull(), F.format_string(" (nearest %.1f km)", F.col("_nearest")))
            .otherwise(F.lit(" (area or practice not located)")))),
    ]
    return F.concat(F.format_string("no eligible provider among %d of the specialty: ", F.col("candidates")),
                    F.concat_ws(", ", *parts))


def route_referral(
    rows: Iterable[Mapping[str, Any]],
    zip3: str,
    specialty: str,
    procedure: str | None = None,
    procedure_stats: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    network: str | None = None,
    min_procedure_volume: int = MIN_VOLUME_TO_RANK,
) -> dict[str, Any] | None:
    """Route one referral from ``referral_routing`` rows (those of its cell, or more): the
    area's eligible providers of ``specialty`` best first, each with ``rank`` and ``reason``.
    None when the table has no row for the area and specialty.

    ``network``: keep only that network's providers (the referring provider's, to keep the
    referral in network). ``procedure``: providers with at least ``min_procedure_volume`` of the
    code in ``procedure_stats`` (``provider_procedure_stats`` rows by NPI) go first, best
    ``procedure_score`` first; the others follow in their routing order. Returns ``zip3``,
    ``specialty``, ``procedure``, ``network``, ``as_of``, ``providers`` and ``reason`` (why the
    list is empty; else None)."""
    cell = [dict(r) for r in rows if r.get("zip3") == zip3 and r.get("specialty") == specialty]
    if not cell:
        return None
    ranked = sorted((r for r in cell if (r.get("rank") or 0) > NO_PROVIDER_RANK), key=lambda r: r["rank"])
    answer: dict[str, Any] = {"zip3": zip3, "specialty": specialty, "procedure": procedure, "network": network,
                              "as_of": cell[0].get("as_of"), "providers": [], "reason": None}
    if not ranked:
        answer["reason"] = next((r.get("reason") for r in cell if r.get("reason")), "no eligible provider")
        return answer
    if network is not None:
        others = len(ranked)
        ranked = [r for r in ranked if r.get("network_id") == network]
        if not ranked:
            answer["reason"] = f"no eligible provider in network {network} ({others} eligible in other networks)"
            return answer
    if procedure is not None:
        ranked = _by_procedure(ranked, procedure, procedure_stats or {}, min_procedure_volume)
    answer["providers"] = [{**r, "rank": i} for i, r in enumerate(ranked, start=1)]
    return answer


def _by_procedure(ranked: list[dict[str, Any]], procedure: str, stats: Mapping[str, Sequence[Mapping[str, Any]]],
                  min_volume: int) -> list[dict[str, Any]]:
    """``ranked`` with the providers doing ``procedure`` at least ``min_volume`` times first (by
    ``procedure_score``, higher first), their reasons prefixed with the procedure's figures."""
    experienced, others = [], []
    for r in ranked:
        found = next((p for p in stats.get(r["npi"], ()) if p.get("procedure_code") == procedure), None)
        volume = int((found or {}).get("volume") or 0)
        if found is not None and volume >= min_volume and found.get("procedure_score") is not None:
            score = float(found["procedure_score"])
            experienced.append((score, r["rank"], {
                **r, "procedure_volume": volume, "procedure_score": score,
                "reason": f"{procedure}: procedure score {score:.2f}, {volume} in 365 days; {r['reason']}"}))
        else:
            others.append({**r, "procedure_volume": volume, "procedure_score": None,
                           "reason": f"{procedure}: {volume} in 365 days (fewer than {min_volume}), "
                                     f"ranked on the general measures; {r['reason']}"})
    experienced.sort(key=lambda t: (-t[0], t[1]))
    return [r for _, _, r in experienced] + others


def route_referral_from_tables(routing: DataFrame, procedure_stats: DataFrame | None, zip3: str, specialty: str,
                               procedure: str | None = None, network: str | None = None) -> dict[str, Any] | None:
    """:func:`route_referral` over the curated tables as Spark DataFrames (for notebooks): only
    the referral's cell and, with ``procedure``, that code's statistics are collected."""
    rows = [r.asDict() for r in routing.where((F.col("zip3") == zip3) & (F.col("specialty") == specialty)).collect()]
    stats: dict[str, list[dict[str, Any]]] = {}
    if procedure is not None and procedure_stats is not None:
        for r in procedure_stats.where(F.col("procedure_code") == procedure).collect():
            stats.setdefault(r["npi"], []).append(r.asDict())
    return route_referral(rows, zip3, specialty, procedure, stats, network)
