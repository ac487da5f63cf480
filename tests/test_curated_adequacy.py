"""network_adequacy on hand-built facts: demand where the patients live, supply from the
providers active in each month, capacity in typical-provider units; expected rows worked out by
hand."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession

from carelake.config import ConfigError
from carelake.curated.adequacy import COLUMNS, AdequacySettings, flag_expansion, network_adequacy

AS_OF = date(2024, 2, 29)
OPEN = datetime(9999, 12, 31)
START = datetime(2023, 12, 31)
LEAVES = datetime(2024, 2, 15)
PROVIDER_SCHEMA = ("npi string, specialty string, zip string, network_id string, employer_id string, active boolean, "
                   "valid_from timestamp, valid_to timestamp, is_current boolean")
ADEQUACY_SCHEMA = (
    "zip3 string, specialty string, service_month string, encounters long, referrals long, referrals_leaked long, "
    "demand long, active_providers long, throughput_per_provider double, capacity double, utilisation double, "
    "expand_network boolean, expansion_reason string"
)


def _inputs(spark: SparkSession) -> tuple:
    providers = spark.createDataFrame(
        [
            ("A", "Cardiology", "60601", "N1", "E1", True, START, OPEN, True),
            ("B", "Cardiology", "60605", "N1", "E1", True, START, LEAVES, False),
            ("B", "Cardiology", "60605", "N1", "E1", False, LEAVES, OPEN, True),  # inactive from 15 Feb
            ("C", "Cardiology", "44102", "N1", "E1", True, START, OPEN, True),
            ("D", "Dermatology", "30301", "N2", "E1", True, START, OPEN, True),
        ],
        PROVIDER_SCHEMA,
    )
    homes = spark.createDataFrame([("T1", "606"), ("T2", "441"), ("T3", None)], "patient_token string, zip3 string")
    jan, feb = date(2024, 1, 10), date(2024, 2, 20)
    visits = (
        [("A", "T1", jan)] * 3 + [("A", "T2", jan)] + [("A", "T1", feb)] * 2   # A: 4 in Jan, 2 in Feb
        + [("B", "T1", jan)] * 2                                                # B: 2 in Jan
        + [("C", "T2", jan)] + [("C", "T2", feb)] * 2 + [("C", "T3", feb)]      # C: 1 in Jan, 3 in Feb
        + [("A", "T1", date(2024, 3, 5))]                                       # after as_of
    )
    encounters = spark.createDataFrame(
        [(f"e{i}", npi, token, day) for i, (npi, token, day) in enumerate(visits)],
        "encounter_key string, npi string, patient_token string, admit_date date",
    )
    referrals = spark.createDataFrame(
        [
            ("T1", "A", "B", jan, "completed", "Cardiology"),    # same network: not leaked
            ("T2", "C", "X", feb, "scheduled", "Cardiology"),    # unknown receiver: leaked
            ("T2", "C", "A", feb, "cancelled", "Cardiology"),    # cancelled: no demand
            ("T1", "A", "D", feb, "completed", "Dermatology"),   # other network: leaked
            ("T1", "A", "B", date(2024, 3, 1), "completed", "Cardiology"),  # after as_of
        ],
        "patient_token string, referring_npi string, referred_to_npi string, referral_date date, "
        "status string, specialty_requested string",
    )
    return encounters, referrals, providers, homes


@pytest.fixture(scope="module")
def adequacy(spark: SparkSession):
    encounters, referrals, providers, homes = _inputs(spark)
    return network_adequacy(encounters, referrals, providers, homes, AS_OF,
                            AdequacySettings(utilisation_threshold=1.2, min_demand=1)).localCheckpoint(eager=True)


def test_adequacy_counts_residents_demand_against_month_supply(spark: SparkSession, adequacy) -> None:
    # Throughput: A's months 4, 2 -> median 3; B's 2 -> 2; C's 1, 3 -> 2; cardiology = median(3, 2, 2) = 2.
    # 606 Jan: T1 saw A 3x and B 2x + 1 referral = 6 against A and B active (capacity 4): 1.5 > 1.2.
    # 606 Feb: T1 saw A 2x; B inactive at the month's end: capacity 2, 1.0.
    # 441 Jan: T2 saw A (practising in 606) and C: 2 against C (capacity 2). 441 Feb: C 2x + the
    # leaked referral (the cancelled one is not demand) = 3: 1.5. T3 has no home: 'unknown', never flagged.
    # 606 dermatology: a leaked referral and no dermatologist in the area. 303: D, but no dermatology
    # encounters anywhere, so no throughput to call capacity.
    actual = adequacy
    above = "utilisation above 1.2"
    expected = spark.createDataFrame(
        [
            ("606", "Cardiology", "2024-01", 5, 1, 0, 6, 2, 2.0, 4.0, 1.5, True, above),
            ("606", "Cardiology", "2024-02", 2, 0, 0, 2, 1, 2.0, 2.0, 1.0, False, None),
            ("441", "Cardiology", "2024-01", 2, 0, 0, 2, 1, 2.0, 2.0, 1.0, False, None),
            ("441", "Cardiology", "2024-02", 2, 1, 1, 3, 1, 2.0, 2.0, 1.5, True, above),
            ("unknown", "Cardiology", "2024-02", 1, 0, 0, 1, 0, 2.0, 0.0, None, False, None),
            ("606", "Dermatology", "2024-02", 0, 1, 1, 1, 0, None, None, None, True, "no active provider"),
            ("303", "Dermatology", "2024-01", 0, 0, 0, 0, 1, None, None, None, False, None),
            ("303", "Dermatology", "2024-02", 0, 0, 0, 0, 1, None, None, None, False, None),
        ],
        ADEQUACY_SCHEMA,
    )
    assert list(actual.columns) == list(COLUMNS)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_default_thresholds_need_volume_and_more_than_twice_the_capacity(adequacy) -> None:
    # Defaults 2.0 and 5: 606 Jan (6 at 1.5) is not above 2.0; 441 Feb (3) and the dermatology
    # referral (1) are below the minimum demand of 5.
    assert flag_expansion(adequacy, AdequacySettings()).where("expand_network").count() == 0
    # At 1.4 only 606 Jan (1.5 with 6 of demand) is above the threshold.
    lower = flag_expansion(adequacy, AdequacySettings(utilisation_threshold=1.4))
    assert [tuple(r) for r in lower.where("expand_network").select("zip3", "service_month", "expansion_reason").collect()] == [
        ("606", "2024-01", "utilisation above 1.4")]


def test_settings_come_from_config_and_bad_values_are_rejected(base_config) -> None:
    assert AdequacySettings.from_config(base_config) == AdequacySettings()
    tuned = base_config.with_overrides(**{"curated.adequacy": {"utilisation_threshold": "1.3", "min_demand": 2}})
    assert AdequacySettings.from_config(tuned) == AdequacySettings(1.3, 2)
    with pytest.raises(ConfigError, match="unknown key"):
        AdequacySettings.from_config(base_config.with_overrides(**{"curated.adequacy": {"threshold": 1}}))
    with pytest.raises(ConfigError, match="utilisation_threshold > 0"):
        AdequacySettings.from_config(base_config.with_overrides(**{"curated.adequacy": {"utilisation_threshold": 0}}))
