"""Risk-adjusted provider outcome and cost measures, derived from encounter sequences.

Each measure is built the same way (definitions, sources and reasons: docs/measures.md):

1. *cases* — one row per eligible event with its outcome and case mix
   (:func:`readmission_cases`, :func:`complication_cases`, :func:`length_of_stay_cases`,
   :func:`cost_cases`); only records on file by ``as_of`` count (:func:`recorded_by`);
2. *expected* — the mean outcome of other providers' cases in the same case-mix cell
   (encounter type x age band x ICD-10 category, coarser when a cell has fewer than
   :data:`MIN_CELL_CASES` such cases), so a provider is never its own benchmark
   (:func:`with_expected`);
3. *observed / expected* per provider, shrunk toward 1 by an empirical-Bayes weight whose
   prior variance is estimated from the spread of all providers' ratios
   (:func:`provider_ratios`, :func:`shrink_ratios`);
4. *rank within specialty* (:func:`rank_within_specialty`).

:func:`provider_outcomes` runs all four for every measure; lower ratios are better.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from carelake.curated.column_sources import CLAIMS, ENCOUNTERS, PROVIDERS, ColumnSources
from carelake.curated.features import providers_as_of
from carelake.curated.metrics import RATIO_DIGITS, recorded_by, version_as_of
from carelake.curated.persons import with_person
from carelake.model.persons import ENTERPRISE_TOKEN

FOLLOW_UP_DAYS = 30
# An encounter reaches the facts the day after discharge and stays last up to 10 nights, so a
# readmission inside the follow-up window is on file this many days after the window closes.
RECORDING_LAG_DAYS = 14
WINDOW_DAYS = 365
MIN_CELL_CASES = 30
# CMS planned readmission algorithm, "always planned" diagnoses: radiotherapy (Z51.0),
# maintenance chemotherapy (Z51.1x) and rehabilitation (Z51.89) stays.
PLANNED_DIAGNOSIS_PREFIXES = ("Z51.0", "Z51.1", "Z51.89")
INPATIENT = "inpatient"
AGE_BAND_EDGES = (18, 45, 65, 80)
TAU2_FLOOR = 1e-4  # prior variance never 0: a measure with no visible spread still ranks

BINARY, CONTINUOUS = "binary", "continuous"
# measure -> (kind, case-mix cells from finest to coarsest)
MEASURES: dict[str, tuple[str, tuple[tuple[str, ...], ...]]] = {
    "readmission_30d": (BINARY, (("age_band", "diagnosis_category"), ("age_band",), ())),
    "complication": (BINARY, (("encounter_type", "age_band", "diagnosis_category"), ("encounter_type", "age_band"),
                              ("encounter_type",))),
    "length_of_stay": (CONTINUOUS, (("age_band", "diagnosis_category"), ("age_band",), ())),
    "cost_per_case": (CONTINUOUS, (("encounter_type", "payer_group", "age_band", "diagnosis_category"),
                                   ("encounter_type", "payer_group", "age_band"), ("encounter_type",))),
}

COLUMNS: dict[str, str] = {
    "npi": "National Provider Identifier the cases are attributed to",
    "as_of": "Date the measure is computed for: only records on file by the end of that day count",
    "specialty": "Provider specialty (dim_provider version in effect on as_of)",
    "measure": "readmission_30d, complication, length_of_stay or cost_per_case (docs/measures.md)",
    "cases": "Eligible cases attributed to the provider (the denominator)",
    "observed": "Sum of the outcome over the cases: events, days, or allowed dollars",
    "expected": "Sum of the case-mix expected outcome over the cases (other providers' cases only)",
    "observed_per_case": "observed / cases",
    "expected_per_case": "expected / cases",
    "oe_ratio": "observed / expected: below 1 is better than the case mix predicts",
    "oe_ratio_shrunk": "oe_ratio shrunk toward 1: 1 + shrinkage_weight x (oe_ratio - 1)",
    "shrinkage_weight": "prior_variance / (prior_variance + the ratio's sampling variance), in 0..1",
    "prior_variance": "Between-provider variance of the true ratio, estimated from all providers of the measure",
    "rank_in_specialty": "1 = lowest oe_ratio_shrunk (best) among the specialty's providers with cases",
    "providers_in_specialty": "Providers of the specialty ranked on this measure",
}


def _between(column: Column, first: date, last: date) -> Column:
    return (column >= F.lit(first)) & (column <= F.lit(last))


def is_planned(diagnosis: Column) -> Column:
    """True for a diagnosis of :data:`PLANNED_DIAGNOSIS_PREFIXES` (case and dots as coded)."""
    code = F.upper(F.trim(diagnosis))
    return F.coalesce(F.greatest(*[code.startswith(p) for p in PLANNED_DIAGNOSIS_PREFIXES]), F.lit(False))


def age_band(age: Column) -> Column:
    """Age in years -> ``0-17``, ``18-44``, ``45-64``, ``65-79``, ``80+``; ``unknown`` when null."""
    lo, a, b, hi = AGE_BAND_EDGES
    return (F.when(age.isNull(), "unknown").when(age < lo, f"0-{lo - 1}").when(age < a, f"{lo}-{a - 1}")
            .when(age < b, f"{a}-{b - 1}").when(age < hi, f"{b}-{hi - 1}").otherwise(f"{hi}+"))


def diagnosis_category(code: Column) -> Column:
    """The ICD-10-CM category (the three characters before the dot), ``?`` when missing."""
    return F.coalesce(F.upper(F.substring_index(F.trim(code), ".", 1)), F.lit("?"))


def with_case_mix(encounters: DataFrame, patients: DataFrame, as_of: date) -> DataFrame:
    """Encounter facts + dim_patient (SCD2) -> the same plus ``age_band`` (age at admission from
    the patient version in effect at ``as_of``) and ``diagnosis_category``."""
    birth = version_as_of(patients, "patient_token", as_of).select("patient_token", "birth_year")
    return (encounters.join(birth, "patient_token", "left")
            .withColumn("age_band", age_band(F.year("admit_date") - F.col("birth_year")))
            .withColumn("diagnosis_category", diagnosis_category(F.col("diagnosis_code")))
            .drop("birth_year"))


def _inpatient(encounters: DataFrame) -> DataFrame:
    return encounters.where((F.lower(F.trim("encounter_type")) == INPATIENT) & F.col("discharge_date").isNotNull())


def index_stays(encounters: DataFrame, as_of: date) -> DataFrame:
    """Encounter facts -> the index stays of the 30-day readmission measure at ``as_of``.

    An index stay is an inpatient stay, not itself planned, discharged in the 365 days ending
    ``FOLLOW_UP_DAYS + RECORDING_LAG_DAYS`` before ``as_of`` (so its follow-up is complete and
    on file), that is not a transfer: a stay followed by another inpatient admission of the
    same person on its discharge day, at any hospital, continues there, and the last stay of the
    chain is the index (CMS counts the discharging hospital). The person is
    ``enterprise_patient_token`` (:func:`carelake.curated.persons.with_person`); encounters
    without it are each record's own person."""
    stays = _inpatient(with_person(encounters, None))
    last = as_of - timedelta(days=FOLLOW_UP_DAYS + RECORDING_LAG_DAYS)
    onward = stays.select(F.col(ENTERPRISE_TOKEN).alias("_p"), F.col("admit_date").alias("_a"),
                          F.col("encounter_key").alias("_k"))
    transferred = stays.join(
        onward, (F.col(ENTERPRISE_TOKEN) == F.col("_p")) & (F.col("admit_date") <= F.col("_a"))
        & (F.col("discharge_date") == F.col("_a")) & (F.col("encounter_key") != F.col("_k")), "left_semi")
    return (stays.join(transferred.select("encounter_key"), "encounter_key", "left_anti")
            .where(~is_planned(F.col("diagnosis_code")))
            .where(_between(F.col("discharge_date"), last - timedelta(days=WINDOW_DAYS - 1), last)))


