"""The provider feature store: one row per NPI as of a date, from the facts, CRM and dim_provider.

:func:`provider_features` is a pure function of its inputs and ``as_of``: only events on/before
``as_of`` that the source had recorded by the end of that day count (``updated_at``, see
:func:`~carelake.curated.metrics.recorded_by`), and the provider's attributes are those of the
dim_provider version in effect then, so calling it for several dates builds point-in-time
training sets whose rows equal what the feature store held on each date.
"""

from __future__ import annotations

from datetime import date

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from carelake.curated.column_sources import (
    CLAIMS,
    CRM,
    ENCOUNTERS,
    PROCEDURES,
    PROVIDERS,
    REFERRALS,
    ColumnSources,
)
from carelake.curated.metrics import (
    RATIO_DIGITS,
    diagnosis_chapter,
    in_window,
    index_score,
    ratio,
    recorded_by,
    shrunk_rate,
    version_as_of,
    wilson_lower,
    wilson_upper,
    zip3_of,
)

MONEY = "decimal(18,2)"
SHORT_DAYS, LONG_DAYS = 90, 365
SATISFACTION_MIN, SATISFACTION_MAX = 1, 5
NEUTRAL_SATISFACTION_SCORE = 0.5  # used when a provider's encounters carry no survey answer
LEAKED_STATUS = "leaked"

COLUMNS: dict[str, str] = {
    "npi": "National Provider Identifier (the provider's natural key)",
    "as_of": "Date the features are computed for: only events on/before it, recorded by its end, count",
    "specialty": "Provider specialty (dim_provider version in effect on as_of)",
    "zip": "Practice ZIP code of the provider",
    "zip3": "Service area: first three digits of the practice ZIP",
    "network_id": "Provider network the provider belongs to",
    "employer_id": "Employer (health system) of the provider",
    "active": "Provider is active in the source system",
    "encounters_90d": "Encounters admitted in the 90 days to as_of",
    "encounters_365d": "Encounters admitted in the 365 days to as_of",
    "patients_90d": "Distinct patients with an encounter in the 90 days to as_of",
    "patients_365d": "Distinct patients with an encounter in the 365 days to as_of",
    "procedures_90d": "Procedures performed in the 90 days to as_of",
    "procedures_365d": "Procedures performed in the 365 days to as_of",
    "cost_per_case": "Mean encounter cost (sum of procedure charges) over the 365-day encounters",
    "expected_cost_per_case": "Mean over the provider's encounters of the specialty's mean cost for the "
    "same encounter type x ICD-10 chapter (case mix)",
    "cost_index": "cost_per_case / expected_cost_per_case: below 1 is cheaper than the case mix predicts",
    "risk_adjusted_cost_per_case": "cost_index x the specialty's mean cost per case",
    "claims_365d": "Claims with a service date in the 365 days to as_of",
    "billed_365d": "Billed amount of those claims",
    "allowed_365d": "Allowed amount of those claims",
    "paid_365d": "Paid amount of those claims",
    "paid_billed_ratio": "paid_365d / billed_365d",
    "collection_rate": "paid_365d / allowed_365d: share of the contractual amount collected",
    "denied_claims_365d": "Claims with status denied",
    "denial_rate": "denied_claims_365d / claims_365d",
    "readmissions_365d": "Encounters flagged readmitted within 30 days",
    "readmission_rate": "readmissions_365d / encounters_365d",
    "readmission_rate_shrunk": "Empirical-Bayes readmission rate: (readmissions + 20 x specialty rate) / "
    "(encounters + 20)",
    "readmission_rate_wilson_low": "Lower bound of the 95% Wilson interval of the readmission rate",
    "readmission_rate_wilson_high": "Upper bound of the 95% Wilson interval of the readmission rate",
    "complications_365d": "Encounters flagged with a complication",
    "complication_rate": "complications_365d / encounters_365d",
    "complication_rate_shrunk": "Empirical-Bayes complication rate (prior weight 20 encounters, toward the "
    "specialty rate)",
    "complication_rate_wilson_low": "Lower bound of the 95% Wilson interval of the complication rate",
    "complication_rate_wilson_high": "Upper bound of the 95% Wilson interval of the complication rate",
    "avg_satisfaction": "Mean satisfaction score (1-5) of the 365-day encounters",
    "avg_length_of_stay_days": "Mean length of stay (discharge - admit, days) of the 365-day encounters",
    "top_procedure_code": "Most frequent procedure code in the 365 days (ties: lowest code)",
    "top_procedure_share": "Share of the provider's 365-day procedures that are top_procedure_code",
    "procedure_hhi": "Herfindahl-Hirschman index of the procedure mix: sum of squared code shares "
    "(1 = a single code)",
    "referrals_in_365d": "Referrals received (referred_to_npi) in the 365 days",
    "referrals_out_365d": "Referrals sent (referring_npi) in the 365 days",
    "referrals_leaked_365d": "Referrals sent with status leaked or to a provider outside the sender's network",
    "referral_leakage_rate": "referrals_leaked_365d / referrals_out_365d",
    "marketing_spend_365d": "CRM marketing spend on the provider in the 365 days",
    "contacts_365d": "CRM contacts with the provider in the 365 days",
    "opportunity_value_365d": "CRM opportunity value in the 365 days",
    "referred_in_revenue_365d": "Paid amount of the provider's 365-day claims for patients referred to the "
    "provider on/before the service date",
    "marketing_roi": "referred_in_revenue_365d / marketing_spend_365d",
    "composite_score": "Cost-effectiveness and quality score in 0..1 (see provider_features); null without "
    "encounters in the 365 days",
}

