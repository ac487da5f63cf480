"""Network adequacy per patient home area (zip3), specialty and month: the care residents need
against the providers practising there in that month, and when the network must grow.

Unlike :func:`carelake.curated.demand.network_demand_by_zip`, demand is counted where the
patients live (all their encounters and non-cancelled referrals, wherever they were treated),
supply from the providers active in each month (dim_provider history, not today's roster), and
capacity in units of a typical provider's sustained monthly throughput of the specialty. Two
access standards sit beside utilisation: the distance from the area to the nearest active
in-network provider of the specialty, and active providers per 100,000 residents against the
specialty's ratio over all areas (residents from the landed reference ``area_population``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from carelake.config import Config, ConfigError
from carelake.curated.column_sources import (
    AREA_POPULATION,
    ENCOUNTERS,
    PATIENT_SUMMARY,
    PROVIDERS,
    REFERRALS,
    ColumnSources,
    union,
)
from carelake.curated.features import flag_leaked, providers_as_of
from carelake.curated.metrics import RATIO_DIGITS, in_effect_first, in_window, ratio, zip3_of

CANCELLED_STATUS = "cancelled"
COMPLETED_STATUS = "completed"
UNKNOWN_AREA = "unknown"  # patients without a known home zip3: counted, never flagged
REASON_NO_PROVIDER = "no active provider"
REASON_SEPARATOR = "; "
PER_RESIDENTS = 100_000
POPULATION_SCHEMA = "zip3 string, population long"

COLUMNS: dict[str, str] = {
    "zip3": "Patients' home area (Safe Harbor zip3); 'unknown' for patients without one",
    "specialty": "Specialty of the treating provider (its version on the admit date) or requested by the referral",
    "service_month": "Month (yyyy-MM) of the admission or referral; supply is taken at the month's end",
    "encounters": "Encounters of the area's residents with providers of the specialty, in any area",
    "referrals": "Referrals of the area's residents for the specialty, in-network or leaked; cancelled excluded",
    "referrals_leaked": "Of those, leaked: status leaked or sent outside the referring provider's network",
    "leaked_share_3m": "referrals_leaked / referrals over the cell's three months to this one; null without referrals",
    "leaked_share_change": "leaked_share_3m minus the share of the three months before them; null unless both "
    "hold at least 20 referrals",
    "referrals_completed": "Of the area's referrals that month, those completed",
    "completion_days_p50": "Median days from referral to completion (the record time of the completed "
    "referral) over referrals_completed: a wait-time proxy, since the records carry no appointment dates; "
    "null without a completed referral",
    "demand": "encounters + referrals",
    "active_providers": "Providers of the specialty practising in the area and active at the month's end "
    "(dim_provider version in effect then)",
    "throughput_per_provider": "The specialty's sustained monthly throughput of a typical provider: the median "
    "over its providers of each provider's median monthly encounters (months with encounters, to as_of)",
    "capacity": "active_providers x throughput_per_provider",
    "utilisation": "demand / capacity; null without capacity",
    "nearest_provider_km": "Great-circle km from the area's centroid to the practice zip of the nearest provider of the "
    "specialty active at the month's end and in a network (network_id set), in any area; null when none is located",
    "population": "Residents of the area (reference area_population); null when not known",
    "providers_per_100k": "active_providers per 100,000 residents; null without population",
    "network_providers_per_100k": "The specialty's active providers per 100,000 residents over all areas with a "
    "known population, that month: the benchmark of providers_per_100k",
    "expand_network": "True when the area's residents need more than its active providers sustain, or an access "
    "standard is not met (see expansion_reason)",
    "expansion_reason": "Every reason met, '; '-separated in this order: 'no active provider', 'utilisation above "
    "<threshold>', 'nearest provider beyond <km> km', 'providers per 100k below <share> of the network's', "
    "'leaked share up more than <rise>' "
    "(demand of at least curated.adequacy.min_demand); null otherwise",
}


# Each column's input columns (the rules: carelake.curated.column_sources). Distances come from
# the zip centroids of carelake.geo (a library's reference data, not a dataset).
_LEAKED = ((REFERRALS, "status"), (PROVIDERS, "network_id"))
_SUPPLY = ((PROVIDERS, "active"),)
_AREA = ((PATIENT_SUMMARY, "zip3"), (PROVIDERS, "zip"))
_RATIO = union(_SUPPLY, ((AREA_POPULATION, "population"),))
SOURCES: ColumnSources = {
    "zip3": _AREA,
    "specialty": ((PROVIDERS, "specialty"), (REFERRALS, "specialty_requested")),
    "service_month": ((ENCOUNTERS, "admit_date"), (REFERRALS, "referral_date")),
    "referrals_leaked": _LEAKED,
    "leaked_share_3m": _LEAKED,
    "leaked_share_change": _LEAKED,
    "referrals_completed": ((REFERRALS, "status"),),
    "completion_days_p50": ((REFERRALS, "status"), (REFERRALS, "referral_date"), (REFERRALS, "updated_at")),
    "active_providers": _SUPPLY,
    "capacity": _SUPPLY,
    "utilisation": _SUPPLY,
    "nearest_provider_km": _AREA,
    "population": ((AREA_POPULATION, "population"),),
    "providers_per_100k": _RATIO,
    "network_providers_per_100k": _RATIO,
    "expand_network": union(_SUPPLY, _AREA, _RATIO, _LEAKED),
    "expansion_reason": union(_SUPPLY, _AREA, _RATIO, _LEAKED),
}


@dataclass(frozen=True)
class AdequacySettings:
    """Thresholds of the expansion signal (config section ``curated.adequacy``)."""

    # 2.0: the residents need twice what the area's providers deliver at the typical provider's
    # sustained pace. Busier-than-median providers put areas with a normal supply at a median
    # 0.88-1.52 on the generated data, the planted shortage area at 3.65 (docs/measures.md).
    utilisation_threshold: float = 2.0
    # Months with less demand than this are too thin to call a shortage on (a few visits).
    min_demand: int = 5
    # 40 km (about 25 miles): the order of the maximum distances Medicare Advantage sets for
    # specialists in metro counties. Every generated practice zip is within 23 km of its area's
    # centroid, so only an area with no provider of the specialty nearby fails it.
    max_distance_km: float = 40.0
    # An area with fewer than 0.6 x the specialty's providers per 100,000 residents over all
    # areas. Relative, because the generated specialties differ in size (no one absolute ratio
    # fits all of them); the planted shortage area keeps about half its providers.
    min_ratio_share: float = 0.6
    # Six months: about the time it takes to recruit a provider or open a clinic session; the
    # table demand_forecast flags utilisation above utilisation_threshold in these months.
    forecast_horizon_months: int = 6
    # 0.15: residents' referrals leaving the network rose by 15 points of share from one quarter
    # to the next (each with at least MIN_LEAKAGE_REFERRALS); the generated shares sit near
    # 0.2-0.3 with no planted trend, and a quarter's share of 20+ referrals varies by about 0.1.
    leakage_rise: float = 0.15

    @classmethod
    def from_config(cls, config: Config) -> AdequacySettings:
        block, where = config.settings("curated.adequacy", cls.__dataclass_fields__)
        try:
            settings = cls(**{k: type(getattr(cls, k))(v) for k, v in block.items()})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: expected numbers, found {block}") from exc
        if settings.utilisation_threshold <= 0 or settings.min_demand < 0:
            raise ConfigError(f"{where}: expected utilisation_threshold > 0 and min_demand >= 0, found "
                              f"{settings.utilisation_threshold} and {settings.min_demand}")
        if settings.max_distance_km <= 0 or not 0 <= settings.min_ratio_share <= 1:
            raise ConfigError(f"{where}: expected max_distance_km > 0 and 0 <= min_ratio_share <= 1, found "
                              f"{settings.max_distance_km} and {settings.min_ratio_share}")
        if not 0 < settings.leakage_rise <= 1:
            raise ConfigError(f"{where}: expected 0 < leakage_rise <= 1, found {settings.leakage_rise}")
        if settings.forecast_horizon_months < 1:
            raise ConfigError(f"{where}: expected forecast_horizon_months >= 1, found {settings.forecast_horizon_months}")
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
    distances: DataFrame | None = None,
    population: DataFrame | None = None,
) -> DataFrame:
    """``fact_encounter`` (encounter_key, patient_token, npi, admit_date), ``fact_referral``
    (patient_token, referring_npi, referred_to_npi, referral_date, status, specialty_requested),
    ``dim_provider`` (SCD2: npi, specialty, zip, active, network_id, valid_from), patients' home
    zip3 (patient_token, zip3) -> one row per home zip3 x specialty x month from the first month
    with an encounter or referral to ``as_of``'s month (:data:`COLUMNS`).

    ``distances``: (zip3, zip, distance_km) from each home area to each provider practice zip
    (:func:`carelake.geo.area_to_zip_distances`); without it ``nearest_provider_km`` is null.
    ``population``: (zip3, population) residents per area (:func:`read_area_population`);
    without it the ratio columns are null. Neither standard is judged on a null.

    A cell is kept when it has demand or active providers. ``expand_network`` is set when
    demand >= ``settings.min_demand`` and any reason of :func:`flag_expansion` is met.
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

    status = F.lower(F.trim("status"))
    live = referrals.where(
        in_window(F.col("referral_date"), as_of, None) & ~F.coalesce(status == CANCELLED_STATUS, F.lit(False))
    )
    # A completed referral's record time is when it was completed: referral to completion is the
    # nearest the records come to a wait (there are no appointment dates).
    completion_days = F.when(status == COMPLETED_STATUS, F.datediff(F.to_date("updated_at"), F.col("referral_date")))
    asked = (
        flag_leaked(live, providers_as_of(providers, as_of))
        .join(home, "patient_token", "left")
        .groupBy(area, F.col("specialty_requested").alias("specialty"), month("referral_date", "yyyy-MM").alias("service_month"))
        .agg(F.count(F.lit(1)).alias("referrals"), F.count(F.when(F.col("leaked"), 1)).alias("referrals_leaked"),
             F.count(completion_days).alias("referrals_completed"),
             F.percentile(completion_days, 0.5).alias("completion_days_p50"))
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
        providers.where(F.col("active")).select("npi", F.col("specialty").alias("_specialty"), F.col("zip").alias("_zip"),
                                                zip3_of(F.col("zip")).alias("_zip3"), "network_id", "valid_from", "valid_to")
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
    if distances is not None:
        joined = joined.join(_nearest_provider(at_month_end, distances), cells, "left")
    else:
        joined = joined.withColumn("nearest_provider_km", F.lit(None).cast("double"))
    if population is not None:
        residents = F.broadcast(population.select("zip3", F.col("population").cast("long")))
        joined = (joined.join(residents, "zip3", "left")
                  .join(F.broadcast(_network_ratio(supply, residents)), ["specialty", "service_month"], "left"))
    else:
        joined = joined.select("*", F.lit(None).cast("long").alias("population"),
                               F.lit(None).cast("double").alias("network_providers_per_100k"))
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
        *leakage_trend(referrals_n, F.coalesce("referrals_leaked", F.lit(0))),
        F.coalesce("referrals_completed", F.lit(0)).alias("referrals_completed"),
        "completion_days_p50",
        demand.alias("demand"),
        providers_n.alias("active_providers"),
        "throughput_per_provider",
        capacity.alias("capacity"),
        utilisation.alias("utilisation"),
        "nearest_provider_km",
        "population",
        ratio(providers_n * PER_RESIDENTS, F.col("population")).alias("providers_per_100k"),
        "network_providers_per_100k",
    )
    return flag_expansion(measures, settings)