def readmission_cases(encounters: DataFrame, as_of: date) -> DataFrame:
    """Encounter facts (with case mix) -> one row per index stay (:func:`index_stays`) with
    ``outcome`` 1 when the same person (``enterprise_patient_token``) has an unplanned inpatient
    admission 1-30 days after discharge at any hospital on file, else 0, and
    ``readmitted_elsewhere`` 1 when such an admission is at another source system than the
    index stay. Attributed to the discharging NPI."""
    encounters = with_person(encounters, None)
    index = index_stays(encounters, as_of)
    later = (_inpatient(encounters).where(~is_planned(F.col("diagnosis_code")))
             .select(F.col(ENTERPRISE_TOKEN).alias("_p"), F.col("admit_date").alias("_a"),
                     F.col("encounter_key").alias("_k"), F.col("source_system").alias("_s")))
    within = ((F.col(ENTERPRISE_TOKEN) == F.col("_p")) & (F.col("_k") != F.col("encounter_key"))
              & (F.col("_a") > F.col("discharge_date")) & (F.col("_a") <= F.date_add("discharge_date", FOLLOW_UP_DAYS)))
    readmitted = index.join(later, within, "left_semi").select("encounter_key", F.lit(1).alias("_hit"))
    elsewhere = index.join(later, within & ~F.col("_s").eqNullSafe(F.col("source_system")), "left_semi").select(
        "encounter_key", F.lit(1).alias("_elsewhere"))
    return (index.join(readmitted, "encounter_key", "left").join(elsewhere, "encounter_key", "left")
            .withColumn("outcome", F.coalesce("_hit", F.lit(0)).cast("double"))
            .withColumn("readmitted_elsewhere", F.coalesce("_elsewhere", F.lit(0)).cast("int"))
            .drop("_hit", "_elsewhere"))


