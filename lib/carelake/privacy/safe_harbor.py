"""HIPAA Safe Harbor generalisation of quasi-identifiers, as Spark expressions.

45 CFR 164.514(b)(2): dates are kept to the year (or, where configured, the month), ages over 89
are put in one group, and of a zip code only the first three digits remain — and not even
those where the three-digit area holds 20,000 people or fewer (those become ``000``).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DateType

from carelake.config import Config, ConfigError

# Three-digit zip areas with 20,000 or fewer residents (2000 Census), per HHS guidance.
RESTRICTED_ZIP3 = (
    "036", "059", "063", "102", "203", "556", "692", "790", "821",
    "823", "830", "831", "878", "879", "884", "890", "893",
)
AGE_CAP = 90  # "90 or older" is one group
DATE_GRAINS = ("day", "month")
DATE_KEY = "date_key"  # yyyymmdd int beside an event date in the facts


def zip3_generalised(zip_code: Column) -> Column:
    """First three digits of a 5/9-digit zip; ``000`` for restricted areas; null if not a zip."""
    digits = F.regexp_replace(zip_code.cast("string"), r"[^0-9]", "")
    zip3 = F.substring(digits, 1, 3)
    return (
        F.when(F.length(digits).isin(5, 9), F.when(zip3.isin(*RESTRICTED_ZIP3), F.lit("000")).otherwise(zip3))
    )


def birth_year_generalised(birth_date: Column, as_of: Column) -> Column:
    """Birth year, or null when the person is over 89 at ``as_of`` (their age group says 90+).

    Safe Harbor aggregates ages over 89 *and* the birth years that reveal them, so the year is
    withheld for that group; pair this with :func:`age_band` to keep the group itself.
    """
    age = F.floor(F.months_between(as_of, birth_date) / 12)
    return F.when(age < AGE_CAP, F.year(birth_date))


def age_band(birth_date: Column, as_of: Column) -> Column:
    """Age in years at ``as_of`` as text, with everyone over 89 in the single group ``90+``."""
    age = F.floor(F.months_between(as_of, birth_date) / 12).cast("int")
    return F.when(age >= AGE_CAP, F.lit("90+")).otherwise(age.cast("string"))


def month_grain(date: Column) -> Column:
    """A date kept only to its month (first day of the month)."""
    return F.trunc(date, "month")


def date_grain(config: Config) -> str:
    """``privacy.date_grain`` (``day`` by default, or ``month``); a clear error otherwise."""
    grain = str(config.section("privacy").get("date_grain", "day"))
    if grain not in DATE_GRAINS:
        raise ConfigError(f"{config.source_file}: privacy.date_grain must be one of {DATE_GRAINS}, found {grain!r}")
    return grain


def coarsen_dates(df: DataFrame, grain: str) -> DataFrame:
    """Every date column (and a ``date_key`` yyyymmdd int) kept to ``grain``: unchanged for
    ``day``; the first of the month for ``month``. Durations computed earlier are kept."""
    if grain == "day":
        return df
    dates = {f.name for f in df.schema.fields if isinstance(f.dataType, DateType)}
    return df.select(
        *[
            month_grain(F.col(c)).alias(c) if c in dates
            else (F.col(c) - F.col(c) % 100 + 1).cast("int").alias(c) if c == DATE_KEY
            else F.col(c)
            for c in df.columns
        ]
    )