MIN_LEAKAGE_REFERRALS = 20  # fewer referrals in a quarter: its leaked share is too noisy to trend


def leakage_trend(referrals: Column, leaked: Column) -> list[Column]:
    """``leaked_share_3m`` and ``leaked_share_change`` of each cell-month: windows over the
    cell's months by number (a month a cell lacks has no referrals), so gaps do not shift them."""
    start = F.to_date(F.concat(F.col("service_month"), F.lit("-01")))
    cell = Window.partitionBy("zip3", "specialty").orderBy(F.year(start) * 12 + F.month(start))
    recent, before = cell.rangeBetween(-2, 0), cell.rangeBetween(-5, -3)
    share = ratio(F.sum(leaked).over(recent), F.sum(referrals).over(recent))
    prior = ratio(F.sum(leaked).over(before), F.sum(referrals).over(before))
    enough = (F.sum(referrals).over(recent) >= MIN_LEAKAGE_REFERRALS) & (F.sum(referrals).over(before) >= MIN_LEAKAGE_REFERRALS)
    return [share.alias("leaked_share_3m"), F.when(enough, F.round(share - prior, RATIO_DIGITS)).alias("leaked_share_change")]


def _nearest_provider(at_month_end: DataFrame, distances: DataFrame) -> DataFrame:
    """Active provider versions at each month's end (npi, _specialty, _zip, network_id,
    service_month) and area-to-zip distances -> zip3 x specialty x month with the distance to
    the nearest in-network one (a provider with a network_id: flag_leaked treats a receiver
    without one as outside the network)."""
    in_network = at_month_end.where(F.col("network_id").isNotNull() & F.col("_zip").isNotNull())
    km = F.broadcast(distances.select("zip3", F.col("zip").alias("_zip"), "distance_km"))
    return in_network.join(km, "_zip").groupBy(
        "zip3", F.col("_specialty").alias("specialty"), "service_month"
    ).agg(F.min("distance_km").alias("nearest_provider_km"))