# The input columns whose values each feature is computed from (its direct column lineage, as
# ``<zone>/<table>``, column): carelake.lineage sends these with the aggregates stage, because the
# stage's localCheckpoint cuts the plans the OpenLineage Spark listener reads. Counts of rows
# (encounters_90d, ...) and the as_of literal have no input column. Kept beside the code that
# computes them (the rules: carelake.curated.column_sources).
_ENC, _PROC, _CLM, _REF, _CRM, _PROV = ENCOUNTERS, PROCEDURES, CLAIMS, REFERRALS, CRM, PROVIDERS
_RATE_INPUTS = {"readmission": "readmitted_30d", "complication": "complication"}
SOURCES: ColumnSources = {
    "npi": ((_PROV, "npi"),),
    **{c: ((_PROV, c),) for c in ("specialty", "zip", "network_id", "employer_id", "active")},
    "zip3": ((_PROV, "zip"),),
    "patients_90d": ((_ENC, "patient_token"),),
    "patients_365d": ((_ENC, "patient_token"),),
    "cost_per_case": ((_ENC, "encounter_cost"),),
    "expected_cost_per_case": ((_ENC, "encounter_cost"),),
    "cost_index": ((_ENC, "encounter_cost"),),
    "risk_adjusted_cost_per_case": ((_ENC, "encounter_cost"),),
    "billed_365d": ((_CLM, "billed_amount"),),
    "allowed_365d": ((_CLM, "allowed_amount"),),
    "paid_365d": ((_CLM, "paid_amount"),),
    "paid_billed_ratio": ((_CLM, "paid_amount"), (_CLM, "billed_amount")),
    "collection_rate": ((_CLM, "paid_amount"), (_CLM, "allowed_amount")),
    "denied_claims_365d": ((_CLM, "is_denied"),),
    "denial_rate": ((_CLM, "is_denied"),),
    **{f"{kind}s_365d": ((_ENC, column),) for kind, column in _RATE_INPUTS.items()},
    **{f"{kind}_rate{suffix}": ((_ENC, column),) for kind, column in _RATE_INPUTS.items()
       for suffix in ("", "_shrunk", "_wilson_low", "_wilson_high")},
    "avg_satisfaction": ((_ENC, "satisfaction_score"),),
    "avg_length_of_stay_days": ((_ENC, "length_of_stay_days"),),
    "top_procedure_code": ((_PROC, "procedure_code"),),
    "top_procedure_share": ((_PROC, "procedure_code"),),
    "procedure_hhi": ((_PROC, "procedure_code"),),
    "referrals_leaked_365d": ((_REF, "status"), (_PROV, "network_id")),
    "referral_leakage_rate": ((_REF, "status"), (_PROV, "network_id")),
    "marketing_spend_365d": ((_CRM, "marketing_spend"),),
    "contacts_365d": ((_CRM, "contacts"),),
    "opportunity_value_365d": ((_CRM, "opportunity_value"),),
    "referred_in_revenue_365d": ((_CLM, "paid_amount"),),
    "marketing_roi": ((_CLM, "paid_amount"), (_CRM, "marketing_spend")),
    "composite_score": (
        (_ENC, "encounter_cost"), (_ENC, "readmitted_30d"), (_ENC, "complication"), (_ENC, "satisfaction_score"),
    ),
}


