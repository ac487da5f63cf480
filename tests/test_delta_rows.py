"""``Rows``: the predicate as a Spark Column and as SQL text select the same rows, whatever the
characters in the values."""

from __future__ import annotations

import datetime as dt

from carelake.delta import Rows

AWKWARD = ["it's", "a\\b", "tab\\t", "back`tick", "plain"]


def test_column_selects_exactly_the_listed_values_with_quotes_and_backslashes(spark) -> None:
    frame = spark.createDataFrame([(v,) for v in [*AWKWARD, "a\b", "other", None]], "v string")
    picked = Rows.where(v=["it's", "a\\b", "tab\\t", "back`tick"]).column()
    assert sorted(r["v"] for r in frame.where(picked).collect()) == sorted(["it's", "a\\b", "tab\\t", "back`tick"])
    with_null = Rows.where(v=["plain", None]).column()
    assert sorted(frame.where(with_null).collect(), key=str) == sorted([("plain",), (None,)], key=str)


def test_column_of_keys_dates_timestamps_and_numbers(spark) -> None:
    day, moment = dt.date(2024, 2, 29), dt.datetime(2024, 3, 1, 12, 30)
    frame = spark.createDataFrame(
        [(1, day, moment, "x"), (2, day, moment, "y"), (3, dt.date(2024, 3, 1), moment, "x")],
        "n int, d date, t timestamp, s string",
    )
    keys = Rows.keys(["n", "d"], [(1, day), (3, day)])  # (3, day) is not a row
    assert [r["n"] for r in frame.where(keys.column()).collect()] == [1]
    assert sorted(r["n"] for r in frame.where(Rows.where(t=[moment], s=["x"]).column()).collect()) == [1, 3]


def test_a_long_list_is_one_expression(spark) -> None:
    ids = [f"run-{i}" for i in range(20_000)]
    frame = spark.createDataFrame([("run-19999",), ("run-20000",)], "b string")
    assert [r["b"] for r in frame.where(~Rows.where(b=ids).column()).collect()] == ["run-20000"]


def test_datafusion_text_keeps_a_backslash_as_it_is() -> None:
    assert Rows.where(v=["a\\b"]).sql("datafusion") == "((\"v\" IN ('a\\b')))"
    assert Rows.where(v=["a\\b"]).sql("spark") == "((`v` IN ('a\\\\b')))"
