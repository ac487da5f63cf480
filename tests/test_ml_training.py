"""Point-in-time training sets on the tiny model of tests/test_curated_data.py, worked by hand."""

from __future__ import annotations

from datetime import date

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from carelake.curated.features import COLUMNS, provider_features
from carelake.ml.training import LABEL_COLUMNS, labels, outcome_training_set, training_set
from tests.test_curated_data import AS_OF, inputs

EARLY, LATE = date(2024, 2, 15), date(2024, 4, 30)
WINDOW = 60  # (2024-02-15, 2024-04-15] and (2024-04-30, 2024-06-29]; every FUTURE_* event is later


@pytest.fixture(scope="module")
def training(spark: SparkSession) -> DataFrame:
    """Built WITH the FUTURE_* events (2024-07-01 and later): every expected value below is worked
    out without them, so any that leaked into a feature or a label fails a test."""
    data = inputs(spark, future=True)
    return training_set(data["encounters"], data["procedures"], data["claims"], data["referrals"], data["crm"],
                        data["providers"], [LATE, EARLY], WINDOW).localCheckpoint(eager=True)


def test_one_row_per_npi_and_date_with_features_then_labels(training: DataFrame) -> None:
    assert training.columns == [*COLUMNS, *LABEL_COLUMNS]
    assert sorted((r.npi, r.as_of) for r in training.collect()) == [
        (npi, d) for npi in ("1", "2", "3") for d in (EARLY, LATE)]


def test_labels_come_from_the_following_window_only(spark: SparkSession, training: DataFrame) -> None:
    # EARLY: only e5 (2024-03-01, npi 2, 2000.00, readmitted and complicated) and CRM a1 (npi 2,
    # 500.00 on 2024-03-01) fall in the window. LATE: npi 1 has e2 (05-01, 1000.00, readmitted)
    # and e1 (06-20, 100.00) -> 550.0, 1 poor of 2; npi 2 has e4 (06-01, 300.00); CRM a2 is 0.00.
    schema = ("npi string, as_of date, label_encounters long, label_cost_per_case double, label_poor_outcomes long, "
              "label_poor_outcome_rate double, label_opportunity_value double")
    expected = spark.createDataFrame(
        [("1", EARLY, 0, None, 0, None, 0.0), ("2", EARLY, 1, 2000.0, 1, 1.0, 500.0), ("3", EARLY, 0, None, 0, None, 0.0),
         ("1", LATE, 2, 550.0, 1, 0.5, 0.0), ("2", LATE, 1, 300.0, 0, 0.0, 0.0), ("3", LATE, 0, None, 0, None, 0.0)],
        schema,
    )
    columns = [c.split()[0] for c in schema.split(", ")]
    assert_df_equality(training.select(*columns), expected, ignore_row_order=True, ignore_nullable=True)


def test_window_excludes_as_of_itself_and_includes_its_last_day(spark: SparkSession) -> None:
    # (2024-05-01, 2024-06-20]: e2 on 05-01 is a feature, not a label; e1 on 06-20 is a label.
    data = inputs(spark)
    rows = {r.npi: r for r in labels(data["encounters"], data["crm"], date(2024, 5, 1), 50).collect()}
    assert (rows["1"].label_encounters, rows["1"].label_cost_per_case) == (1, 100.0)
    assert (rows["2"].label_encounters, rows["2"].label_cost_per_case, rows["2"].label_opportunity_value) == (1, 300.0, 0.0)


def test_features_are_those_as_of_the_date(spark: SparkSession, training: DataFrame) -> None:
    # Neither the label window's events (e.g. e1, e2 after LATE) nor the FUTURE_* ones reach the
    # features: they equal the feature store computed as of each date without any of the future.
    data = inputs(spark)
    expected = provider_features(**data, as_of=EARLY).unionByName(provider_features(**data, as_of=LATE))
    assert_df_equality(training.select(*COLUMNS), expected, ignore_row_order=True)


def test_outcome_cells_of_the_label_window(spark: SparkSession, training: DataFrame) -> None:
    data = inputs(spark, future=True)
    cells = outcome_training_set(data["encounters"], training, WINDOW)
    # One row per encounter here: e5 (EARLY, inpatient I50.9, poor), e2 (LATE, inpatient I25.10,
    # poor), e1 and e4 (LATE, outpatient I10, fine). e_future (2024-07-05) is after both windows.
    assert sorted((r.npi, r.as_of, r.encounter_type, r.diagnosis_chapter, r.poor_outcome, r.cases) for r in cells.collect()) == [
        ("1", LATE, "inpatient", "I", 1, 1), ("1", LATE, "outpatient", "I", 0, 1),
        ("2", EARLY, "inpatient", "I", 1, 1), ("2", LATE, "outpatient", "I", 0, 1)]
    # Each cell carries its provider's features as of its own date.
    row = cells.where("npi = '1'").select("encounters_365d", "complication_rate").distinct().collect()
    assert [(r.encounters_365d, r.complication_rate) for r in row] == [(1, 1.0)]  # e3 only by 2024-04-30


def test_outcomes_whose_follow_up_is_incomplete_are_unknown(spark: SparkSession) -> None:
    # Data to 2024-06-30. LATE's window: e2 (npi 1, admitted 05-01, 3 days, readmitted) was
    # followed up by 06-03; e1 (npi 1, 06-20) and e4 (npi 2, 06-01), both same-day, not until
    # 07-20 and 07-01: a readmission could still come, so their outcomes are unknown.
    data = inputs(spark)
    followed = {r.npi: r for r in labels(data["encounters"], data["crm"], LATE, WINDOW, follow_up_end=AS_OF).collect()}
    assert (followed["1"].label_encounters, followed["1"].label_poor_outcomes, followed["1"].label_poor_outcome_rate) == (2, 1, 1.0)
    assert (followed["2"].label_encounters, followed["2"].label_poor_outcome_rate) == (1, None)
    # Without the rule the two unfinished stays count as "no poor outcome".
    unchecked = {r.npi: r for r in labels(data["encounters"], data["crm"], LATE, WINDOW).collect()}
    assert (unchecked["1"].label_poor_outcome_rate, unchecked["2"].label_poor_outcome_rate) == (0.5, 0.0)
    dated = training_set(data["encounters"], data["procedures"], data["claims"], data["referrals"], data["crm"],
                         data["providers"], [LATE], WINDOW, follow_up_end=AS_OF)
    cells = outcome_training_set(data["encounters"], dated, WINDOW, follow_up_end=AS_OF)
    assert sorted((r.npi, r.encounter_type, r.poor_outcome) for r in cells.collect()) == [("1", "inpatient", 1)]


def test_arguments_are_checked(spark: SparkSession) -> None:
    data = inputs(spark)
    args = (data["encounters"], data["procedures"], data["claims"], data["referrals"], data["crm"], data["providers"])
    with pytest.raises(ValueError, match="as_of_dates is empty"):
        training_set(*args, [], WINDOW)
    with pytest.raises(ValueError, match="label_window_days must be positive"):
        training_set(*args, [LATE], 0)