def providers_as_of(providers: DataFrame, as_of: date) -> DataFrame:
    """dim_provider (SCD2) -> one row per NPI of the version in effect at the end of ``as_of``
    (see :func:`version_as_of`): npi, specialty, zip, zip3, network_id, employer_id, active."""
    return version_as_of(providers, "npi", as_of).select(
        "npi", "specialty", "zip", zip3_of(F.col("zip")).alias("zip3"), "network_id", "employer_id", "active"
    )


def expand_to_specialties(scope: DataFrame, attributes: DataFrame) -> DataFrame:
    """NPIs in ``scope`` -> every NPI of their specialties (specialty benchmarks need all peers)."""
    specialties = attributes.join(scope.select("npi"), "npi", "left_semi").select("specialty").distinct()
    return attributes.join(specialties, attributes["specialty"].eqNullSafe(specialties["specialty"]), "left_semi").select(
        "npi"
    )


def _money(column: Column) -> Column:
    return F.coalesce(column, F.lit(0)).cast(MONEY)


def _encounter_features(encounters: DataFrame, attributes: DataFrame, as_of: date) -> DataFrame:
    window = in_window(F.col("admit_date"), as_of, LONG_DAYS)
    short = in_window(F.col("admit_date"), as_of, SHORT_DAYS)
    recent = (
        encounters.where(window)
        .join(attributes.select("npi", "specialty"), "npi")
        .withColumn("_cell", F.concat_ws("|", F.coalesce("encounter_type", F.lit("?")), diagnosis_chapter(F.col("diagnosis_code"))))
        .withColumn("_short", short)
    )
    cell = Window.partitionBy("specialty", "_cell")
    specialty = Window.partitionBy("specialty")
    with_expected = recent.withColumn("_expected", F.avg("encounter_cost").over(cell)).withColumn(
        "_specialty_cost", F.avg("encounter_cost").over(specialty)
    )
    per_npi = with_expected.groupBy("npi", "specialty").agg(
        F.count(F.lit(1)).alias("encounters_365d"),
        F.count(F.when(F.col("_short"), 1)).alias("encounters_90d"),
        F.countDistinct("patient_token").alias("patients_365d"),
        F.countDistinct(F.when(F.col("_short"), F.col("patient_token"))).alias("patients_90d"),
        F.avg("encounter_cost").alias("_cost"),
        F.avg("_expected").alias("_expected"),
        F.first("_specialty_cost").alias("_specialty_cost"),
        F.sum("readmitted_30d").alias("readmissions_365d"),
        F.sum("complication").alias("complications_365d"),
        F.avg("satisfaction_score").alias("_satisfaction"),
        F.avg("length_of_stay_days").alias("_los"),
    )
    # Specialty event rates pooled over all its encounters: the shrinkage prior.
    rates = per_npi.withColumn(
        "_spec_readmission", F.sum("readmissions_365d").over(specialty) / F.sum("encounters_365d").over(specialty)
    ).withColumn("_spec_complication", F.sum("complications_365d").over(specialty) / F.sum("encounters_365d").over(specialty))
    cost_index = F.col("_cost").cast("double") / F.col("_expected").cast("double")
    return rates.select(
        "npi", "encounters_90d", "encounters_365d", "patients_90d", "patients_365d",
        F.col("_cost").cast(MONEY).alias("cost_per_case"),
        F.col("_expected").cast(MONEY).alias("expected_cost_per_case"),
        F.round(F.when(F.col("_expected") != 0, cost_index), RATIO_DIGITS).alias("cost_index"),
        F.round(F.when(F.col("_expected") != 0, cost_index * F.col("_specialty_cost").cast("double")), 2).alias(
            "risk_adjusted_cost_per_case"
        ),
        "readmissions_365d",
        ratio(F.col("readmissions_365d"), F.col("encounters_365d")).alias("readmission_rate"),
        shrunk_rate(F.col("readmissions_365d"), F.col("encounters_365d"), F.col("_spec_readmission")).alias(
            "readmission_rate_shrunk"
        ),
        wilson_lower(F.col("readmissions_365d"), F.col("encounters_365d")).alias("readmission_rate_wilson_low"),
        wilson_upper(F.col("readmissions_365d"), F.col("encounters_365d")).alias("readmission_rate_wilson_high"),
        "complications_365d",
        ratio(F.col("complications_365d"), F.col("encounters_365d")).alias("complication_rate"),
        shrunk_rate(F.col("complications_365d"), F.col("encounters_365d"), F.col("_spec_complication")).alias(
            "complication_rate_shrunk"
        ),
        wilson_lower(F.col("complications_365d"), F.col("encounters_365d")).alias("complication_rate_wilson_low"),
        wilson_upper(F.col("complications_365d"), F.col("encounters_365d")).alias("complication_rate_wilson_high"),
        F.round("_satisfaction", RATIO_DIGITS).alias("avg_satisfaction"),
        F.round("_los", RATIO_DIGITS).alias("avg_length_of_stay_days"),
        "_spec_readmission",
        "_spec_complication",
    )