def _discharged_in_window(encounters: DataFrame, as_of: date) -> DataFrame:
    return encounters.where(_between(F.col("discharge_date"), as_of - timedelta(days=WINDOW_DAYS - 1), as_of))


def complication_cases(encounters: DataFrame, as_of: date) -> DataFrame:
    """Encounter facts -> encounters discharged in the 365 days to ``as_of`` whose complication
    flag is known, ``outcome`` = the flag; a missing flag is unknown, not "no complication"."""
    return (_discharged_in_window(encounters, as_of).where(F.col("complication").isNotNull())
            .withColumn("outcome", F.col("complication").cast("double")))


def length_of_stay_cases(encounters: DataFrame, as_of: date) -> DataFrame:
    """Encounter facts -> unplanned inpatient stays discharged in the 365 days to ``as_of``,
    ``outcome`` = nights (discharge - admit)."""
    return (_discharged_in_window(_inpatient(encounters), as_of).where(~is_planned(F.col("diagnosis_code")))
            .withColumn("outcome", F.datediff("discharge_date", "admit_date").cast("double")))


def payer_group(payer: Column) -> Column:
    """Medicare, Medicaid and Self-Pay as themselves, every other payer ``commercial``."""
    return F.when(payer.isin("Medicare", "Medicaid", "Self-Pay"), payer).otherwise("commercial")


