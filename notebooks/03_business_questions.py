# Databricks notebook source
# MAGIC %md
# MAGIC # Business questions over the curated aggregates
# MAGIC
# MAGIC Five questions, answered from `provider_outcomes`, `provider_features`, `provider_procedure_stats`,
# MAGIC `network_demand_by_zip` and `kpi_executive` (built by the `aggregates` stage):
# MAGIC 1. Which providers are the most cost-effective?
# MAGIC 2. Who specialises, and excels, in which procedures?
# MAGIC 3. Who has the best outcomes?
# MAGIC 4. When does the network need to grow?
# MAGIC 5. Where should demand be routed?
# MAGIC
# MAGIC Provider-level and area-level data only: no patient rows are shown. Plots are saved as PNG
# MAGIC under `<lakehouse root>/_reports/`. Runs on Databricks or as
# MAGIC `python notebooks/03_business_questions.py`; a table not built yet is reported, not fatal.

# COMMAND ----------

import matplotlib

matplotlib.use("Agg")  # headless: figures are saved, never shown in a window
import matplotlib.pyplot as plt
from pyspark.sql import functions as F

from carelake.config import load_config
from carelake.curated.reports import save_figure
from carelake.serve.notebook import display, finish, get_spark, read_table

MIN_CASES = 5  # providers with fewer cases of a measure are not listed as top on it

config = load_config()
spark = get_spark(config)
print(f"lakehouse: {config.root}")
outcomes = read_table(spark, config, "curated", "provider_outcomes")
features = read_table(spark, config, "curated", "provider_features")
procedures = read_table(spark, config, "curated", "provider_procedure_stats")
demand = read_table(spark, config, "curated", "network_demand_by_zip")
executive = read_table(spark, config, "curated", "kpi_executive")

# COMMAND ----------

# MAGIC %md
# MAGIC ## 1. The most cost-effective providers
# MAGIC Allowed amount per case (what payers contracted to pay, attributed to the billing NPI)
# MAGIC against what other providers' cases of the same case mix cost: `cost_per_case_oe_ratio_shrunk`
# MAGIC (below 1 = cheaper than the case mix predicts, shrunk by an estimated prior), ranked within the
# MAGIC specialty. Specialty leaders first. Definitions: docs/measures.md.

# COMMAND ----------


def ranked_within_specialty(table, measure: str, *beside: str):
    """Providers with MIN_CASES cases of ``measure`` doing better than their case mix (shrunk
    ratio below 1; a specialty's only provider is its rank 1 whatever its ratio), specialty
    leaders first, then by the ratio."""
    return (
        table.where((F.col(f"{measure}_cases") >= MIN_CASES) & F.col(f"{measure}_rank_in_specialty").isNotNull()
                    & (F.col(f"{measure}_oe_ratio_shrunk") < 1))
        .orderBy(f"{measure}_rank_in_specialty", f"{measure}_oe_ratio_shrunk", "npi")
        .select("npi", "specialty", f"{measure}_rank_in_specialty", f"{measure}_providers_in_specialty",
                f"{measure}_cases", f"{measure}_observed_per_case", f"{measure}_expected_per_case",
                f"{measure}_oe_ratio", f"{measure}_oe_ratio_shrunk", *beside)
    )


if outcomes is not None:
    display(ranked_within_specialty(outcomes, "cost_per_case", "length_of_stay_oe_ratio_shrunk").limit(10))
    points = outcomes.select(
        "cost_per_case_oe_ratio_shrunk", "readmission_30d_oe_ratio_shrunk", "cost_per_case_cases"
    ).dropna().toPandas()
    if points.empty:
        print("no provider has both a cost and a readmission measure yet: nothing to plot")
    else:
        fig, ax = plt.subplots(figsize=(7, 5))
        ax.scatter(points["cost_per_case_oe_ratio_shrunk"], points["readmission_30d_oe_ratio_shrunk"],
                   s=points["cost_per_case_cases"], alpha=0.5)
        ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("cost per case, observed / expected (shrunk)")
        ax.set_ylabel("30-day readmission, observed / expected (shrunk)")
        ax.set_title("Cost against outcome per provider, risk-adjusted (bubble = cases)")
        print("saved", save_figure(fig, config, "cost_vs_outcome.png"))
        plt.close(fig)

# COMMAND ----------

# MAGIC ## 2. Who specialises and excels in which procedures
# MAGIC Rank 1 within the specialty for a code (ranked only from 5 procedures in 365 days), with the
# MAGIC share of the provider's work that code represents.

# COMMAND ----------

