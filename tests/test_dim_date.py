"""dim_date: calendar and fiscal attributes of hand-checked days, and the span rule."""

from __future__ import annotations

from datetime import date

from chispa import assert_df_equality
from pyspark.sql import SparkSession

from carelake.model.dim_date import build_dim_date, date_span

COLUMNS = (
    "date_key int, date date, day int, day_of_week int, day_name string, week_of_year int, "
    "month int, month_name string, quarter int, year int, year_month string, fiscal_year int, "
    "fiscal_quarter int, is_weekend boolean"
)


def days(spark: SparkSession, *dates: date, fiscal_start_month: int = 10):
    span = spark.createDataFrame([(d, d) for d in dates], "start_date date, end_date date")
    return build_dim_date(span, fiscal_start_month)


def test_fields_around_the_federal_fiscal_year_boundary(spark: SparkSession) -> None:
    actual = days(spark, date(2024, 9, 30), date(2024, 10, 1), date(2024, 12, 31), date(2025, 1, 4))
    expected = spark.createDataFrame(
        [
            (20240930, date(2024, 9, 30), 30, 1, "Monday", 40, 9, "September", 3, 2024, "2024-09", 2024, 4, False),
            (20241001, date(2024, 10, 1), 1, 2, "Tuesday", 40, 10, "October", 4, 2024, "2024-10", 2025, 1, False),
            # ISO week: 31 Dec 2024 belongs to week 1 of 2025.
            (20241231, date(2024, 12, 31), 31, 2, "Tuesday", 1, 12, "December", 4, 2024, "2024-12", 2025, 1, False),
            (20250104, date(2025, 1, 4), 4, 6, "Saturday", 1, 1, "January", 1, 2025, "2025-01", 2025, 2, True),
        ],
        COLUMNS,
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_fiscal_year_starting_in_january_is_the_calendar_year(spark: SparkSession) -> None:
    actual = days(spark, date(2024, 10, 1), date(2025, 3, 31), fiscal_start_month=1)
    rows = {r["date"]: (r["fiscal_year"], r["fiscal_quarter"]) for r in actual.collect()}
    assert rows == {date(2024, 10, 1): (2024, 4), date(2025, 3, 31): (2025, 1)}


def test_fiscal_year_starting_in_july(spark: SparkSession) -> None:
    actual = days(spark, date(2024, 6, 30), date(2024, 7, 1), fiscal_start_month=7)
    rows = {r["date"]: (r["fiscal_year"], r["fiscal_quarter"]) for r in actual.collect()}
    assert rows == {date(2024, 6, 30): (2024, 4), date(2024, 7, 1): (2025, 1)}


def test_span_covers_whole_years_one_row_per_day(spark: SparkSession) -> None:
    dates = spark.createDataFrame([(date(2024, 3, 5),), (date(2025, 7, 1),), (None,)], "d date")
    span = date_span(dates, "d")
    assert span.collect()[0].asDict() == {"start_date": date(2024, 1, 1), "end_date": date(2025, 12, 31)}
    dim = build_dim_date(span)
    assert dim.count() == 366 + 365
    assert dim.select("date_key").distinct().count() == 731