def cost_cases(encounters: DataFrame, claims: DataFrame, as_of: date) -> DataFrame:
    """Encounter and claim facts -> one row per (encounter discharged in the 365 days to
    ``as_of``, billing NPI) with ``outcome`` = the allowed amount of its claims (facility days
    included: the claim carries them), attributed to the NPI on the claim. An encounter with no
    claim has unknown cost and is no case (never a cost of 0)."""
    per_encounter = claims.where(F.col("encounter_key").isNotNull() & F.col("allowed_amount").isNotNull()).groupBy(
        "encounter_key", F.col("npi").alias("_billing_npi")).agg(
        F.sum("allowed_amount").cast("double").alias("outcome"), F.min("payer").alias("_payer"))
    return (_discharged_in_window(encounters, as_of).drop("npi")
            .join(per_encounter, "encounter_key")
            .withColumn("npi", F.col("_billing_npi"))
            .withColumn("payer_group", payer_group(F.col("_payer")))
            .drop("_billing_npi", "_payer"))


def with_expected(cases: DataFrame, levels: tuple[tuple[str, ...], ...], min_cases: int = MIN_CELL_CASES) -> DataFrame:
    """Cases (``npi``, ``outcome``, case-mix columns) -> the same plus ``expected``: the mean
    outcome of *other providers'* cases in the first cell of ``levels`` (finest first) that has
    at least ``min_cases`` of them, else the mean of all other providers' cases."""
    guesses = []
    # Windows, not joins: the cases are computed once however many cells are tried.
    for cell in (*levels, ()):
        every = Window.partitionBy(*cell)
        own = Window.partitionBy(*cell, "npi")
        others = F.count(F.lit(1)).over(every) - F.count(F.lit(1)).over(own)
        others_sum = F.sum("outcome").over(every) - F.sum("outcome").over(own)
        guesses.append(F.when(others >= (min_cases if cell else 1), others_sum / others))
    return cases.withColumn("expected", F.coalesce(*guesses))


def provider_ratios(cases: DataFrame, kind: str) -> DataFrame:
    """Cases with ``expected`` -> per NPI: ``cases``, ``observed``, ``expected``, ``oe_ratio`` and
    ``sampling_variance`` of the ratio (binary: sum e(1-e) / E^2; continuous: sum e^2 x the
    pooled variance of outcome / e - 1, over E^2)."""
    if kind == BINARY:
        case_variance = F.col("expected") * (1 - F.col("expected"))
    elif kind == CONTINUOUS:
        # Costs and stays vary in proportion to their expectation: pool the relative residual.
        relative = F.when(F.col("expected") > 0, F.col("outcome") / F.col("expected") - 1)
        case_variance = F.coalesce(F.var_samp(relative).over(Window.partitionBy()), F.lit(0.0)) * F.col("expected") ** 2
    else:
        raise ValueError(f"kind: expected {BINARY!r} or {CONTINUOUS!r}, found {kind!r}")
    per = cases.where(F.col("expected").isNotNull()).withColumn("_v", case_variance).groupBy("npi").agg(
        F.count(F.lit(1)).alias("cases"), F.sum("outcome").alias("observed"),
        F.sum("expected").alias("expected"), F.sum("_v").alias("_v"))
    return per.select(
        "npi", "cases", "observed", "expected",
        F.when(F.col("expected") > 0, F.col("observed") / F.col("expected")).alias("oe_ratio"),
        F.when(F.col("expected") > 0, F.col("_v") / (F.col("expected") * F.col("expected"))).alias("sampling_variance"),
    )


def shrink_ratios(ratios: DataFrame) -> DataFrame:
    """Per-NPI ratios -> the same plus ``prior_variance`` (tau^2, method of moments over all
    providers: the ``expected``-weighted mean of (ratio - 1)^2 - sampling variance, at least
    :data:`TAU2_FLOOR`),
    ``shrinkage_weight`` = tau^2 / (tau^2 + sampling variance) and ``oe_ratio_shrunk``."""
    # Weighted by expected cases: a provider with E = 0.3 says little about the spread.
    known = F.col("oe_ratio").isNotNull()
    excess = (F.col("oe_ratio") - 1) * (F.col("oe_ratio") - 1) - F.col("sampling_variance")
    everyone = Window.partitionBy()
    moment = F.sum(F.when(known, F.col("expected") * excess)).over(everyone) / F.sum(
        F.when(known, F.col("expected"))).over(everyone)
    tau2 = F.greatest(F.coalesce(moment, F.lit(0.0)), F.lit(TAU2_FLOOR))
    weight = F.col("prior_variance") / (F.col("prior_variance") + F.col("sampling_variance"))
    return (ratios.withColumn("prior_variance", tau2)
            .withColumn("shrinkage_weight", F.when(F.col("oe_ratio").isNotNull(), weight))
            .withColumn("oe_ratio_shrunk", 1 + F.col("shrinkage_weight") * (F.col("oe_ratio") - 1)))