if procedures is not None:
    best = procedures.where(F.col("specialty_rank") == 1)
    if features is not None:
        best = best.join(features.select("npi", "top_procedure_code", "top_procedure_share", "procedure_hhi"), "npi", "left")
    display(best.orderBy(F.col("volume").desc()).limit(15))
    volume = (
        procedures.groupBy("procedure_code").agg(F.sum("volume").alias("volume"))
        .orderBy(F.col("volume").desc()).limit(12).toPandas()
    )
    if not volume.empty:
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.bar(volume["procedure_code"], volume["volume"])
        ax.set_ylabel("procedures in 365 days")
        ax.set_title("Busiest procedure codes")
        plt.setp(ax.get_xticklabels(), rotation=45)
        print("saved", save_figure(fig, config, "procedure_volume.png"))
        plt.close(fig)

# COMMAND ----------

# MAGIC %md
# MAGIC ## 3. The best outcomes
# MAGIC 30-day unplanned readmission after an index stay (CMS hospital-wide definition) against the
# MAGIC case mix, shrunk, ranked within the specialty; the complication ratio beside it. The crude
# MAGIC rates by specialty below show why rankings are within specialty and adjusted: case mix differs.

# COMMAND ----------

if outcomes is not None:
    display(ranked_within_specialty(outcomes, "readmission_30d", "complication_oe_ratio_shrunk").limit(10))
if features is not None:
    by_specialty = (
        features.where(F.col("encounters_365d") > 0)
        .groupBy("specialty")
        .agg((F.sum("readmissions_365d") / F.sum("encounters_365d")).alias("readmission_rate"))
        .orderBy("readmission_rate").toPandas()
    )
    if not by_specialty.empty:
        fig, ax = plt.subplots(figsize=(8, 5))
        ax.barh(by_specialty["specialty"].fillna("?"), by_specialty["readmission_rate"])
        ax.set_xlabel("crude readmission flag rate, all encounters, 365 days")
        ax.set_title("Readmissions by specialty")
        print("saved", save_figure(fig, config, "readmission_by_specialty.png"))
        plt.close(fig)

# COMMAND ----------

# MAGIC %md
# MAGIC ## 4. When the network needs to grow
# MAGIC From `network_adequacy`: per patients' home area, specialty and month, the residents' demand
# MAGIC against the providers active that month (`utilisation`), the distance to the nearest
# MAGIC in-network provider (`nearest_provider_km`) and active providers per 100,000 residents
# MAGIC against the specialty's ratio over all areas. `expansion_reason` lists every standard not met
# MAGIC (thresholds under `curated.adequacy`; docs/measures.md, "Network adequacy").

# COMMAND ----------

from carelake.curated.adequacy import UNKNOWN_AREA, AdequacySettings  # noqa: E402

adequacy = read_table(spark, config, "curated", "network_adequacy")
if adequacy is not None:
    standards = AdequacySettings.from_config(config)
    areas = adequacy.where(F.col("zip3") != UNKNOWN_AREA)
    flagged = areas.where("expand_network")
    print(f"cells flagged for expansion: {flagged.count()} of {areas.count()}")
    display(
        flagged.groupBy("zip3", "specialty")
        .agg(F.count(F.lit(1)).alias("months_flagged"), F.max("service_month").alias("latest_month"),
             F.round(F.max("utilisation"), 2).alias("max_utilisation"),
             F.max("nearest_provider_km").alias("nearest_provider_km"),
             F.round(F.min(F.col("providers_per_100k") / F.col("network_providers_per_100k")), 2).alias("min_ratio_share"),
             F.array_join(F.array_sort(F.collect_set("expansion_reason")), " | ").alias("reasons"))
        .orderBy(F.col("months_flagged").desc(), "zip3", "specialty")
        .limit(15)
    )
    by_area = (
        areas.where(F.col("active_providers") > 0)
        .groupBy("zip3")
        .agg(F.percentile("utilisation", 0.5).alias("utilisation"),
             F.percentile(F.col("providers_per_100k") / F.col("network_providers_per_100k"), 0.5).alias("ratio_share"))
        .orderBy("zip3").toPandas()
    )
    if not by_area.empty:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        left.bar(by_area["zip3"], by_area["utilisation"])
        left.axhline(standards.utilisation_threshold, color="red", linestyle="--", label="expansion threshold")
        left.set_title("Median utilisation by home area")
        left.legend()
        right.bar(by_area["zip3"], by_area["ratio_share"])
        right.axhline(standards.min_ratio_share, color="red", linestyle="--", label="ratio standard")
        right.set_title("Providers per 100k residents / network's")
        right.legend()
        print("saved", save_figure(fig, config, "network_adequacy_by_area.png"))
        plt.close(fig)

