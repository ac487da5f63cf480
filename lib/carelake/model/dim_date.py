"""``dim_date``: one row per calendar day, with calendar and fiscal attributes."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

DEFAULT_FISCAL_START_MONTH = 10  # US federal fiscal year starts in October


def date_span(dates: DataFrame, column: str) -> DataFrame:
    """Dates -> one row (``start_date``, ``end_date``): 1 January of the earliest year to
    31 December of the latest, so every month and year the data touches is complete."""
    return dates.agg(
        F.trunc(F.min(column), "year").alias("start_date"),
        F.date_sub(F.add_months(F.trunc(F.max(column), "year"), 12), 1).alias("end_date"),
    )


def build_dim_date(span: DataFrame, fiscal_start_month: int = DEFAULT_FISCAL_START_MONTH) -> DataFrame:
    """One row (``start_date``, ``end_date``) -> one row per day in between, inclusive.

    Columns: ``date_key`` int yyyymmdd, ``date``, ``day`` (of month), ``day_of_week`` (ISO:
    1 = Monday .. 7 = Sunday), ``day_name``, ``week_of_year`` (ISO week), ``month``,
    ``month_name``, ``quarter``, ``year``, ``year_month`` ('yyyy-MM'), ``fiscal_year`` (named for
    the calendar year it ends in: with an October start, 2024-10-01 is in FY2025),
    ``fiscal_quarter`` (1 starts in ``fiscal_start_month``), ``is_weekend``.
    """
    if not 1 <= fiscal_start_month <= 12:
        raise ValueError(f"fiscal_start_month must be 1..12, found {fiscal_start_month}")
    days = span.where(F.col("start_date").isNotNull()).select(
        F.explode(F.sequence("start_date", "end_date", F.expr("INTERVAL 1 DAY"))).alias("date")
    )
    d, month = F.col("date"), F.month("date")
    months_into_fiscal = F.pmod(month - F.lit(fiscal_start_month), F.lit(12))
    starts_next_year = F.lit(fiscal_start_month > 1) & (month >= F.lit(fiscal_start_month))
    return days.select(
        (F.year(d) * 10000 + month * 100 + F.dayofmonth(d)).cast("int").alias("date_key"),
        d.alias("date"),
        F.dayofmonth(d).alias("day"),
        (F.pmod(F.dayofweek(d) + F.lit(5), F.lit(7)) + F.lit(1)).cast("int").alias("day_of_week"),
        F.date_format(d, "EEEE").alias("day_name"),
        F.weekofyear(d).alias("week_of_year"),
        month.alias("month"),
        F.date_format(d, "MMMM").alias("month_name"),
        F.quarter(d).alias("quarter"),
        F.year(d).alias("year"),
        F.date_format(d, "yyyy-MM").alias("year_month"),
        (F.year(d) + F.when(starts_next_year, 1).otherwise(0)).cast("int").alias("fiscal_year"),
        (F.floor(months_into_fiscal / 3) + 1).cast("int").alias("fiscal_quarter"),
        F.dayofweek(d).isin(1, 7).alias("is_weekend"),
    )
