"""Quarantine records, de-duplication (exact vs conflicting) and quarantine-rate limits."""

from __future__ import annotations

from datetime import datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from carelake.quality.quarantine import (
    failed_rows,
    mark_duplicates,
    max_quarantine_rate,
    quarantine_records,
    unconfigured_rows,
    valid_rows,
)

T1, T2 = datetime(2024, 1, 1), datetime(2024, 2, 1)
LATE = datetime(2024, 6, 2)


def providers(spark, rows):
    """Valid provider rows: (npi, last_name, updated_at, _source_file, _ingested_at)."""
    full = [
        (npi, None, last, None, None, None, None, None, None, True, upd, "hospital_a", f, "b1", ing)
        for npi, last, upd, f, ing in rows
    ]
    return spark.createDataFrame(
        full,
        "npi string, first_name string, last_name string, specialty string, taxonomy_code string, organization string, "
        "zip string, network_id string, employer_id string, active boolean, updated_at timestamp, "
        "_source_system string, _source_file string, _batch_id string, _ingested_at timestamp",
    )


def test_exact_copies_and_older_versions_are_marked(spark):
    df = providers(spark, [
        ("1234567893", "Lee", T2, "a.csv", LATE),       # latest version: kept
        ("1234567893", "Lee", T2, "b.csv", LATE),       # same content again: exact
        ("1234567893", "Li", T1, "a.csv", LATE),        # older different content: conflict
        ("1245319599", "Ng", T1, "a.csv", LATE),        # alone: kept
        ("1245319599", "Ng", T1, "a.csv", LATE),        # exact copy
    ])
    actual = mark_duplicates(df, "providers").select("npi", "last_name", "_source_file", "_duplicate")
    want = spark.createDataFrame(
        [
            ("1234567893", "Lee", "b.csv", None),
            ("1234567893", "Lee", "a.csv", "exact"),
            ("1234567893", "Li", "a.csv", "conflict"),
            ("1245319599", "Ng", "a.csv", None),
            ("1245319599", "Ng", "a.csv", "exact"),
        ],
        "npi string, last_name string, _source_file string, _duplicate string",
    )
    assert_df_equality(actual, want, ignore_row_order=True, ignore_nullable=True)


def test_tie_on_updated_at_goes_to_latest_ingest(spark):
    df = providers(spark, [
        ("1234567893", "Old", T1, "z.csv", datetime(2024, 6, 1)),
        ("1234567893", "New", T1, "a.csv", datetime(2024, 6, 3)),
    ])
    kept = mark_duplicates(df, "providers").where(F.col("_duplicate").isNull()).select("last_name")
    assert [r.last_name for r in kept.collect()] == ["New"]


def test_quarantine_records_carry_every_reason_and_the_payload(spark):
    checked = spark.createDataFrame(
        [
            ("hospital_c", "s3://l/c.txt", "b7", LATE, ["npi_invalid:npi", "date_unparseable:admit_date"], '{"npi":"1"}'),
            ("hospital_c", "s3://l/c.txt", "b7", LATE, [], '{"npi":"1234567893"}'),
        ],
        "_source_system string, _source_file string, _batch_id string, _ingested_at timestamp, "
        "_failed_rules array<string>, _raw_payload string",
    )
    records = quarantine_records(failed_rows(checked), "encounters", "run-1").drop("quarantined_at")
    want = spark.createDataFrame(
        [("encounters", "hospital_c", "s3://l/c.txt", "b7", LATE, ["npi_invalid:npi", "date_unparseable:admit_date"],
          '{"npi":"1"}', "run-1")],
        "entity string, source_system string, source_file string, batch_id string, ingested_at timestamp, "
        "reasons array<string>, raw_payload string, run_id string",
    )
    assert_df_equality(records, want, ignore_row_order=True, ignore_nullable=True)
    assert valid_rows(checked).count() == 1


def test_rows_of_a_system_without_a_mapping_are_failed_not_lost(spark):
    raw = spark.createDataFrame(
        [("1", "hospital_a"), ("2", "hospital_z"), ("3", None)],
        "npi string, _source_system string",
    ).selectExpr("*", "'f.csv' AS _source_file", "'b1' AS _batch_id", "CAST(NULL AS timestamp) AS _ingested_at",
                 "CAST(NULL AS string) AS _corrupt_record")
    actual = unconfigured_rows(raw, ["hospital_a"]).select("_source_system", "_failed_rules", "_raw_payload")
    want = spark.createDataFrame(
        [("hospital_z", ["source_not_configured"], '{"npi":"2","_corrupt_record":null}'),
         (None, ["source_not_configured"], '{"npi":"3","_corrupt_record":null}')],
        "_source_system string, _failed_rules array<string>, _raw_payload string",
    )
    assert_df_equality(actual, want, ignore_row_order=True, ignore_nullable=True)


def test_rates_per_entity_override_the_default():
    quality = {"max_quarantine_rate": 0.1, "entities": {"claims": {"max_quarantine_rate": 0.4}}}
    assert max_quarantine_rate(quality, "claims") == 0.4
    assert max_quarantine_rate(quality, "providers") == 0.1
    assert max_quarantine_rate({}, "providers") == 0.25


def test_rate_outside_zero_to_one_is_rejected_with_the_entity():
    with pytest.raises(ValueError, match=r"'claims'.*found 5"):
        max_quarantine_rate({"entities": {"claims": {"max_quarantine_rate": 5}}}, "claims")