# COMMAND ----------

# MAGIC %md
# MAGIC ## 5. Where demand should be routed
# MAGIC `referral_routing` (docs/routing.md): per patient area and specialty, the in-network, active
# MAGIC providers with enough cases, capacity headroom and within the distance limit
# MAGIC (`curated.routing` in the config), ranked on the risk-adjusted quality and cost O/E, each with
# MAGIC the reason for its rank; rank 0 says why no provider is eligible. `route_referral_from_tables`
# MAGIC answers one referral (optionally for a procedure), as the API's `/v1/routing` does.

# COMMAND ----------

routing = read_table(spark, config, "curated", "referral_routing")
if routing is not None:
    from carelake.curated.routing import route_referral_from_tables  # this section's own import

    display(routing.where("rank = 1").orderBy(F.col("eligible_providers").desc(), "zip3", "specialty")
            .select("zip3", "specialty", "npi", "eligible_providers", "reason").limit(15))
    display(routing.where("rank = 0").orderBy("zip3", "specialty").select("zip3", "specialty", "candidates", "reason").limit(10))
    busiest = routing.where("rank = 1").orderBy(F.col("eligible_providers").desc(), "zip3", "specialty").first()
    if busiest is not None:
        code = None
        if procedures is not None:
            top = procedures.where(F.col("npi") == busiest["npi"]).orderBy(F.col("volume").desc()).first()
            code = top["procedure_code"] if top is not None else None
        referral = route_referral_from_tables(routing, procedures, busiest["zip3"], busiest["specialty"], code)
        print(f"a referral from {busiest['zip3']} for {busiest['specialty']}" + (f", procedure {code}" if code else "") + ":")
        for p in referral["providers"][:5]:
            print(f"  {p['rank']}. {p['npi']}  {p['reason']}")
    ranked = routing.where("rank > 0").select("rank", "quality_oe", "cost_oe").toPandas()
    cells = (routing.groupBy("zip3").agg(F.count(F.when(F.col("rank") == 1, 1)).alias("served"),
                                         F.count(F.when(F.col("rank") == 0, 1)).alias("unserved"))
             .orderBy("zip3").toPandas())
    if not ranked.empty:
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        first = ranked["rank"] == 1
        right.scatter(ranked.loc[~first, "cost_oe"], ranked.loc[~first, "quality_oe"], s=12, color="tab:gray", label="eligible")
        right.scatter(ranked.loc[first, "cost_oe"], ranked.loc[first, "quality_oe"], s=18, color="tab:green", label="rank 1")
        right.axhline(1, lw=0.5, color="k")
        right.axvline(1, lw=0.5, color="k")
        right.set_xlabel("cost O/E (lower is cheaper)")
        right.set_ylabel("quality O/E (lower is better)")
        right.set_title("Eligible providers and the first choice")
        right.legend()
        left.bar(cells["zip3"], cells["served"], label="specialties with an eligible provider")
        left.bar(cells["zip3"], cells["unserved"], bottom=cells["served"], label="without one")
        left.set_xlabel("patient area (zip3)")
        left.set_title("Where referrals can be routed")
        left.legend()
        print("saved", save_figure(fig, config, "referral_routing.png"))
        plt.close(fig)

# COMMAND ----------

# MAGIC %md
# MAGIC ## The trend: visits and revenue by month

# COMMAND ----------

if executive is not None:
    trend = executive.where(F.col("service_month") != "unknown").orderBy("service_month")
    display(trend, n=24)
    frame = trend.select("service_month", "visits", F.col("paid").cast("double").alias("paid")).toPandas()
    if not frame.empty:
        fig, ax = plt.subplots(figsize=(9, 4))
        ax.bar(frame["service_month"], frame["visits"], color="tab:blue", label="visits")
        ax.set_ylabel("visits")
        paid_ax = ax.twinx()
        paid_ax.plot(frame["service_month"], frame["paid"], color="tab:orange", label="paid")
        paid_ax.set_ylabel("paid ($)")
        ax.set_title("Visits and paid revenue by month")
        ax.set_xticks(ax.get_xticks()[:: max(1, len(frame) // 12)])
        plt.setp(ax.get_xticklabels(), rotation=45)
        print("saved", save_figure(fig, config, "executive_trend.png"))
        plt.close(fig)

# COMMAND ----------

finish(spark)
