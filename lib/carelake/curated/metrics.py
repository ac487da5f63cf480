"""Column expressions the curated aggregates share: event windows, safe ratios, small-volume
corrections (empirical-Bayes shrinkage, Wilson bounds) and the 0..1 sub-scores of the
composite scores.

Ratios are rounded (:data:`RATIO_DIGITS`): a double summed in another order can differ in its
last bits, and an incremental rebuild compares fresh rows with stored ones to merge only real
changes.
"""

from __future__ import annotations

from datetime import date, timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

RATIO_DIGITS = 4
WILSON_Z = 1.96  # 95% two-sided
# Empirical-Bayes prior weight: a provider's rate is pulled toward the specialty rate as if it
# had this many extra encounters at that rate, so 2 readmissions in 5 cases do not rank worst.
PRIOR_WEIGHT = 20.0


def in_window(event: Column, as_of: date, days: int | None) -> Column:
    """True for events on/before ``as_of`` and, when ``days`` is given, within the ``days`` days
    ending on ``as_of`` (``as_of - days < event <= as_of``)."""
    until = event <= F.lit(as_of)
    return until if days is None else until & (event > F.date_sub(F.lit(as_of), days))


RECORD_TIME = "updated_at"  # when the source recorded the row's current version


def recorded_by(frame: DataFrame, as_of: date, column: str = RECORD_TIME) -> DataFrame:
    """The rows of ``frame`` on file by the end of ``as_of``: ``column`` (the record time) before
    the next midnight. A claim adjudicated, or a stay discharged and filed, after ``as_of`` was
    not known then, so it is left out of anything computed as of that day; a row without a
    record time is not known to have been on file and is left out too. A frame without the
    column (e.g. hand-built inputs that carry only event dates) is returned as it is."""
    if column not in frame.columns:
        return frame
    return frame.where(F.col(column) < F.lit(as_of + timedelta(days=1)))


def ratio(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator as a rounded double; null when the denominator is 0 or null."""
    return F.round(
        F.when(denominator != 0, numerator.cast("double") / denominator.cast("double")), RATIO_DIGITS
    )


def shrunk_rate(events: Column, cases: Column, prior_rate: Column, weight: float = PRIOR_WEIGHT) -> Column:
    """Empirical-Bayes rate (events + weight * prior) / (cases + weight): equal to the prior with
    no cases, approaching events / cases as cases grow."""
    return F.round(
        (events.cast("double") + F.lit(weight) * prior_rate) / (cases.cast("double") + F.lit(weight)), RATIO_DIGITS
    )


def _wilson(events: Column, cases: Column, sign: float) -> Column:
    n = cases.cast("double")
    p = events.cast("double") / n
    z2 = WILSON_Z * WILSON_Z
    centre = p + F.lit(z2) / (2 * n)
    spread = F.lit(WILSON_Z) * F.sqrt(p * (1 - p) / n + F.lit(z2) / (4 * n * n))
    return F.round(F.when(n > 0, (centre + F.lit(sign) * spread) / (1 + F.lit(z2) / n)), RATIO_DIGITS)


def wilson_lower(events: Column, cases: Column) -> Column:
    """Lower bound of the 95% Wilson score interval of events / cases; null without cases."""
    return _wilson(events, cases, -1.0)


def wilson_upper(events: Column, cases: Column) -> Column:
    """Upper bound of the 95% Wilson score interval of events / cases; null without cases."""
    return _wilson(events, cases, 1.0)


def index_score(observed_over_expected: Column) -> Column:
    """A 0..1 score from an observed/expected ratio where lower is better:
    ``clamp(1.5 - ratio, 0, 1)`` — 1 at half the expected value or less, 0.5 as expected,
    0 at 1.5 times expected or more. Null stays null."""
    # greatest() skips nulls, so a null ratio must be kept null explicitly.
    return F.when(
        observed_over_expected.isNotNull(),
        F.least(F.lit(1.0), F.greatest(F.lit(0.0), F.lit(1.5) - observed_over_expected)),
    )


def diagnosis_chapter(code: Column) -> Column:
    """The ICD-10 chapter letter of a diagnosis code (upper case), ``?`` when missing."""
    return F.coalesce(F.upper(F.substring(F.trim(code), 1, 1)), F.lit("?"))


def zip3_of(zip_code: Column) -> Column:
    """The first three digits of a ZIP code; null when it has fewer than three characters."""
    return F.when(F.length(F.trim(zip_code)) >= 3, F.substring(F.trim(zip_code), 1, 3))


def in_effect_first(valid_from: Column, day: Column) -> list[Column]:
    """Sort order of a key's SCD2 versions that puts first the one in effect at the end of
    ``day``: the latest that started by then, else (a key first recorded later) its first."""
    started = valid_from < F.date_add(day, 1)
    return [started.desc(), F.when(started, valid_from).desc_nulls_last(), valid_from.asc()]


def version_as_of(dim: DataFrame, natural_key: str, as_of: date) -> DataFrame:
    """SCD2 dimension -> one row per ``natural_key``: the version in effect at the end of ``as_of``.

    A key first recorded after ``as_of`` keeps its first version, matching how facts attach
    events dated before a key's first version to that version."""
    order = Window.partitionBy(natural_key).orderBy(*in_effect_first(F.col("valid_from"), F.lit(as_of)))
    return dim.withColumn("_version", F.row_number().over(order)).where(F.col("_version") == 1).drop("_version")
