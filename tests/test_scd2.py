"""SCD type 2 planning (pure) and applying (through the Delta layer) on hand-built tables."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carelake.delta.scd2 import Scd2Spec, apply_scd2, plan_scd2

OPEN = datetime(9999, 12, 31)
T1, T2, T3, T4, T5 = (datetime(2024, m, 1) for m in range(1, 6))
DIM_COLUMNS = "npi string, specialty string, zip string, valid_from timestamp, valid_to timestamp, is_current boolean, change_hash string"
UPDATE_COLUMNS = "npi string, specialty string, zip string, updated_at timestamp"
SPEC = Scd2Spec(("npi",), ("specialty", "zip"), "updated_at", "provider_sk")


def hashed(specialty: str | None, zip_code: str | None) -> str:
    """sha2-256 of the tracked values joined by \\x01, null as \\x00 (the documented rule)."""
    text = "\x01".join("\x00" if v is None else v for v in (specialty, zip_code))
    return hashlib.sha256(text.encode()).hexdigest()


def dim(spark: SparkSession, *rows: tuple) -> DataFrame:
    """Dimension rows (npi, specialty, zip, valid_from, valid_to, is_current) with their hash."""
    full = [(*r, hashed(r[1], r[2])) for r in rows]
    return spark.createDataFrame(full, DIM_COLUMNS)


def with_sk(spark: SparkSession, df: DataFrame) -> DataFrame:
    """A current table as stored: the surrogate column in front."""
    return df.select(F.xxhash64("npi", "valid_from").alias("provider_sk"), *df.columns)


def plan(spark: SparkSession, current: DataFrame, updates: list[tuple], snapshot: bool = False) -> DataFrame:
    return plan_scd2(
        with_sk(spark, current),
        spark.createDataFrame(updates, UPDATE_COLUMNS),
        ["npi"], ["specialty", "zip"], "updated_at", snapshot=snapshot, surrogate_col="provider_sk",
    ).drop("provider_sk")


def test_new_keys_open_a_current_version(spark: SparkSession) -> None:
    actual = plan(spark, dim(spark), [("1", "cardio", "60601", T1), ("2", "ortho", None, T2)])
    expected = dim(spark, ("1", "cardio", "60601", T1, OPEN, True), ("2", "ortho", None, T2, OPEN, True))
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_changed_attribute_closes_current_and_opens_new(spark: SparkSession) -> None:
    current = dim(spark, ("1", "cardio", "60601", T1, OPEN, True), ("2", "ortho", "60602", T1, OPEN, True))
    actual = plan(spark, current, [("1", "cardio", "60610", T3)])
    expected = dim(spark, ("1", "cardio", "60601", T1, T3, False), ("1", "cardio", "60610", T3, OPEN, True))
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_unchanged_rows_plan_nothing(spark: SparkSession) -> None:
    current = dim(spark, ("1", "cardio", "60601", T1, OPEN, True))
    # Same attributes at the same time and at a later time: neither is a change.
    assert plan(spark, current, [("1", "cardio", "60601", T1), ("1", "cardio", "60601", T4)]).count() == 0


def test_null_and_empty_attribute_are_different_versions(spark: SparkSession) -> None:
    current = dim(spark, ("1", "cardio", None, T1, OPEN, True))
    actual = plan(spark, current, [("1", "cardio", "", T2)])
    expected = dim(spark, ("1", "cardio", None, T1, T2, False), ("1", "cardio", "", T2, OPEN, True))
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_key_missing_from_snapshot_is_end_dated_not_deleted(spark: SparkSession) -> None:
    current = dim(
        spark,
        ("1", "cardio", "60601", T1, OPEN, True),
        ("2", "ortho", "60602", T1, OPEN, True),
        ("3", "peds", "60603", T1, T2, False),  # already ended: stays as it is
    )
    actual = plan(spark, current, [("1", "cardio", "60699", T4)], snapshot=True)
    expected = dim(
        spark,
        ("1", "cardio", "60601", T1, T4, False),
        ("1", "cardio", "60699", T4, OPEN, True),
        ("2", "ortho", "60602", T1, T4, False),
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_without_snapshot_a_missing_key_stays_current(spark: SparkSession) -> None:
    current = dim(spark, ("1", "cardio", "60601", T1, OPEN, True), ("2", "ortho", "60602", T1, OPEN, True))
    actual = plan(spark, current, [("1", "cardio", "60699", T4)])
    assert actual.where("npi = '2'").count() == 0


def test_late_arriving_update_splits_the_interval_it_falls_in(spark: SparkSession) -> None:
    current = dim(
        spark,
        ("1", "cardio", "60601", T1, T3, False),
        ("1", "cardio", "60603", T3, OPEN, True),
    )
    actual = plan(spark, current, [("1", "cardio", "60602", T2)])
    expected = dim(
        spark,
        ("1", "cardio", "60601", T1, T2, False),  # closed earlier
        ("1", "cardio", "60602", T2, T3, False),  # slotted in, already superseded
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_update_before_first_version_becomes_the_first(spark: SparkSession) -> None:
    current = dim(spark, ("1", "cardio", "60603", T3, OPEN, True))
    actual = plan(spark, current, [("1", "cardio", "60601", T1)])
    expected = dim(spark, ("1", "cardio", "60601", T1, T3, False))
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_late_update_inside_an_end_dated_history_keeps_the_end_date(spark: SparkSession) -> None:
    current = dim(spark, ("2", "ortho", "60602", T1, T4, False))
    actual = plan(spark, current, [("2", "ortho", "60699", T2)])
    expected = dim(spark, ("2", "ortho", "60602", T1, T2, False), ("2", "ortho", "60699", T2, T4, False))
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_end_dated_key_that_returns_opens_a_new_version(spark: SparkSession) -> None:
    current = dim(spark, ("2", "ortho", "60602", T1, T3, False))
    actual = plan(spark, current, [("2", "ortho", "60602", T5)])
    expected = dim(spark, ("2", "ortho", "60602", T5, OPEN, True))
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_same_key_twice_in_a_batch_keeps_both_in_effective_order(spark: SparkSession) -> None:
    current = dim(spark, ("1", "cardio", "60601", T1, OPEN, True))
    # Listed out of order on purpose: effective time, not arrival, orders history.
    actual = plan(spark, current, [("1", "cardio", "60603", T3), ("1", "cardio", "60602", T2)])
    expected = dim(
        spark,
        ("1", "cardio", "60601", T1, T2, False),
        ("1", "cardio", "60602", T2, T3, False),
        ("1", "cardio", "60603", T3, OPEN, True),
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_same_key_twice_at_the_same_time_keeps_one_version(spark: SparkSession) -> None:
    batch = [("1", "cardio", "60602", T2), ("1", "cardio", "60609", T2), ("1", "cardio", "60602", T2)]
    first = plan(spark, dim(spark), batch)
    again = plan(spark, dim(spark), list(reversed(batch)))
    assert first.count() == 1
    assert_df_equality(first, again, ignore_row_order=True)


def test_replanning_an_applied_batch_plans_nothing(spark: SparkSession) -> None:
    batch = [("1", "cardio", "60602", T2), ("1", "cardio", "60603", T3), ("2", "ortho", "60602", T1)]
    applied = dim(
        spark,
        ("1", "cardio", "60601", T1, T2, False),
        ("1", "cardio", "60602", T2, T3, False),
        ("1", "cardio", "60603", T3, OPEN, True),
        ("2", "ortho", "60602", T1, OPEN, True),
    )
    assert plan(spark, applied, batch).count() == 0
    assert plan(spark, applied, batch, snapshot=True).count() == 0


def test_surrogate_key_is_stable_per_version(spark: SparkSession) -> None:
    updates = spark.createDataFrame([("1", "cardio", "60601", T1)], UPDATE_COLUMNS)
    empty = with_sk(spark, dim(spark))
    args = (["npi"], ["specialty", "zip"], "updated_at")
    first = plan_scd2(empty, updates, *args, surrogate_col="provider_sk").collect()[0]
    second = plan_scd2(empty, updates, *args, surrogate_col="provider_sk").collect()[0]
    assert first["provider_sk"] == second["provider_sk"] and isinstance(first["provider_sk"], int)


def test_missing_update_column_is_named(spark: SparkSession) -> None:
    updates = spark.createDataFrame([("1", "cardio", T1)], "npi string, specialty string, updated_at timestamp")
    with pytest.raises(ValueError, match="zip"):
        plan_scd2(with_sk(spark, dim(spark)), updates, ["npi"], ["specialty", "zip"], "updated_at")


def test_spec_from_config_block() -> None:
    spec = Scd2Spec.from_config(
        {"natural_key": "npi", "tracked": ["specialty", "zip"], "effective_col": "updated_at",
         "surrogate_col": "provider_sk", "snapshot": True}
    )
    assert spec == Scd2Spec(("npi",), ("specialty", "zip"), "updated_at", "provider_sk", True)
    with pytest.raises(ValueError, match="tracked"):
        Scd2Spec.from_config({"natural_key": "npi", "effective_col": "x", "surrogate_col": "y"})


# --- through the Delta layer: runs once carelake.delta.open_tables exists ---------------------


def stored(tables, uri: str) -> DataFrame:
    return tables.read(uri).drop("provider_sk")


def test_apply_writes_history_and_reapplying_changes_nothing(spark: SparkSession, config, tables) -> None:
    from carelake.storage import table_uri

    uri = table_uri(config, "curated", "dim_test_provider")
    first = spark.createDataFrame([("1", "cardio", "60601", T1), ("2", "ortho", "60602", T1)], UPDATE_COLUMNS)
    assert apply_scd2(tables, uri, first, SPEC) is not None
    second = spark.createDataFrame([("1", "cardio", "60602", T3), ("1", "cardio", "60602", T3)], UPDATE_COLUMNS)
    result = apply_scd2(tables, uri, second, SPEC)
    assert result is not None and result.rows_updated == 1 and result.rows_inserted == 1
    version = tables.version(uri)

    assert apply_scd2(tables, uri, second, SPEC) is None
    assert tables.version(uri) == version
    expected = dim(
        spark,
        ("1", "cardio", "60601", T1, T3, False),
        ("1", "cardio", "60602", T3, OPEN, True),
        ("2", "ortho", "60602", T1, OPEN, True),
    )
    assert_df_equality(stored(tables, uri), expected, ignore_row_order=True, ignore_nullable=True)

    snapshot = spark.createDataFrame([("1", "cardio", "60602", T3)], UPDATE_COLUMNS)
    apply_scd2(tables, uri, snapshot, replace(SPEC, snapshot=True))
    ended = stored(tables, uri).where("npi = '2'")
    assert_df_equality(ended, dim(spark, ("2", "ortho", "60602", T1, T3, False)), ignore_nullable=True)
