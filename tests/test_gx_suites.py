"""Great Expectations suites: a good processed batch passes, a deliberately broken one fails."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from carelake.quality.gx import SuiteRunner
from carelake.quality.suites import expectation_suite
from carelake.sources.canonical import CANONICAL_SCHEMAS, ENTITIES

TS = datetime(2024, 3, 1)
LINEAGE = ("claims", "c.csv", "b1", TS)


def claim(claim_id, npi, billed, paid, encounter_key="e1"):
    return (claim_id, "hospital_a", encounter_key, "p1", npi, "Acme", Decimal(billed), Decimal("1.00"), Decimal(paid),
            "PAID", date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 9), TS, *LINEAGE)


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    return tmp_path_factory.mktemp("docs")


@pytest.fixture(scope="module")
def runner(docs):
    return SuiteRunner(docs_dir=str(docs))


def test_every_processed_table_has_a_suite():
    for entity in ENTITIES:
        suite = expectation_suite(entity)
        assert suite.name == f"processed.{entity}" and len(suite.expectations) >= 3


def test_good_claims_pass_and_update_data_docs(spark, runner, docs):
    good = spark.createDataFrame(
        [claim("C1", "1234567893", "10.00", "8.00"), claim("C2", "1245319599", "5.00", "5.00")], CANONICAL_SCHEMAS["claims"]
    )
    outcome = runner.validate(good, "claims")
    assert outcome.success, outcome.failed
    assert outcome.failed == [] and outcome.result["statistics"]["unsuccessful_expectations"] == 0
    # a passing batch is validated once, pass/fail only: no sample of unexpected values collected
    assert all(r["result"] == {} for r in outcome.result["results"])
    assert (docs / "index.html").exists()
    assert list((docs / "validations").rglob("*.html"))


def test_broken_claims_fail_with_the_broken_expectations(spark, runner):
    broken = spark.createDataFrame(
        [claim("C1", "1234567893", "10.00", "8.00"), claim("C1", "12345", "5.00", "9.00", encounter_key=None)],
        CANONICAL_SCHEMAS["claims"],
    )
    outcome = runner.validate(broken, "claims")
    assert not outcome.success
    assert sorted(outcome.failed) == sorted([
        "expect_column_values_to_be_unique:claim_id",
        "expect_column_values_to_not_be_null:encounter_key",
        "expect_column_values_to_match_regex:npi",
        "expect_column_pair_values_a_to_be_greater_than_b:billed_amount",
    ])
    # a failing batch is validated again in detail: the saved result says what was unexpected
    unique = next(r for r in outcome.result["results"] if r["expectation_config"]["type"] == "expect_column_values_to_be_unique")
    assert unique["result"]["unexpected_count"] == 2 and unique["result"]["partial_unexpected_list"] == ["C1", "C1"]
