"""network_adequacy on hand-built facts: demand where the patients live, supply from the
providers active in each month, capacity in typical-provider units, distance to the nearest
in-network provider, providers per 100,000 residents; expected rows worked out by hand."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from carelake.config import ConfigError
from carelake.curated.adequacy import (
    COLUMNS,
    AdequacySettings,
    flag_expansion,
    leakage_trend,
    network_adequacy,
    read_area_population,
)

AS_OF = date(2024, 2, 29)
OPEN = datetime(9999, 12, 31)
START = datetime(2023, 12, 31)
LEAVES = datetime(2024, 2, 15)
PROVIDER_SCHEMA = ("npi string, specialty string, zip string, network_id string, employer_id string, active boolean, "
                   "valid_from timestamp, valid_to timestamp, is_current boolean")
ADEQUACY_SCHEMA = (
    "zip3 string, specialty string, service_month string, encounters long, referrals long, referrals_leaked long, "
    "leaked_share_3m double, leaked_share_change double, referrals_completed long, completion_days_p50 double, demand long, active_providers long, throughput_per_provider double, capacity double, utilisation double, "
    "nearest_provider_km double, population long, providers_per_100k double, network_providers_per_100k double, "
    "expand_network boolean, expansion_reason string"
)
# Round made-up km from each home area to each practice zip (the real ones come from carelake.geo).
KM = {
    "606": {"60601": 3.0, "60605": 8.0, "44102": 500.0, "44110": 503.0, "30301": 950.0},
    "441": {"60601": 505.0, "60605": 498.0, "44102": 12.0, "44110": 6.0, "30301": 890.0},
    "303": {"60601": 940.0, "60605": 945.0, "44102": 880.0, "44110": 885.0, "30301": 5.0},
}
SETTINGS = AdequacySettings(utilisation_threshold=1.2, min_demand=1, max_distance_km=100, min_ratio_share=0.7)


def _inputs(spark: SparkSession) -> tuple:
    providers = spark.createDataFrame(
        [
            ("A", "Cardiology", "60601", "N1", "E1", True, START, OPEN, True),
            ("B", "Cardiology", "60605", "N1", "E1", True, START, LEAVES, False),
            ("B", "Cardiology", "60605", "N1", "E1", False, LEAVES, OPEN, True),  # inactive from 15 Feb
            ("C", "Cardiology", "44102", "N1", "E1", True, START, OPEN, True),
            ("D", "Dermatology", "30301", "N2", "E1", True, START, OPEN, True),
            ("E", "Dermatology", "44110", None, "E2", True, START, OPEN, True),  # in no network
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
            # same network: not leaked; completed 7 days later
            ("T1", "A", "B", jan, "completed", "Cardiology", datetime(2024, 1, 17, 9)),
            ("T2", "C", "X", feb, "scheduled", "Cardiology", datetime(2024, 2, 21)),    # unknown receiver: leaked
            ("T2", "C", "A", feb, "cancelled", "Cardiology", datetime(2024, 2, 22)),    # cancelled: no demand
            ("T1", "A", "D", feb, "completed", "Dermatology", datetime(2024, 2, 23)),   # other network: leaked; 3 days
            ("T1", "A", "B", date(2024, 3, 1), "completed", "Cardiology", datetime(2024, 3, 2)),  # after as_of
        ],
        "patient_token string, referring_npi string, referred_to_npi string, referral_date date, "
        "status string, specialty_requested string, updated_at timestamp",
    )
    distances = spark.createDataFrame([(a, z, km) for a, row in KM.items() for z, km in row.items()],
                                      "zip3 string, zip string, distance_km double")
    population = spark.createDataFrame([("606", 300_000), ("441", 100_000)], "zip3 string, population long")
    return encounters, referrals, providers, homes, distances, population


@pytest.fixture(scope="module")
def adequacy(spark: SparkSession):
    encounters, referrals, providers, homes, distances, population = _inputs(spark)
    return network_adequacy(encounters, referrals, providers, homes, AS_OF, SETTINGS,
                            distances=distances, population=population).localCheckpoint(eager=True)


def test_adequacy_counts_residents_demand_against_month_supply(spark: SparkSession, adequacy) -> None:
    # Throughput: A's months 4, 2 -> median 3; B's 2 -> 2; C's 1, 3 -> 2; cardiology = median(3, 2, 2) = 2.
    # 606 Jan: T1 saw A 3x and B 2x + 1 referral = 6 against A and B active (capacity 4): 1.5 > 1.2.
    # 606 Feb: T1 saw A 2x; B inactive at the month's end: capacity 2, 1.0.
    # 441 Jan: T2 saw A (practising in 606) and C: 2 against C (capacity 2). 441 Feb: C 2x + the
    # leaked referral (the cancelled one is not demand) = 3: 1.5. T3 has no home: 'unknown', never flagged.
    # 606 dermatology: a leaked referral and no dermatologist in the area. 303: D, but no dermatology
    # encounters anywhere, so no throughput to call capacity. 441 dermatology: E, in no network.
    # Nearest in-network provider active at the month's end: 606 cardiology A (3 km; in Feb too,
    # B being inactive), 441 cardiology C (12), dermatology D (E, nearer to 606 and in 441 itself,
    # is in no network): 606 950 km, 441 890, 303 5. 'unknown' has no centroid: null.
    # Per 100,000 residents (606 300k, 441 100k, 303 unknown: 400k in all): cardiology Jan
    # 606 2/3 = 0.6667, 441 1.0, all 3 of 400k = 0.75; Feb 606 1/3 = 0.3333 < 0.7 x 0.5 (A and C
    # of 400k): below the standard; dermatology: E's 1 of 400k = 0.25, 606 none: 0 < 0.175.
    # Referral to completion (the completed referral's record time): 606 cardiology Jan 7 days,
    # 606 dermatology Feb 3; the scheduled and cancelled ones are not completed.
    # Leaked share over the cell's months to this one: 606 cardiology 0 of 1 in Jan and Jan-Feb,
    # 441 cardiology 1 of 1 by Feb, 606 dermatology 1 of 1; no change: nothing before January.
    actual = adequacy
    above = "utilisation above 1.2"
    below = "providers per 100k below 0.7 of the network's"
    expected = spark.createDataFrame(
        [
            ("606", "Cardiology", "2024-01", 5, 1, 0, 0.0, None, 1, 7.0, 6, 2, 2.0, 4.0, 1.5, 3.0, 300_000, 0.6667, 0.75, True, above),
            ("606", "Cardiology", "2024-02", 2, 0, 0, 0.0, None, 0, None, 2, 1, 2.0, 2.0, 1.0, 3.0, 300_000, 0.3333, 0.5, True, below),
            ("441", "Cardiology", "2024-01", 2, 0, 0, None, None, 0, None, 2, 1, 2.0, 2.0, 1.0, 12.0, 100_000, 1.0, 0.75, False, None),
            ("441", "Cardiology", "2024-02", 2, 1, 1, 1.0, None, 0, None, 3, 1, 2.0, 2.0, 1.5, 12.0, 100_000, 1.0, 0.5, True, above),
            ("unknown", "Cardiology", "2024-02", 1, 0, 0, None, None, 0, None, 1, 0, 2.0, 0.0, None, None, None, None, 0.5, False, None),
            ("606", "Dermatology", "2024-02", 0, 1, 1, 1.0, None, 1, 3.0, 1, 0, None, None, None, 950.0, 300_000, 0.0, 0.25, True,
             f"no active provider; nearest provider beyond 100 km; {below}"),
            ("303", "Dermatology", "2024-01", 0, 0, 0, None, None, 0, None, 0, 1, None, None, None, 5.0, None, None, 0.25, False, None),
            ("303", "Dermatology", "2024-02", 0, 0, 0, None, None, 0, None, 0, 1, None, None, None, 5.0, None, None, 0.25, False, None),
            ("441", "Dermatology", "2024-01", 0, 0, 0, None, None, 0, None, 0, 1, None, None, None, 890.0, 100_000, 1.0, 0.25, False, None),
            ("441", "Dermatology", "2024-02", 0, 0, 0, None, None, 0, None, 0, 1, None, None, None, 890.0, 100_000, 1.0, 0.25, False, None),
        ],
        ADEQUACY_SCHEMA,
    )
    assert list(actual.columns) == list(COLUMNS)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_completion_days_are_the_median_of_completed_referrals(spark: SparkSession) -> None:
    encounters, referrals, providers, homes, _, _ = _inputs(spark)
    jan = date(2024, 1, 8)
    more = spark.createDataFrame(
        [("T2", "C", "C", jan, " Completed ", "Cardiology", datetime(2024, 1, 12, 23)),  # 4 days
         ("T2", "C", "C", jan, "completed", "Cardiology", datetime(2024, 1, 17)),        # 9 days
         ("T2", "C", "C", jan, "completed", "Cardiology", None),                         # no record time: no wait
         ("T2", "C", "C", jan, "scheduled", "Cardiology", datetime(2024, 1, 30))],
        referrals.schema,
    )
    cells = network_adequacy(encounters, referrals.unionByName(more), providers, homes, AS_OF, SETTINGS)
    row = cells.where("zip3 = '441' AND specialty = 'Cardiology' AND service_month = '2024-01'").collect()[0]
    assert (row.referrals, row.referrals_completed, row.completion_days_p50) == (4, 2, 6.5)


def test_default_thresholds_need_volume_and_more_than_twice_the_capacity(adequacy) -> None:
    # Defaults 2.0 and 5: 606 Jan (6 at 1.5) is not above 2.0, 3 km away, and at 0.6667 per
    # 100k not below 0.6 x 0.75; 441 Feb (3) and the dermatology referral (1) are below the
    # minimum demand of 5.
    assert flag_expansion(adequacy, AdequacySettings()).where("expand_network").count() == 0
    # At 1.4 only 606 Jan (1.5 with 6 of demand) is above the threshold.
    lower = flag_expansion(adequacy, AdequacySettings(utilisation_threshold=1.4))
    assert [tuple(r) for r in lower.where("expand_network").select("zip3", "service_month", "expansion_reason").collect()] == [
        ("606", "2024-01", "utilisation above 1.4")]


def test_each_standard_flags_on_its_own(adequacy) -> None:
    def flagged(settings: AdequacySettings) -> list[tuple]:
        rows = flag_expansion(adequacy, settings).where("expand_network")
        return sorted(tuple(r) for r in rows.select("zip3", "specialty", "service_month", "expansion_reason").collect())

    lenient = {"utilisation_threshold": 10.0, "min_demand": 1, "max_distance_km": 1000.0, "min_ratio_share": 0.0}
    # Only the area without a dermatologist is left, for that reason alone.
    assert flagged(AdequacySettings(**lenient)) == [("606", "Dermatology", "2024-02", "no active provider")]
    # 10 km: 441's cardiologist C is 12 km from its centroid (the 0-demand dermatology cells are not judged).
    assert flagged(AdequacySettings(**{**lenient, "max_distance_km": 10.0})) == [
        ("441", "Cardiology", "2024-01", "nearest provider beyond 10 km"),
        ("441", "Cardiology", "2024-02", "nearest provider beyond 10 km"),
        ("606", "Dermatology", "2024-02", "no active provider; nearest provider beyond 10 km"),
    ]
    # Share 0.9: 606 Jan 0.6667 < 0.675 too; 441 (1.0) never.
    reason = "providers per 100k below 0.9 of the network's"
    assert flagged(AdequacySettings(**{**lenient, "min_ratio_share": 0.9})) == [
        ("606", "Cardiology", "2024-01", reason),
        ("606", "Cardiology", "2024-02", reason),
        ("606", "Dermatology", "2024-02", f"no active provider; {reason}"),
    ]


def test_without_distances_or_population_no_standard_is_judged(spark: SparkSession) -> None:
    encounters, referrals, providers, homes, _, _ = _inputs(spark)
    plain = network_adequacy(encounters, referrals, providers, homes, AS_OF, SETTINGS)
    assert plain.where("nearest_provider_km is not null or population is not null "
                       "or providers_per_100k is not null or network_providers_per_100k is not null").count() == 0
    assert sorted(tuple(r) for r in plain.where("expand_network").select("zip3", "service_month", "expansion_reason").collect()) == [
        ("441", "2024-02", "utilisation above 1.2"), ("606", "2024-01", "utilisation above 1.2"),
        ("606", "2024-02", "no active provider")]


def test_area_population_file_is_read_and_checked(spark: SparkSession, tmp_path) -> None:
    good = tmp_path / "good.csv"
    good.write_text("zip3,population\n606,250000\n441, 90000\n", encoding="utf-8")
    assert sorted(tuple(r) for r in read_area_population(spark, str(good)).collect()) == [("441", 90000), ("606", 250000)]
    assert read_area_population(spark, str(tmp_path / "absent.csv")) is None
    for body, line in (("606,250000\n60,1\n", 3), ("606,-5\n", 2), ("606,1\n606,2\n", 3), ("606,\n", 2)):
        bad = tmp_path / "bad.csv"
        bad.write_text("zip3,population\n" + body, encoding="utf-8")
        with pytest.raises(ValueError, match=f"line {line}: expected a new 3-digit zip3"):
            read_area_population(spark, str(bad))


def test_settings_come_from_config_and_bad_values_are_rejected(base_config) -> None:
    assert AdequacySettings.from_config(base_config) == AdequacySettings()
    tuned = base_config.with_overrides(**{"curated.adequacy": {"utilisation_threshold": "1.3", "min_demand": 2}})
    assert AdequacySettings.from_config(tuned) == AdequacySettings(1.3, 2)
    access = base_config.with_overrides(**{"curated.adequacy": {"max_distance_km": 25, "min_ratio_share": "0.5"}})
    assert AdequacySettings.from_config(access) == AdequacySettings(max_distance_km=25.0, min_ratio_share=0.5)
    with pytest.raises(ConfigError, match="max_distance_km > 0"):
        AdequacySettings.from_config(base_config.with_overrides(**{"curated.adequacy": {"max_distance_km": 0}}))
    with pytest.raises(ConfigError, match="min_ratio_share <= 1"):
        AdequacySettings.from_config(base_config.with_overrides(**{"curated.adequacy": {"min_ratio_share": 1.5}}))
    with pytest.raises(ConfigError, match="unknown key"):
        AdequacySettings.from_config(base_config.with_overrides(**{"curated.adequacy": {"threshold": 1}}))
    with pytest.raises(ConfigError, match="utilisation_threshold > 0"):
        AdequacySettings.from_config(base_config.with_overrides(**{"curated.adequacy": {"utilisation_threshold": 0}}))


def test_leaked_share_rising_quarter_on_quarter_is_a_reason(spark: SparkSession) -> None:
    # One cell, 30 referrals a month, none in April; leaked 3, 3, 3 (Jan-Mar), -, 9, 9, 12 (May-Jul).
    # Share over the three months to each: Jan-Mar 0.1 (nothing before January: no change); May
    # (Mar-May) 12 of 60 = 0.2 against Jan-Feb's 6 of 60 = 0.1: +0.1; Jun (Apr-Jun) 18 of 60 = 0.3
    # against Jan-Mar's 9 of 90: +0.2; Jul (May-Jul) 30 of 90 = 0.3333 against Feb-Apr's 6 of 60: +0.2333.
    months = [("2024-01", 3), ("2024-02", 3), ("2024-03", 3), ("2024-05", 9), ("2024-06", 9), ("2024-07", 12)]
    rows = [("606", "Cardiology", m, 0, 30, leaked, 30, 2, 20.0, 40.0, 0.75, 3.0, None, None, None)
            for m, leaked in months]
    base = spark.createDataFrame(rows, "zip3 string, specialty string, service_month string, encounters long, "
                                 "referrals long, referrals_leaked long, demand long, active_providers long, "
                                 "throughput_per_provider double, capacity double, utilisation double, "
                                 "nearest_provider_km double, population long, providers_per_100k double, "
                                 "network_providers_per_100k double")
    measured = base.select("*", *leakage_trend(F.col("referrals"), F.col("referrals_leaked")))
    got = {r.service_month: (r.leaked_share_3m, r.leaked_share_change) for r in measured.collect()}
    assert got == {"2024-01": (0.1, None), "2024-02": (0.1, None), "2024-03": (0.1, None),
                   "2024-05": (0.2, 0.1), "2024-06": (0.3, 0.2), "2024-07": (0.3333, 0.2333)}
    flagged = flag_expansion(measured, AdequacySettings(leakage_rise=0.15)).where("expand_network")
    assert sorted((r.service_month, r.expansion_reason) for r in flagged.collect()) == [
        ("2024-06", "leaked share up more than 0.15"), ("2024-07", "leaked share up more than 0.15")]
    assert flag_expansion(measured, AdequacySettings(leakage_rise=0.25)).where("expand_network").count() == 0