def _procedure_features(procedures: DataFrame, as_of: date) -> DataFrame:
    window = in_window(F.col("procedure_date"), as_of, LONG_DAYS)
    short = in_window(F.col("procedure_date"), as_of, SHORT_DAYS)
    per_code = (
        procedures.where(window)
        .groupBy("npi", "procedure_code")
        .agg(F.count(F.lit(1)).alias("_n"), F.count(F.when(short, 1)).alias("_n_short"))
        .withColumn("_total", F.sum("_n").over(Window.partitionBy("npi")))
        .withColumn("_share", F.col("_n") / F.col("_total"))
    )
    top = Window.partitionBy("npi").orderBy(F.col("_n").desc(), F.col("procedure_code").asc())
    return (
        per_code.withColumn("_top", F.row_number().over(top) == 1)
        .groupBy("npi")
        .agg(
            F.sum("_n_short").alias("procedures_90d"),
            F.sum("_n").alias("procedures_365d"),
            F.max(F.when(F.col("_top"), F.col("procedure_code"))).alias("top_procedure_code"),
            F.round(F.max(F.when(F.col("_top"), F.col("_share"))), RATIO_DIGITS).alias("top_procedure_share"),
            F.round(F.sum(F.col("_share") * F.col("_share")), RATIO_DIGITS).alias("procedure_hhi"),
        )
    )


def _claim_features(claims: DataFrame, referrals: DataFrame, as_of: date) -> DataFrame:
    recent = claims.where(in_window(F.col("service_date"), as_of, LONG_DAYS))
    referred = referrals.where(in_window(F.col("referral_date"), as_of, None)).select(
        F.col("referred_to_npi").alias("_to"), F.col("patient_token").alias("_patient"), "referral_date"
    )
    # A claim counts as referred-in revenue when its patient was referred to this provider first.
    referred_claims = recent.join(
        referred,
        (F.col("npi") == F.col("_to")) & (F.col("patient_token") == F.col("_patient"))
        & (F.col("referral_date") <= F.col("service_date")),
        "left_semi",
    ).groupBy("npi").agg(F.sum("paid_amount").alias("_referred_revenue"))
    totals = recent.groupBy("npi").agg(
        F.count(F.lit(1)).alias("claims_365d"),
        F.sum("billed_amount").alias("_billed"),
        F.sum("allowed_amount").alias("_allowed"),
        F.sum("paid_amount").alias("_paid"),
        F.sum("is_denied").alias("denied_claims_365d"),
    )
    return totals.join(referred_claims, "npi", "full").select(
        "npi",
        F.coalesce("claims_365d", F.lit(0)).alias("claims_365d"),
        _money(F.col("_billed")).alias("billed_365d"),
        _money(F.col("_allowed")).alias("allowed_365d"),
        _money(F.col("_paid")).alias("paid_365d"),
        ratio(F.col("_paid"), F.col("_billed")).alias("paid_billed_ratio"),
        ratio(F.col("_paid"), F.col("_allowed")).alias("collection_rate"),
        F.coalesce("denied_claims_365d", F.lit(0)).alias("denied_claims_365d"),
        ratio(F.col("denied_claims_365d"), F.col("claims_365d")).alias("denial_rate"),
        _money(F.col("_referred_revenue")).alias("referred_in_revenue_365d"),
    )