def rank_within_specialty(measure: DataFrame, attributes: DataFrame) -> DataFrame:
    """Per-NPI shrunk ratios + (npi, specialty) -> the same plus ``specialty``,
    ``rank_in_specialty`` (1 = lowest ``oe_ratio_shrunk``; ties by NPI) and
    ``providers_in_specialty``."""
    spec = Window.partitionBy("specialty")
    order = spec.orderBy(F.col("oe_ratio_shrunk").asc_nulls_last(), F.col("npi"))
    ranked = measure.join(attributes.select("npi", "specialty"), "npi", "left")
    return (ranked.withColumn("rank_in_specialty", F.when(F.col("oe_ratio_shrunk").isNotNull(), F.row_number().over(order)))
            .withColumn("providers_in_specialty", F.count("oe_ratio_shrunk").over(spec)))


def measure_cases(encounters: DataFrame, claims: DataFrame, patients: DataFrame, as_of: date,
                  persons: DataFrame | None = None) -> dict[str, DataFrame]:
    """Facts on file by ``as_of`` -> the cases of every measure of :data:`MEASURES`. ``persons``:
    ``patient_enterprise_tokens``, so a readmission at another hospital of the same person counts;
    None: each patient record is its own person."""
    enc = with_person(with_case_mix(recorded_by(encounters, as_of), patients, as_of), persons)
    return {
        "readmission_30d": readmission_cases(enc, as_of),
        "complication": complication_cases(enc, as_of),
        "length_of_stay": length_of_stay_cases(enc, as_of),
        "cost_per_case": cost_cases(enc, recorded_by(claims, as_of), as_of),
    }


def provider_outcomes(encounters: DataFrame, claims: DataFrame, patients: DataFrame, providers: DataFrame,
                      as_of: date, persons: DataFrame | None = None) -> DataFrame:
    """``fact_encounter``, ``fact_claim``, ``dim_patient`` and ``dim_provider`` (all versions), and
    ``patient_enterprise_tokens`` (None: each record its own person) -> one row per (NPI,
    measure) as of ``as_of`` with the columns of :data:`COLUMNS`."""
    attributes = providers_as_of(providers, as_of)
    frames = [measure(name, cases, attributes, as_of)
              for name, cases in measure_cases(encounters, claims, patients, as_of, persons).items()]
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out


def measure(name: str, cases: DataFrame, attributes: DataFrame, as_of: date) -> DataFrame:
    """The cases of measure ``name`` (:data:`MEASURES`) and (npi, specialty) -> its rows of
    :func:`provider_outcomes`."""
    kind, levels = MEASURES[name]
    ratios = shrink_ratios(provider_ratios(with_expected(cases, levels), kind))
    out = rank_within_specialty(ratios, attributes).withColumn("measure", F.lit(name))
    r = RATIO_DIGITS
    return out.select(
        "npi", F.lit(as_of).alias("as_of"), "specialty", "measure", F.col("cases").cast("long").alias("cases"),
        F.round("observed", 2).alias("observed"), F.round("expected", 2).alias("expected"),
        F.round(F.col("observed") / F.col("cases"), r).alias("observed_per_case"),
        F.round(F.col("expected") / F.col("cases"), r).alias("expected_per_case"),
        F.round("oe_ratio", r).alias("oe_ratio"), F.round("oe_ratio_shrunk", r).alias("oe_ratio_shrunk"),
        F.round("shrinkage_weight", r).alias("shrinkage_weight"), F.round("prior_variance", 6).alias("prior_variance"),
        F.col("rank_in_specialty").cast("int").alias("rank_in_specialty"),
        F.col("providers_in_specialty").cast("int").alias("providers_in_specialty"),
    )


