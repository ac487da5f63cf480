"""Network adequacy per patient home area (zip3), specialty and month: the care residents need
against the providers practising there in that month, and when the network must grow.

Unlike :func:`carelake.curated.demand.network_demand_by_zip`, demand is counted where the
patients live (all their encounters and non-cancelled referrals, wherever they were treated),
supply from the providers active in each month (dim_provider history, not today's roster), and
capacity in units of a typical provider's sustained monthly throughput of the specialty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from carelake.config import Config, ConfigError
from carelake.curated.features import flag_leaked, providers_as_of
from carelake.curated.metrics import RATIO_DIGITS, in_effect_first, in_window, ratio, zip3_of

CANCELLED_STATUS = "cancelled"
UNKNOWN_AREA = "unknown"  # patients without a known home zip3: counted, never flagged
REASON_NO_PROVIDER = "no active provider"

COLUMNS: dict[str, str] = {
    "zip3": "Patients' home area (Safe Harbor zip3); 'unknown' for patients without one",
    "specialty": "Specialty of the treating provider (its version on the admit date) or requested by the referral",
    "service_month": "Month (yyyy-MM) of the admission or referral; supply is taken at the month's end",
    "encounters": "Encounters of the area's residents with providers of the specialty, in any area",
    "referrals": "Referrals of the area's residents for the specialty, in-network or leaked; cancelled excluded",
    "referrals_leaked": "Of those, leaked: status leaked or sent outside the referring provider's network",
    "demand": "encounters + referrals",
    "active_providers": "Providers of the specialty practising in the area and active at the month's end "
    "(dim_provider version in effect then)",
    "throughput_per_provider": "The specialty's sustained monthly throughput of a typical provider: the median "
    "over its providers of each provider's median monthly encounters (months with encounters, to as_of)",
    "capacity": "active_providers x throughput_per_provider",
    "utilisation": "demand / capacity; null without capacity",
    "expand_network": "True when the area's residents need more than its active providers sustain "
    "(see expansion_reason)",
    "expansion_reason": "Why expand_network is set: 'utilisation above <threshold>' or 'no active provider' "
    "(demand of at least curated.adequacy.min_demand); null otherwise",
}


@dataclass(frozen=True)
class AdequacySettings:
    """Thresholds of the expansion signal (config section ``curated.adequacy``)."""

    # 2.0: the residents need twice what the area's providers deliver at the typical provider's
    # sustained pace. Busier-than-median providers put areas with a normal supply at a median
    # 0.94-1.53 on the generated data, the planted shortage area at 3.67 (docs/measures.md).
    utilisation_threshold: float = 2.0
    # Months with less demand than this are too thin to call a shortage on (a few visits).
    min_demand: int = 5

    @classmethod
    def from_config(cls, config: Config) -> AdequacySettings:
        block: Any = config.section("curated").get("adequacy") or {}
        where = f"{config.source_file}: curated.adequacy"
        if not isinstance(block, dict):
            raise ConfigError(f"{where}: expected a mapping, found {type(block).__name__}")
        unknown = set(block) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                              f"expected {', '.join(sorted(cls.__dataclass_fields__))}")
        try:
            settings = cls(**{k: type(getattr(cls, k))(v) for k, v in block.items()})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: expected numbers, found {block}") from exc
        if settings.utilisation_threshold <= 0 or settings.min_demand < 0:
            raise ConfigError(f"{where}: expected utilisation_threshold > 0 and min_demand >= 0, found "
                              f"{settings.utilisation_threshold} and {settings.min_demand}")
        return settings


def _version_at(facts: DataFrame, providers: DataFrame, at: Column, key: str) -> DataFrame:
    """Each fact row (unique ``key``) with the dim_provider version in effect at the end of day
    ``at`` (the first version when the provider was recorded later, as in ``version_as_of``)."""
    versions = providers.select(
        F.col("npi").alias("_npi"), F.col("specialty").alias("_specialty"),
        zip3_of(F.col("zip")).alias("_zip3"), F.col("active").alias("_active"), F.col("valid_from").alias("_from"))
    order = Window.partitionBy(key).orderBy(*in_effect_first(F.col("_from"), at))
    return (
        facts.join(versions, facts["npi"] == versions["_npi"])
        .withColumn("_v", F.row_number().over(order))
        .where(F.col("_v") == 1)
        .drop("_v", "_npi", "_from")
    )


def network_adequacy(
    encounters: DataFrame,
    referrals: DataFrame,
    providers: DataFrame,
    patient_zip3: DataFrame,
    as_of: date,
    settings: AdequacySettings = AdequacySettings(),
) -> DataFrame:
    """``fact_encounter`` (encounter_key, patient_token, npi, admit_date), ``fact_referral``
    (patient_token, referring_npi, referred_to_npi, referral_date, status, specialty_requested),
    ``dim_provider`` (SCD2: npi, specialty, zip, active, network_id, valid_from), patients' home
    zip3 (patient_token, zip3) -> one row per home zip3 x specialty x month from the first month
    with an encounter or referral to ``as_of``'s month (:data:`COLUMNS`).

    A cell is kept when it has demand or active providers. ``expand_network`` is set when
    demand >= ``settings.min_demand`` and either no provider of the specialty is active in the
    area (``no active provider``) or utilisation > ``settings.utilisation_threshold``.
    """
    home = patient_zip3.select("patient_token", F.col("zip3").alias("_home"))
    area = F.coalesce(F.col("_home"), F.lit(UNKNOWN_AREA)).alias("zip3")
    month = F.date_format

    treated = _version_at(
        encounters.where(in_window(F.col("admit_date"), as_of, None)).select("encounter_key", "patient_token", "npi", "admit_date"),
        providers, F.col("admit_date"), "encounter_key",
    )
    care = treated.join(home, "patient_token", "left").groupBy(
        area, F.col("_specialty").alias("specialty"), month("admit_date", "yyyy-MM").alias("service_month")
    ).agg(F.count(F.lit(1)).alias("encounters"))

    live = referrals.where(
        in_window(F.col("referral_date"), as_of, None)
        & ~F.coalesce(F.lower(F.trim("status")) == CANCELLED_STATUS, F.lit(False))
    )
    asked = (
        flag_leaked(live, providers_as_of(providers, as_of))
        .join(home, "patient_token", "left")
        .groupBy(area, F.col("specialty_requested").alias("specialty"), month("referral_date", "yyyy-MM").alias("service_month"))
        .agg(F.count(F.lit(1)).alias("referrals"), F.count(F.when(F.col("leaked"), 1)).alias("referrals_leaked"))
    )

    # A provider's sustained throughput is the median of their monthly volumes; the specialty's
    # typical provider is the median of those, so one very busy (or part-time) provider does not
    # set the standard, and an area whose few providers are overstretched still shows its gap.
    per_month = treated.groupBy("npi", "_specialty", month("admit_date", "yyyy-MM")).agg(F.count(F.lit(1)).alias("_n"))
    throughput = (
        per_month.groupBy("npi", "_specialty").agg(F.percentile(F.col("_n"), 0.5).alias("_median"))
        .groupBy(F.col("_specialty").alias("specialty"))
        .agg(F.round(F.percentile(F.col("_median"), 0.5), RATIO_DIGITS).alias("throughput_per_provider"))
    )

    # Every month from the first with demand to as_of's, built lazily (no extra Spark job).
    first = care.select("service_month").unionByName(asked.select("service_month")).agg(F.min("service_month").alias("_m"))
    months = first.select(F.explode(F.sequence(
        F.to_date(F.concat("_m", F.lit("-01"))), F.trunc(F.lit(as_of), "month"), F.expr("interval 1 month"))).alias("_start")
    ).select(F.date_format("_start", "yyyy-MM").alias("service_month"),
             F.least(F.last_day("_start"), F.lit(as_of)).alias("_month_end"))
    # The version in effect at the month's end (valid_from <= end < valid_to); a provider not
    # yet recorded then is not supply.
    end_of_day = F.date_add(F.col("_month_end"), 1).cast("timestamp")
    at_month_end = (
        providers.where(F.col("active")).select("npi", F.col("specialty").alias("_specialty"),
                                                zip3_of(F.col("zip")).alias("_zip3"), "valid_from", "valid_to")
        .join(F.broadcast(months), (F.col("valid_from") < end_of_day)
              & (F.coalesce(F.col("valid_to"), F.lit("9999-12-31").cast("timestamp")) >= end_of_day))
        .where(F.col("_zip3").isNotNull())
    )
    supply = at_month_end.groupBy(
        F.col("_zip3").alias("zip3"), F.col("_specialty").alias("specialty"), "service_month"
    ).agg(F.countDistinct("npi").alias("active_providers"))

    cells = ["zip3", "specialty", "service_month"]
    joined = (
        care.join(asked, cells, "full").join(supply, cells, "full").join(F.broadcast(throughput), "specialty", "left")
        .join(months.select("service_month"), "service_month", "left_semi")
    )
    encounters_n = F.coalesce("encounters", F.lit(0))
    referrals_n = F.coalesce("referrals", F.lit(0))
    demand = encounters_n + referrals_n
    providers_n = F.coalesce("active_providers", F.lit(0))
    capacity = F.round(providers_n * F.col("throughput_per_provider"), RATIO_DIGITS)
    utilisation = ratio(demand, capacity)
    measures = joined.select(
        *cells,
        encounters_n.alias("encounters"),
        referrals_n.alias("referrals"),
        F.coalesce("referrals_leaked", F.lit(0)).alias("referrals_leaked"),
        demand.alias("demand"),
        providers_n.alias("active_providers"),
        "throughput_per_provider",
        capacity.alias("capacity"),
        utilisation.alias("utilisation"),
    )
    return flag_expansion(measures, settings)


def flag_expansion(measures: DataFrame, settings: AdequacySettings) -> DataFrame:
    """Adequacy rows (zip3, demand, active_providers, utilisation; any ``expand_network`` /
    ``expansion_reason`` they carry are replaced) -> the same plus the expansion signal under
    ``settings``, so other thresholds can be tried without recomputing the measures."""
    threshold = settings.utilisation_threshold
    demand, utilisation = F.col("demand"), F.col("utilisation")
    reason = (
        F.when((F.col("zip3") == UNKNOWN_AREA) | (demand < settings.min_demand), F.lit(None).cast("string"))
        .when(F.col("active_providers") == 0, F.lit(REASON_NO_PROVIDER))
        .when(utilisation > threshold, F.lit(f"utilisation above {threshold:g}"))
    )
    kept = measures.drop("expand_network", "expansion_reason")
    return kept.select(*kept.columns, reason.isNotNull().alias("expand_network"), reason.alias("expansion_reason"))