def flag_leaked(referrals: DataFrame, attributes: DataFrame) -> DataFrame:
    """Referral facts -> the same plus ``leaked`` (boolean): status ``leaked``, or sent to a
    provider outside the referring provider's network (an unknown receiver counts as outside).
    ``attributes``: npi and network_id of every provider (e.g. :func:`providers_as_of`)."""
    networks = attributes.select("npi", "network_id")
    sender = networks.select(F.col("npi").alias("_from"), F.col("network_id").alias("_from_net"))
    receiver = networks.select(F.col("npi").alias("_to"), F.col("network_id").alias("_to_net"))
    return (
        referrals.join(sender, F.col("referring_npi") == F.col("_from"), "left")
        .join(receiver, F.col("referred_to_npi") == F.col("_to"), "left")
        .withColumn(
            "leaked",
            F.coalesce(F.lower(F.trim("status")) == LEAKED_STATUS, F.lit(False))
            | ~F.col("_from_net").eqNullSafe(F.col("_to_net")),
        )
        .drop("_from", "_from_net", "_to", "_to_net")
    )


def _referral_features(referrals: DataFrame, attributes: DataFrame, as_of: date) -> DataFrame:
    recent = referrals.where(in_window(F.col("referral_date"), as_of, LONG_DAYS))
    out = (
        flag_leaked(recent, attributes)
        .groupBy(F.col("referring_npi").alias("npi"))
        .agg(F.count(F.lit(1)).alias("referrals_out_365d"), F.count(F.when(F.col("leaked"), 1)).alias("referrals_leaked_365d"))
    )
    received = recent.groupBy(F.col("referred_to_npi").alias("npi")).agg(F.count(F.lit(1)).alias("referrals_in_365d"))
    return received.join(out, "npi", "full").where(F.col("npi").isNotNull())


def _crm_features(crm: DataFrame, as_of: date) -> DataFrame:
    return (
        crm.where(in_window(F.col("activity_date"), as_of, LONG_DAYS))
        .groupBy("npi")
        .agg(
            F.sum("marketing_spend").alias("_spend"),
            F.sum("contacts").alias("_contacts"),
            F.sum("opportunity_value").alias("_opportunity"),
        )
    )


def composite_score(cost_index: Column, readmission_ratio: Column, complication_ratio: Column, satisfaction: Column) -> Column:
    """0.4 x cost + 0.2 x readmission + 0.2 x complication + 0.2 x satisfaction sub-scores, rounded.

    cost = :func:`index_score` of the cost index (0.5, as expected, when no case has a cost);
    readmission / complication =
    :func:`index_score` of the shrunk rate over the specialty rate (1 when the specialty has no
    such events); satisfaction = (mean score - 1) / 4, or 0.5 without survey answers."""
    sat = F.coalesce(
        (satisfaction - F.lit(SATISFACTION_MIN)) / F.lit(SATISFACTION_MAX - SATISFACTION_MIN),
        F.lit(NEUTRAL_SATISFACTION_SCORE),
    )
    return F.round(
        F.lit(0.4) * F.coalesce(index_score(cost_index), F.lit(0.5))
        + F.lit(0.2) * F.coalesce(index_score(readmission_ratio), F.lit(1.0))
        + F.lit(0.2) * F.coalesce(index_score(complication_ratio), F.lit(1.0))
        + F.lit(0.2) * sat,
        RATIO_DIGITS,
    )