# The curated table: one row per NPI and as_of, each measure's figures side by side, so it joins
# provider_features by NPI and ranks on any measure without a pivot.
PER_MEASURE: dict[str, str] = {
    "cases": "Eligible cases attributed to the provider (the denominator)",
    "observed_per_case": "Observed outcome per case: event rate, nights, or allowed dollars",
    "expected_per_case": "Case-mix expected outcome per case (other providers' cases only)",
    "oe_ratio": "Observed / expected: below 1 is better than the case mix predicts",
    "oe_ratio_shrunk": "oe_ratio shrunk toward 1 by the estimated prior (rank on this)",
    "shrinkage_weight": "Weight kept of the raw ratio, in 0..1 (few cases: near 0)",
    "prior_variance": "Between-provider variance of the true ratio, estimated from all providers",
    "rank_in_specialty": "1 = lowest oe_ratio_shrunk (best) among the specialty's providers with cases",
    "providers_in_specialty": "Providers of the specialty ranked on this measure",
}
MEASURE_TITLES = {
    "readmission_30d": "30-day unplanned readmission after an index stay",
    "complication": "complication",
    "length_of_stay": "length of stay of unplanned inpatient stays",
    "cost_per_case": "allowed amount per case, attributed to the billing NPI",
}
TABLE_COLUMNS: dict[str, str] = {
    "npi": COLUMNS["npi"],
    "as_of": COLUMNS["as_of"],
    "specialty": COLUMNS["specialty"],
    **{f"{m}_{c}": f"{MEASURE_TITLES[m]}: {text}; null without cases"
       for m in MEASURES for c, text in PER_MEASURE.items()},
}


# The curated table's columns -> their input columns (the rules: carelake.curated.column_sources).
# Each measure's figures come from its outcome's columns: the case-mix cells, windows and
# attribution only choose which cases are compared (indirect); cases and providers are counts.
OUTCOME_SOURCES: dict[str, tuple[tuple[str, str], ...]] = {
    "readmission_30d": tuple((ENCOUNTERS, c) for c in ("admit_date", "discharge_date", "encounter_type", "diagnosis_code")),
    "complication": ((ENCOUNTERS, "complication"),),
    "length_of_stay": ((ENCOUNTERS, "admit_date"), (ENCOUNTERS, "discharge_date")),
    "cost_per_case": ((CLAIMS, "allowed_amount"),),
}
SOURCES: ColumnSources = {
    "npi": ((ENCOUNTERS, "npi"), (CLAIMS, "npi")),
    "specialty": ((PROVIDERS, "specialty"),),
    **{f"{m}_{c}": OUTCOME_SOURCES[m] for m in MEASURES for c in PER_MEASURE
       if c not in ("cases", "providers_in_specialty")},
}


def provider_outcomes_by_npi(outcomes: DataFrame) -> DataFrame:
    """:func:`provider_outcomes` rows (one per NPI and measure) -> one row per NPI and ``as_of``
    with the columns of :data:`TABLE_COLUMNS` (a measure without cases for the NPI: nulls).
    Cases attributed to no NPI benchmark the others but get no row."""
    picked = [F.max(F.when(F.col("measure") == m, F.col(c))).alias(f"{m}_{c}") for m in MEASURES for c in PER_MEASURE]
    return (outcomes.where(F.col("npi").isNotNull())
            .groupBy("npi", "as_of")
            .agg(F.max("specialty").alias("specialty"), *picked)
            .select(*TABLE_COLUMNS))
