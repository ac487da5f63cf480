"""referral_routing and route_referral on hand-built inputs: each eligibility rule (network,
active, volume, capacity, distance), the ranking and its reasons, the reason a cell has no
provider; expected rows worked out by hand (docs/routing.md)."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession

from carelake.config import ConfigError
from carelake.curated.routing import COLUMNS, RoutingSettings, referral_routing, route_referral
from carelake.delta import open_tables
from carelake.storage import table_uri

AS_OF = date(2024, 6, 30)
START, OPEN = datetime(2023, 12, 31), datetime(9999, 12, 31)
PROVIDER_SCHEMA = ("npi string, specialty string, zip string, network_id string, employer_id string, active boolean, "
                   "valid_from timestamp, valid_to timestamp")
RULES = RoutingSettings(networks=("N1", "N2"))  # the defaults, with two networks in network


def _inputs(spark: SparkSession) -> dict[str, DataFrame]:
    # Cardiology: A and B eligible; C out of network, D inactive, E one cheap case, F full,
    # G too far, all with better measures than A and B. Orthopedics: H only, too far.
    people = [
        ("A", "Cardiology", "60601", "N1", True), ("B", "Cardiology", "60602", "N2", True),
        ("C", "Cardiology", "60603", "N9", True), ("D", "Cardiology", "60604", "N1", False),
        ("E", "Cardiology", "60605", "N1", True), ("F", "Cardiology", "60606", "N1", True),
        ("G", "Cardiology", "44101", "N1", True), ("H", "Orthopedics", "44102", "N1", True),
    ]
    providers = spark.createDataFrame([(n, s, z, net, "E1", a, START, OPEN) for n, s, z, net, a in people], PROVIDER_SCHEMA)
    # (npi, readmission O/E, complication O/E, cost O/E, complication cases, cost cases)
    measures = [
        ("A", 0.8, 0.9, 1.0, 40, 38), ("B", None, 0.7, 0.9, 30, 30), ("C", 0.5, 0.5, 0.5, 50, 50),
        ("D", 0.5, 0.5, 0.5, 50, 50), ("E", 0.4, 0.4, 0.4, 3, 1), ("F", 0.5, 0.5, 0.5, 90, 90),
        ("G", 0.5, 0.5, 0.5, 50, 50), ("H", 0.9, 0.9, 0.9, 50, 50),
    ]
    outcomes = spark.createDataFrame(
        [(n, AS_OF, r, c, k, cc, kc) for n, r, c, k, cc, kc in measures]
        + [("A", date(2024, 3, 31), 0.1, 0.1, 0.1, 90, 90)],  # an earlier as_of: ignored
        "npi string, as_of date, readmission_30d_oe_ratio_shrunk double, complication_oe_ratio_shrunk double, "
        "cost_per_case_oe_ratio_shrunk double, complication_cases long, cost_per_case_cases long")
    # In the 90 days to as_of: A 9 encounters (and one in January, outside), F 72; others none.
    visits = [("A", date(2024, 5, 10))] * 9 + [("A", date(2024, 1, 10))] + [("F", date(2024, 6, 1))] * 72
    encounters = spark.createDataFrame(visits, "npi string, admit_date date")
    throughput = spark.createDataFrame([("Cardiology", 4.0), ("Cardiology", 4.0), ("Orthopedics", 3.0)],
                                       "specialty string, throughput_per_provider double")
    areas = spark.createDataFrame([("606",), ("606",)], "zip3 string")
    distances = spark.createDataFrame(
        [("606", "60601", 5.0), ("606", "60602", 12.0), ("606", "60603", 3.0), ("606", "60604", 3.0),
         ("606", "60605", 3.0), ("606", "60606", 3.0), ("606", "44101", 120.0), ("606", "44102", 200.0)],
        "zip3 string, zip string, distance_km double")
    return {"providers": providers, "outcomes": outcomes, "encounters": encounters, "throughput": throughput,
            "areas": areas, "distances": distances}


def _route(inputs: dict[str, DataFrame], settings: RoutingSettings) -> DataFrame:
    return referral_routing(inputs["providers"], inputs["outcomes"], inputs["encounters"], inputs["throughput"],
                            inputs["areas"], inputs["distances"], AS_OF, settings)


@pytest.fixture(scope="module")
def inputs(spark: SparkSession) -> dict[str, DataFrame]:
    return _inputs(spark)


def test_only_providers_passing_every_rule_are_ranked_with_their_reasons(spark: SparkSession, inputs) -> None:
    out = _route(inputs, RULES)
    assert out.columns == list(COLUMNS)
    # A: quality (0.8 + 0.9) / 2 = 0.85, cost 1.0 -> 0.7 x 0.85 + 0.3 x 1.0 = 0.895; 9 in 90 days
    # = 9 x 30.4375 / 90 = 3.04 a month against 2 x 4 = 8: headroom 1 - 3.04 / 8 = 0.62.
    # B: readmission unknown counts as 1 -> quality 0.85, cost 0.9 -> 0.865: first. No visits: headroom 1.
    expected = spark.createDataFrame(
        [
            ("606", "Cardiology", 1, "B", 0.85, 0.865, 0.0, 8.0, 1.0, 2, 7, "quality O/E 0.85, cost O/E 0.90, headroom 100%, 12.0 km"),
            ("606", "Cardiology", 2, "A", 0.85, 0.895, 3.04, 8.0, 0.62, 2, 7, "quality O/E 0.85, cost O/E 1.00, headroom 62%, 5.0 km"),
            ("606", "Orthopedics", 0, None, None, None, None, None, None, 0, 1,
             "no eligible provider among 1 of the specialty: 1 beyond 80 km (nearest 200.0 km)"),
        ],
        "zip3 string, specialty string, rank int, npi string, quality_oe double, routing_score double, "
        "recent_monthly_encounters double, capacity double, headroom double, eligible_providers long, "
        "candidates long, reason string")
    assert_df_equality(out.select(*expected.columns), expected, ignore_row_order=True, ignore_nullable=True)


def _ranked(out: DataFrame, specialty: str = "Cardiology") -> list[str]:
    return [r["npi"] for r in out.where(f"specialty = '{specialty}' and rank > 0").orderBy("rank").collect()]


def test_each_rule_when_relaxed_lets_its_provider_in(inputs) -> None:
    # Each excluded provider has better measures than A and B, so relaxing its rule ranks it first.
    assert _ranked(_route(inputs, RoutingSettings(networks=None))) == ["C", "B", "A"]  # network
    assert _ranked(_route(inputs, RoutingSettings(networks=("N1", "N2"), min_cases=1))) == ["E", "B", "A"]  # volume
    # F: 72 x 30.4375 / 90 = 24.35 a month; capacity 10 x 4 = 40 -> headroom 0.39.
    assert _ranked(_route(inputs, RoutingSettings(networks=("N1", "N2"), capacity_multiple=10))) == ["F", "B", "A"]
    relaxed = _route(inputs, RoutingSettings(networks=("N1", "N2"), max_distance_km=250))
    assert _ranked(relaxed) == ["G", "B", "A"]  # distance
    assert _ranked(relaxed, "Orthopedics") == ["H"]


def test_a_cell_with_no_provider_counts_what_each_rule_excluded(spark: SparkSession, inputs) -> None:
    strict = RoutingSettings(networks=("N1",), min_cases=35, max_distance_km=4.0)
    row = _route(inputs, strict).where("specialty = 'Cardiology'").collect()
    assert [(r["rank"], r["npi"], r["eligible_providers"], r["candidates"]) for r in row] == [(0, None, 0, 7)]
    # Out of network: B (N2), C (N9). Inactive: D. Fewer than 35 cases: B (30), E (1). Headroom:
    # F. Beyond 4 km: A (5), B (12), G (120); nearest of all 3.0.
    assert row[0]["reason"] == ("no eligible provider among 7 of the specialty: 2 out of network, 1 inactive, "
                                "2 with fewer than 35 cases, 1 with less than 10% headroom, 3 beyond 4 km (nearest 3.0 km)")


ROWS = [
    {"zip3": "606", "specialty": "Cardiology", "rank": 1, "npi": "B", "network_id": "N2", "as_of": AS_OF, "reason": "rB"},
    {"zip3": "606", "specialty": "Cardiology", "rank": 2, "npi": "A", "network_id": "N1", "as_of": AS_OF, "reason": "rA"},
    {"zip3": "606", "specialty": "Cardiology", "rank": 3, "npi": "K", "network_id": "N1", "as_of": AS_OF, "reason": "rK"},
    {"zip3": "606", "specialty": "Orthopedics", "rank": 0, "npi": None, "as_of": AS_OF, "reason": "none near"},
]


def test_route_referral_reads_the_ranked_rows() -> None:
    answer = route_referral(ROWS, "606", "Cardiology")
    assert [(p["rank"], p["npi"], p["reason"]) for p in answer["providers"]] == [(1, "B", "rB"), (2, "A", "rA"), (3, "K", "rK")]
    assert answer["reason"] is None and answer["as_of"] == AS_OF
    empty = route_referral(ROWS, "606", "Orthopedics")
    assert empty["providers"] == [] and empty["reason"] == "none near"
    assert route_referral(ROWS, "441", "Cardiology") is None


def test_route_referral_keeps_the_referrers_network() -> None:
    assert [(p["rank"], p["npi"]) for p in route_referral(ROWS, "606", "Cardiology", network="N1")["providers"]] == [
        (1, "A"), (2, "K")]
    none = route_referral(ROWS, "606", "Cardiology", network="N7")
    assert none["providers"] == [] and none["reason"] == "no eligible provider in network N7 (3 eligible in other networks)"


def test_procedure_ranks_experienced_providers_first_on_the_procedure_measures() -> None:
    stats = {
        "B": [{"procedure_code": "93458", "volume": 4, "procedure_score": 0.99}],  # too few to rank on
        "A": [{"procedure_code": "93458", "volume": 6, "procedure_score": 0.6}, {"procedure_code": "33533", "volume": 40,
                                                                                 "procedure_score": 0.9}],
        "K": [{"procedure_code": "93458", "volume": 30, "procedure_score": 0.8}],
    }
    answer = route_referral(ROWS, "606", "Cardiology", procedure="93458", procedure_stats=stats)
    assert [(p["rank"], p["npi"], p["procedure_volume"]) for p in answer["providers"]] == [(1, "K", 30), (2, "A", 6), (3, "B", 4)]
    assert answer["providers"][0]["reason"] == "93458: procedure score 0.80, 30 in 365 days; rK"
    assert answer["providers"][2]["reason"] == "93458: 4 in 365 days (fewer than 5), ranked on the general measures; rB"


def test_settings_come_from_config_and_bad_values_are_rejected(base_config) -> None:
    assert RoutingSettings.from_config(base_config) == RoutingSettings()
    tuned = base_config.with_overrides(**{"curated.routing": {"networks": ["N1"], "max_distance_km": "50", "min_cases": 8}})
    assert RoutingSettings.from_config(tuned) == RoutingSettings(networks=("N1",), max_distance_km=50.0, min_cases=8)
    for block, message in [({"distance": 5}, "unknown key"), ({"networks": "N1"}, "list of network ids"),
                           ({"quality_weight": 1.5}, "quality_weight <= 1"), ({"min_cases": "many"}, "expected a number")]:
        with pytest.raises(ConfigError, match=message):
            RoutingSettings.from_config(base_config.with_overrides(**{"curated.routing": block}))


def test_the_aggregates_stage_writes_the_table_by_the_rules(spark: SparkSession, tiny_lake: dict) -> None:
    """The shared tiny lakehouse after a full run (tests/tiny_lake.py): every ranked row passes
    the configured rules, ranks run 1..n by routing_score, an empty cell says why."""
    config = tiny_lake["config"]
    assert tiny_lake["summary"].status == "ok", tiny_lake["summary_text"]
    tables = open_tables(spark, config)
    rows = tables.read(table_uri(config, "curated", "referral_routing")).toPandas()
    features = tables.read(table_uri(config, "curated", "provider_features")).toPandas().set_index("npi")
    s = RoutingSettings.from_config(config)
    assert list(rows.columns) == list(COLUMNS)
    assert not rows.duplicated(["zip3", "specialty", "rank"]).any()
    ranked, empty = rows[rows["rank"] > 0], rows[rows["rank"] == 0]
    assert len(ranked) > 0 and len(empty) > 0
    assert (ranked["headroom"] >= s.min_headroom).all() and (ranked["distance_km"] <= s.max_distance_km).all()
    assert (ranked["cases"] >= s.min_cases).all()
    assert features.loc[ranked["npi"], "active"].all() and features.loc[ranked["npi"], "network_id"].notna().all()
    assert ranked["reason"].str.match(r"^quality O/E \d\.\d\d, cost O/E \d\.\d\d, headroom -?\d+%, \d+\.\d km$").all()
    for _, cell in ranked.groupby(["zip3", "specialty"]):
        cell = cell.sort_values("rank")
        assert list(cell["rank"]) == list(range(1, len(cell) + 1)) == list(range(1, cell["eligible_providers"].iloc[0] + 1))
        assert cell["routing_score"].is_monotonic_increasing
    assert empty["npi"].isna().all() and empty["reason"].str.startswith("no eligible provider among").all()
    assert set(rows["zip3"]) <= set(tables.read(table_uri(config, "curated", "patient_summary")).toPandas()["zip3"])
