"""Acceptance: referral_routing sends the planted demand to providers of higher planted quality
than the eligible providers on average, than the old ``route_to`` of network_demand_by_zip and
than the same rule without its volume floor, and away from the overstretched providers of the
planted shortage area (docs/routing.md, "Proof").

One generated year at scale 0.2 (seed 42, without the multi-hospital people), fed as clean
fact-shaped records (tests/planted_truth.py) to provider_outcomes, network_adequacy (the
specialties' throughput and the residents' demand per area and specialty) and referral_routing;
providers sit at their planted practice area. A cell's planted demand is its residents'
encounters and referrals in the year; figures are demand-weighted over cells with at least two
eligible providers.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from carelake.curated.adequacy import UNKNOWN_AREA, network_adequacy
from carelake.curated.demand import network_demand_by_zip
from carelake.curated.features import composite_score, providers_as_of
from carelake.curated.metrics import shrunk_rate
from carelake.curated.outcomes import provider_outcomes, provider_outcomes_by_npi
from carelake.curated.routing import RoutingSettings, referral_routing, routing_distances
from carelake.generate.truth import AREAS_FILE
from tests.planted_truth import PLANTED_YEAR, network_frames, provider_truth, truth_frame

START = PLANTED_YEAR["start"]
AS_OF = date(2024, 12, 31)


@pytest.fixture(scope="module")
def generated(planted_year: Path) -> Path:
    return planted_year  # tests/planted_truth.py PLANTED_YEAR


def _inputs(spark: SparkSession, out: Path) -> dict[str, DataFrame]:
    frames = network_frames(spark, out, START)
    return {name: frames[name].localCheckpoint(eager=True)
            for name in ("encounters", "claims", "patients", "providers", "homes", "referrals")}


def _raw_ratios(outcomes: DataFrame) -> DataFrame:
    """provider_outcomes with every shrunk ratio replaced by the raw observed/expected ratio."""
    return outcomes.select(*[F.col(c.replace("_shrunk", "")).alias(c) if c.endswith("_oe_ratio_shrunk") else c
                             for c in outcomes.columns])


def _old_features(data: dict[str, DataFrame]) -> DataFrame:
    """What network_demand_by_zip ranks route_to on: provider_features' composite_score, here from
    the crude measures it is made of (rates shrunk with a prior of 20 over the specialty rate, the
    unadjusted mean cost over the specialty's; no survey answers)."""
    spec = providers_as_of(data["providers"], AS_OF).select("npi", "specialty", "zip3")
    cost = data["claims"].groupBy("npi").agg(F.avg("allowed_amount").cast("double").alias("_cost"))
    per = data["encounters"].where(F.col("admit_date") <= F.lit(AS_OF)).join(spec, "npi").groupBy("npi", "specialty", "zip3").agg(
        F.count(F.lit(1)).alias("n"), F.sum("readmitted_30d").alias("readm"), F.sum("complication").alias("comp")
    ).join(cost, "npi", "left")
    by_spec = Window.partitionBy("specialty")
    readm_rate = F.sum("readm").over(by_spec) / F.sum("n").over(by_spec)
    comp_rate = F.sum("comp").over(by_spec) / F.sum("n").over(by_spec)
    return per.select(
        "npi", "zip3", "specialty",
        composite_score(F.col("_cost") / F.avg("_cost").over(by_spec),
                        shrunk_rate(F.col("readm"), F.col("n"), readm_rate) / readm_rate,
                        shrunk_rate(F.col("comp"), F.col("n"), comp_rate) / comp_rate,
                        F.lit(None).cast("double")).alias("composite_score"))


def _weighted(picks: pd.DataFrame, demand: pd.Series, column: str) -> float:
    both = picks.drop(columns="demand", errors="ignore").join(demand, on=["zip3", "specialty"], how="inner")
    return round(float((both[column] * both["demand"]).sum() / both["demand"].sum()), 3)


def routing_figures(spark: SparkSession, generated: Path) -> dict:
    """The routing rule and its baselines on the generated year, against the planted truth."""
    data = _inputs(spark, generated)
    outcomes = provider_outcomes_by_npi(provider_outcomes(data["encounters"], data["claims"], data["patients"],
                                                          data["providers"], AS_OF)).localCheckpoint(eager=True)
    adequacy = network_adequacy(data["encounters"], data["referrals"], data["providers"], data["homes"], AS_OF
                                ).localCheckpoint(eager=True)
    areas = data["homes"].select("zip3").distinct()
    distances = routing_distances(spark, areas, data["providers"])

    def route(measures: DataFrame, settings: RoutingSettings) -> pd.DataFrame:
        return referral_routing(data["providers"], measures, data["encounters"], adequacy, areas, distances, AS_OF,
                                settings).toPandas()

    new = route(outcomes, RoutingSettings())
    blind = route(_raw_ratios(outcomes), RoutingSettings(min_cases=0))
    features = _old_features(data).localCheckpoint(eager=True)
    old = network_demand_by_zip(data["encounters"], data["referrals"], data["providers"], data["homes"],
                                features, AS_OF).toPandas()
    composite = features.select("npi", "composite_score").toPandas().set_index("npi")["composite_score"]

    truth = provider_truth(generated)[["quality"]]
    demand = (adequacy.where(F.col("zip3") != UNKNOWN_AREA).groupBy("zip3", "specialty").agg(F.sum("demand").alias("demand"))
              .toPandas().set_index(["zip3", "specialty"]))
    cells = new[new["eligible_providers"] >= 2][["zip3", "specialty"]].drop_duplicates()
    weights = demand.join(cells.set_index(["zip3", "specialty"]), how="inner")["demand"]
    ranked = new[new["rank"] > 0].join(truth, on="npi")
    ranked = ranked.assign(composite=ranked["npi"].map(composite))  # the old ranking's score
    headroom = ranked.groupby("npi")["headroom"].first()

    def firsts(routing: pd.DataFrame) -> pd.DataFrame:
        return routing[routing["rank"] == 1].set_index(["zip3", "specialty"])[["npi"]].join(truth, on="npi")

    eligible = ranked.groupby(["zip3", "specialty"])[["quality"]].mean()
    # The old ranking (composite_score, best first) over the same eligible providers.
    old_ranking = (ranked.sort_values(["composite", "npi"], ascending=[False, True])
                   .drop_duplicates(["zip3", "specialty"]).set_index(["zip3", "specialty"])[["npi", "quality"]])
    # The old route_to as network_demand_by_zip builds it: any active provider practising in the area.
    latest = old[old["service_month"] == old["service_month"].max()].drop_duplicates(["zip3", "specialty"])
    latest = latest[latest["route_to"].map(len) > 0].set_index(["zip3", "specialty"])
    old_first = latest.assign(npi=latest["route_to"].map(lambda r: r[0]))[["npi"]].join(truth, on="npi")
    old_first = old_first.assign(full=~old_first["npi"].isin(headroom.index)).join(weights, how="inner")

    # Within each cell, how well the order follows planted quality (Spearman over all its eligible
    # providers, about 4.6 a cell): the rank-1 means use one provider a cell, so at 40 cells a
    # difference of 0.05 between two rankings is inside their noise; the orders use every provider.
    cell_rho = pd.DataFrame([
        {"zip3": key[0], "specialty": key[1], "new": -g["rank"].corr(g["quality"], method="spearman"),
         "old": g["composite"].corr(g["quality"], method="spearman")}
        for key, g in ranked.groupby(["zip3", "specialty"]) if len(g) >= 2
    ]).dropna().set_index(["zip3", "specialty"])

    areas_truth = truth_frame(generated, AREAS_FILE).astype({"zip3": str})
    uncapped = route(outcomes, RoutingSettings(min_headroom=-1e9))  # everyone passes the capacity rule
    served = uncapped[uncapped["rank"] > 0]
    excluded = served.assign(kept=served["npi"].isin(headroom.index)).groupby("zip3")["kept"].mean()
    out = {
        "cells with 2+ eligible": len(weights),
        "quality: new rank 1": _weighted(firsts(new), weights, "quality"),
        "quality: eligible mean": _weighted(eligible, weights, "quality"),
        "quality: volume-blind rank 1": _weighted(firsts(blind), weights, "quality"),
        "quality: old ranking of the eligible": _weighted(old_ranking, weights, "quality"),
        "quality: old route_to first": _weighted(old_first, weights, "quality"),
        "rank correlation with quality in cell: new": _weighted(cell_rho, weights, "new"),
        "rank correlation with quality in cell: old ranking": _weighted(cell_rho, weights, "old"),
        "demand to providers without headroom or volume: old route_to": round(float(
            (old_first["full"] * old_first["demand"]).sum() / old_first["demand"].sum()), 3),
        "new rank 1 headroom, minimum": float(ranked["headroom"].min()),
        "short areas": sorted(areas_truth.loc[areas_truth["provider_shortage"], "zip3"]),
        "share excluded for capacity by area": (1 - excluded).round(3).to_dict(),
    }
    print(out)
    return out


@pytest.fixture(scope="module")
def figures(spark: SparkSession, generated: Path) -> dict:
    return routing_figures(spark, generated)


def test_recommended_providers_have_higher_planted_quality(figures: dict) -> None:
    assert figures["cells with 2+ eligible"] >= 30
    assert figures["quality: new rank 1"] >= figures["quality: eligible mean"] + 0.2
    assert figures["quality: new rank 1"] > figures["quality: volume-blind rank 1"]
    # Against the old ranking, the whole order: its rank 1 alone is within noise of ours
    # (docs/routing.md, "Proof").
    assert figures["rank correlation with quality in cell: new"] > figures["rank correlation with quality in cell: old ranking"]


def test_recommended_providers_have_capacity_and_the_shortage_area_is_spared(figures: dict) -> None:
    assert figures["new rank 1 headroom, minimum"] >= 0.1
    assert figures["demand to providers without headroom or volume: old route_to"] > 0
    # The planted shortage area's providers carry about twice the load: the capacity rule
    # excludes more of them than of any other area's.
    share = figures["share excluded for capacity by area"]
    assert figures["short areas"] == ["441"]
    assert share["441"] > max(v for k, v in share.items() if k != "441")
