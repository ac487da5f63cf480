"""Patient tokens and Safe Harbor generalisation."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from carelake.privacy import (
    TokenKeyError,
    age_band,
    birth_year_generalised,
    hmac_sha256_hex,
    month_grain,
    token_key,
    zip3_generalised,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def test_tokens_equal_the_standard_hmac(spark) -> None:
    values = ["hospital_a:123", "hospital_b:123", "Zo\u00eb", None]
    frame = spark.createDataFrame([(v,) for v in values], "v string")
    tokens = [r.t for r in frame.select(hmac_sha256_hex(F.col("v"), KEY).alias("t")).collect()]
    expected = [hmac.new(KEY, v.encode(), hashlib.sha256).hexdigest() if v else None for v in values]
    assert tokens == expected
    # the same id at two hospitals gets two tokens
    assert tokens[0] != tokens[1]


def test_tokens_are_stable_and_depend_on_the_key(spark) -> None:
    frame = spark.createDataFrame([("p1",)], "v string")
    first = frame.select(hmac_sha256_hex(F.col("v"), KEY)).first()[0]
    again = frame.select(hmac_sha256_hex(F.col("v"), KEY)).first()[0]
    rotated = frame.select(hmac_sha256_hex(F.col("v"), OTHER_KEY)).first()[0]
    assert first == again
    assert first != rotated


def test_long_keys_are_hashed_first_as_rfc_2104_says(spark) -> None:
    long_key = b"k" * 100
    frame = spark.createDataFrame([("p1",)], "v string")
    assert frame.select(hmac_sha256_hex(F.col("v"), long_key)).first()[0] == hmac.new(long_key, b"p1", hashlib.sha256).hexdigest()


def test_token_key_from_environment() -> None:
    assert token_key({"CARELAKE_TOKEN_KEY": KEY.hex()}) == KEY
    with pytest.raises(TokenKeyError, match="CARELAKE_TOKEN_KEY is not set"):
        token_key({})
    with pytest.raises(TokenKeyError, match="at least 32") as err:
        token_key({"CARELAKE_TOKEN_KEY": "abcd"})
    assert "abcd" not in str(err.value)  # never echo the secret


def test_zip3_generalisation(spark) -> None:
    frame = spark.createDataFrame([("60601",), ("03601",), ("60601-1234",), ("8901",), (None,), ("89301",)], "zip string")
    actual = frame.select("zip", zip3_generalised(F.col("zip")).alias("zip3"))
    expected = spark.createDataFrame(
        [("60601", "606"), ("03601", "000"), ("60601-1234", "606"), ("8901", None), (None, None), ("89301", "000")],
        "zip string, zip3 string",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_ages_over_89_are_one_group(spark) -> None:
    as_of = date(2024, 6, 30)
    rows = [(date(1980, 1, 15),), (date(1934, 7, 1),), (date(1934, 6, 30),), (date(1920, 1, 1),)]
    frame = spark.createDataFrame(rows, "birth_date date")
    actual = frame.select(
        "birth_date",
        birth_year_generalised(F.col("birth_date"), F.lit(as_of)).alias("birth_year"),
        age_band(F.col("birth_date"), F.lit(as_of)).alias("age"),
    )
    expected = spark.createDataFrame(
        [(date(1980, 1, 15), 1980, "44"), (date(1934, 7, 1), 1934, "89"), (date(1934, 6, 30), None, "90+"), (date(1920, 1, 1), None, "90+")],
        "birth_date date, birth_year int, age string",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_month_grain(spark) -> None:
    frame = spark.createDataFrame([(date(2024, 2, 29),)], "d date")
    assert frame.select(month_grain(F.col("d"))).first()[0] == date(2024, 2, 1)