def provider_features(
    encounters: DataFrame,
    procedures: DataFrame,
    claims: DataFrame,
    referrals: DataFrame,
    crm: DataFrame,
    providers: DataFrame,
    as_of: date,
    scope: DataFrame | None = None,
) -> DataFrame:
    """Facts, CRM activity and dim_provider -> one row per NPI as of ``as_of`` (:data:`COLUMNS`).

    In: ``fact_encounter``, ``fact_procedure``, ``fact_claim``, ``fact_referral``, processed
    ``crm_activity`` and ``dim_provider`` (all versions). Only events on/before ``as_of`` count,
    and, of an input with a record time (``updated_at``), only the rows recorded by then;
    counts use the 90 / 365 days ending on ``as_of``, every rate and amount the 365 days.
    ``scope`` (a DataFrame with ``npi``), when given, limits the output to the providers of the
    specialties of those NPIs; specialty benchmarks are exact because whole specialties are kept.

    Case mix: the expected cost of an encounter is the mean cost of the specialty's encounters of
    the same type and ICD-10 chapter; ``cost_index`` = observed / expected mean cost.
    Small volumes: readmission and complication rates are also given shrunk toward the specialty
    rate with a prior weight of 20 encounters, and with 95% Wilson bounds.
    ``composite_score`` (0..1, higher is better, within-specialty comparable) =
    0.4 x clamp(1.5 - cost_index, 0, 1)
    + 0.2 x clamp(1.5 - readmission_rate_shrunk / specialty readmission rate, 0, 1)
    + 0.2 x clamp(1.5 - complication_rate_shrunk / specialty complication rate, 0, 1)
    + 0.2 x (avg_satisfaction - 1) / 4; see :func:`composite_score`.
    """
    # What the sources had recorded by as_of: a claim adjudicated or a stay filed later was unknown.
    encounters, claims, referrals, crm = (recorded_by(frame, as_of) for frame in (encounters, claims, referrals, crm))
    attributes = providers_as_of(providers, as_of)
    if scope is not None:
        npis = expand_to_specialties(scope, attributes)
        attributes = attributes.join(npis, "npi", "left_semi")
        encounters = encounters.join(npis, "npi", "left_semi")
        procedures = procedures.join(npis, "npi", "left_semi")
        claims = claims.join(npis, "npi", "left_semi")
        crm = crm.join(npis, "npi", "left_semi")
        in_scope = npis.select(F.col("npi").alias("_scope"))
        referrals = referrals.join(
            in_scope, (F.col("referring_npi") == F.col("_scope")) | (F.col("referred_to_npi") == F.col("_scope")), "left_semi"
        )
    lookup = providers_as_of(providers, as_of)
    joined = (
        attributes.join(_encounter_features(encounters, attributes, as_of), "npi", "left")
        .join(_procedure_features(procedures, as_of), "npi", "left")
        .join(_claim_features(claims, referrals, as_of), "npi", "left")
        .join(_referral_features(referrals, lookup, as_of), "npi", "left")
        .join(_crm_features(crm, as_of), "npi", "left")
    )
    zero = F.lit(0)
    return joined.select(
        "npi", F.lit(as_of).alias("as_of"), "specialty", "zip", "zip3", "network_id", "employer_id", "active",
        *[F.coalesce(c, zero).alias(c) for c in (
            "encounters_90d", "encounters_365d", "patients_90d", "patients_365d", "procedures_90d", "procedures_365d",
        )],
        "cost_per_case", "expected_cost_per_case", "cost_index", "risk_adjusted_cost_per_case",
        F.coalesce("claims_365d", zero).alias("claims_365d"),
        *[_money(F.col(c)).alias(c) for c in ("billed_365d", "allowed_365d", "paid_365d")],
        "paid_billed_ratio", "collection_rate",
        F.coalesce("denied_claims_365d", zero).alias("denied_claims_365d"), "denial_rate",
        F.coalesce("readmissions_365d", zero).cast("long").alias("readmissions_365d"),
        "readmission_rate", "readmission_rate_shrunk", "readmission_rate_wilson_low", "readmission_rate_wilson_high",
        F.coalesce("complications_365d", zero).cast("long").alias("complications_365d"),
        "complication_rate", "complication_rate_shrunk", "complication_rate_wilson_low", "complication_rate_wilson_high",
        "avg_satisfaction", "avg_length_of_stay_days", "top_procedure_code", "top_procedure_share", "procedure_hhi",
        *[F.coalesce(c, zero).alias(c) for c in ("referrals_in_365d", "referrals_out_365d", "referrals_leaked_365d")],
        ratio(F.col("referrals_leaked_365d"), F.col("referrals_out_365d")).alias("referral_leakage_rate"),
        _money(F.col("_spend")).alias("marketing_spend_365d"),
        F.coalesce("_contacts", zero).cast("long").alias("contacts_365d"),
        _money(F.col("_opportunity")).alias("opportunity_value_365d"),
        _money(F.col("referred_in_revenue_365d")).alias("referred_in_revenue_365d"),
        ratio(F.col("referred_in_revenue_365d"), F.col("_spend")).alias("marketing_roi"),
        F.when(
            F.col("encounters_365d") > 0,
            composite_score(
                F.col("cost_index"),
                F.when(F.col("_spec_readmission") > 0, F.col("readmission_rate_shrunk") / F.col("_spec_readmission")),
                F.when(F.col("_spec_complication") > 0, F.col("complication_rate_shrunk") / F.col("_spec_complication")),
                F.col("avg_satisfaction"),
            ),
        ).alias("composite_score"),
    )