def _network_ratio(supply: DataFrame, residents: DataFrame) -> DataFrame:
    """Per specialty and month, active providers per 100,000 residents over the areas with a
    known population (every such area's residents in the denominator, with or without a
    provider of the specialty)."""
    everyone = residents.agg(F.sum("population").alias("_residents"))
    counted = supply.join(residents.select("zip3"), "zip3", "left_semi").groupBy("specialty", "service_month").agg(
        F.sum("active_providers").alias("_providers"))
    return counted.crossJoin(everyone).select(
        "specialty", "service_month",
        ratio(F.col("_providers") * PER_RESIDENTS, F.col("_residents")).alias("network_providers_per_100k"))


def flag_expansion(measures: DataFrame, settings: AdequacySettings) -> DataFrame:
    """Adequacy rows (zip3, demand, active_providers, utilisation, nearest_provider_km,
    providers_per_100k, network_providers_per_100k, leaked_share_change; any ``expand_network`` /
    ``expansion_reason`` they carry are replaced) -> the same plus the expansion signal under
    ``settings``, so other thresholds can be tried without recomputing the measures.

    ``expansion_reason`` lists every reason met (see :data:`COLUMNS`), none for the unknown
    area or demand below ``settings.min_demand``; a null measure meets no reason."""
    threshold, km, share = settings.utilisation_threshold, settings.max_distance_km, settings.min_ratio_share
    reasons = [
        (F.col("active_providers") == 0, REASON_NO_PROVIDER),
        (F.col("utilisation") > threshold, f"utilisation above {threshold:g}"),
        (F.col("nearest_provider_km") > km, f"nearest provider beyond {km:g} km"),
        (F.col("providers_per_100k") < share * F.col("network_providers_per_100k"),
         f"providers per 100k below {share:g} of the network's"),
        (F.col("leaked_share_change") > settings.leakage_rise, f"leaked share up more than {settings.leakage_rise:g}"),
    ]
    # concat_ws skips nulls: each reason is its text when met, else null.
    met = F.concat_ws(REASON_SEPARATOR, *(F.when(condition, F.lit(text)) for condition, text in reasons))
    judged = (F.col("zip3") != UNKNOWN_AREA) & (F.col("demand") >= settings.min_demand)
    reason = F.when(judged & (met != ""), met)
    kept = measures.drop("expand_network", "expansion_reason")
    return kept.select(*kept.columns, reason.isNotNull().alias("expand_network"), reason.alias("expansion_reason"))


def read_area_population(spark: SparkSession, uri: str) -> DataFrame | None:
    """The reference file of residents per area (CSV with a header: zip3, population; a few
    rows, one per area) -> (zip3, population); None when there is no file at ``uri``. A row
    that is not a 3-digit zip3 with a positive whole population, or a zip3 given twice, is an
    error naming the file and the row: a wrong denominator would skew every ratio."""
    try:
        rows = spark.read.csv(uri, header=True, schema="zip3 string, population string").collect()
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc) or "Path does not exist" in str(exc):
            return None
        raise
    seen: set[str] = set()
    parsed = []
    for line, row in enumerate(rows, start=2):
        zip3, count = (row["zip3"] or "").strip(), (row["population"] or "").strip()
        if not (len(zip3) == 3 and zip3.isdigit() and count.isdigit() and int(count) > 0) or zip3 in seen:
            raise ValueError(f"{uri}, line {line}: expected a new 3-digit zip3 and a positive whole population, "
                             f"found zip3={row['zip3']!r}, population={row['population']!r}")
        seen.add(zip3)
        parsed.append((zip3, int(count)))
    return spark.createDataFrame(parsed, POPULATION_SCHEMA)
