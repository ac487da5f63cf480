"""Apache Superset over the Thrift server with the repository's dashboards: a clinician of one
hospital gets no other hospital's rows, and every dashboard draws in headless Chromium.

Superset lives in its own environment (``make bi-setup``); without it these tests are skipped
with that reason, never installed from here."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from pathlib import Path

import pytest
import yaml

from carelake.dashboards.browser import browser_context, missing_browser_reason
from carelake.dashboards.frames import NOT_ROUTED
from carelake.dashboards.superset import (
    DATASETS,
    definition,
    missing_superset_reason,
    start_superset,
)
from carelake.delta import open_tables
from tests.conftest import REPO
from tests.dashboard_tables import ENCOUNTERS, LEAK_ROWS, LEAK_SCHEMA, write_dashboard_tables

SUPERSET = missing_superset_reason()
needs_superset = pytest.mark.skipif(SUPERSET is not None, reason=f"Superset tests: {SUPERSET}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_definition_gives_each_clinician_a_row_filter(base_config) -> None:
    spec = definition(base_config, "127.0.0.1", 10000)
    roles = {c["role"]: c for c in spec["clinicians"]}
    # One role per hospital the config gives clinicians (read from the YAML, not from carelake).
    hospitals = yaml.safe_load((REPO / "conf" / "local.yaml").read_text())["access"]["roles"]["clinician"]["hospital"]
    assert len(hospitals) >= 3
    assert set(roles) == {f"clinician_{h}" for h in hospitals}
    assert roles["clinician_hospital_a"]["clause"] == "hospital = 'hospital_a'"
    assert "kpi_patient" not in roles["clinician_hospital_a"]["visible"]  # all-hospital totals
    assert {c["dataset"] for d in spec["dashboards"] for c in d["charts"]} <= set(DATASETS)


def test_table_charts_show_rates_as_percentages_and_columns_by_their_headers(base_config) -> None:
    spec = definition(base_config, "127.0.0.1", 10000)
    tables = [c for d in spec["dashboards"] for c in d["charts"] if c["viz_type"] == "table"]
    outcomes = next(c for c in tables if "readmission_rate_shrunk" in c["params"]["all_columns"])
    formats = outcomes["params"]["column_config"]
    assert formats["readmission_rate_shrunk"] == {"d3NumberFormat": ".1%"}  # 0.12 shows as 12.0%
    assert "npi" not in formats and "specialty" not in formats  # text columns keep their values
    shown = {c for t in tables for c in t["params"]["all_columns"]}
    assert shown <= set(spec["column_labels"]), f"columns without a header: {shown - set(spec['column_labels'])}"


def test_count_axes_label_fractional_ticks_and_rate_axes_keep_their_format(base_config) -> None:
    spec = definition(base_config, "127.0.0.1", 10000)
    charts = {c["name"]: c for d in spec["dashboards"] for c in d["charts"]}
    # "Areas to expand" counts cells: on a small range its ticks are 0.2 apart.
    assert charts["Areas to expand"]["params"]["y_axis_format"] == ",.2~f"
    rates = [c for c in charts.values() if c["viz_type"].startswith("echarts") and c["params"]["y_axis_format"].endswith("%")]
    assert rates, "no chart with a rate axis"


def test_the_routing_dataset_routes_by_referral_routing_rank(spark) -> None:
    """The Superset routing dataset's SQL, run by Spark over views standing in for the served
    tables: the latest month's leaked cells, routed to referral_routing's ranks 1-3 in order."""
    views = {
        "network_demand_by_zip": spark.createDataFrame(LEAK_ROWS, LEAK_SCHEMA),
        "referral_routing": spark.createDataFrame(
            [("100", "cardiology", 3, "n1", 4, "third"), ("100", "cardiology", 1, "n9", 4, "best"),
             ("100", "cardiology", 4, "n0", 4, "fourth"), ("100", "cardiology", 2, "n5", 4, "second"),
             ("200", "oncology", 0, None, 0, "no eligible provider among 2 of the specialty: 2 beyond 80 km"),
             ("300", "oncology", 1, "n7", 1, "only")],
            "zip3 string, specialty string, rank int, npi string, eligible_providers long, reason string",
        ),
    }
    for name, df in views.items():
        df.createOrReplaceTempView(f"superset_test_{name}")
    try:
        rows = spark.sql(DATASETS["routing_latest"].replace("curated.", "superset_test_")).collect()
    finally:
        for name in views:
            spark.catalog.dropTempView(f"superset_test_{name}")
    assert sorted((r.service_month, r.zip3, r.eligible_providers, r.route_to, r.routing_reason) for r in rows) == [
        ("2024-12", "100", 4, "n9, n5, n1", "best"),
        ("2024-12", "200", 0, None, "no eligible provider among 2 of the specialty: 2 beyond 80 km"),
        ("2024-12", "400", 0, None, NOT_ROUTED),
    ]


@pytest.fixture(scope="module")
def superset(spark, base_config, tmp_path_factory: pytest.TempPathFactory):
    """Superset (and a Thrift server it starts) over the hand-made curated tables."""
    root = tmp_path_factory.mktemp("superset") / "lakehouse"
    config = base_config.with_overrides(**{"lakehouse.root": str(root)})
    write_dashboard_tables(spark, config, open_tables(spark, config))
    os.environ["CARELAKE_LAKEHOUSE__ROOT"] = str(root)  # the Thrift server subprocess reads it
    try:
        server = start_superset(config, port=_free_port(), thrift_port=_free_port())
    finally:
        os.environ.pop("CARELAKE_LAKEHOUSE__ROOT", None)
    yield server, config
    server.stop()


def _login(url: str, user: str, password: str) -> str:
    body = json.dumps({"username": user, "password": password, "provider": "db", "refresh": False}).encode()
    request = urllib.request.Request(f"{url}/api/v1/security/login", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["access_token"]


def _api(url: str, token: str, path: str, payload: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{url}{path}", json.dumps(payload).encode() if payload is not None else None,
        {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def _hospital_rows(url: str, token: str) -> dict[str, int]:
    datasets = _api(url, token, "/api/v1/dataset/?q=(filters:!((col:table_name,opr:eq,value:kpi_hospital)))")["result"]
    query = {
        "datasource": {"id": datasets[0]["id"], "type": "table"},
        "queries": [{"columns": ["hospital"], "metrics": [{"expressionType": "SQL", "sqlExpression": "SUM(encounters)", "label": "e"}],
                     "row_limit": 100}],
        "result_format": "json", "result_type": "full",
    }
    data = _api(url, token, "/api/v1/chart/data", query)["result"][0]["data"]
    return {row["hospital"]: int(row["e"]) for row in data}


@needs_superset
def test_a_clinician_sees_only_their_hospitals_rows(superset) -> None:
    server, _ = superset
    users = server.credentials()
    everything = _hospital_rows(server.url, _login(server.url, "admin", users["admin"]))
    assert everything == {h: sum(v) for h, v in ENCOUNTERS.items()}  # both hospitals for the admin
    own = _hospital_rows(server.url, _login(server.url, "clinician_hospital_a", users["clinician_hospital_a"]))
    assert own == {"hospital_a": sum(ENCOUNTERS["hospital_a"])}


BROWSER = missing_browser_reason()


@needs_superset
@pytest.mark.skipif(BROWSER is not None, reason=f"browser tests need Chromium and Playwright: {BROWSER}")
def test_every_superset_dashboard_draws_its_charts_in_chromium(superset) -> None:
    server, config = superset
    users = server.credentials()
    token = _login(server.url, "admin", users["admin"])
    dashboards = _api(server.url, token, "/api/v1/dashboard/?q=(page_size:100)")["result"]
    slugs = sorted(d["slug"] for d in dashboards if (d["slug"] or "").startswith("carelake-"))
    assert slugs, "no carelake dashboards were provisioned"
    shots = Path(config.root) / "_reports" / "screenshots" / "superset"

    def drawn(page) -> None:
        page.wait_for_selector(".dashboard-chart-id-0, .chart-container, [data-test='chart-container']", timeout=120_000)
        page.wait_for_function(
            "() => document.querySelectorAll('.loading, [data-test=\"loading-indicator\"]').length === 0", timeout=180_000
        )

    with browser_context(width=1600, height=1200) as context:
        login = context.new_page()
        login.goto(f"{server.url}/login/")
        login.fill("input[name=username], #username", "admin")
        login.fill("input[name=password], #password", users["admin"])
        login.keyboard.press("Enter")
        login.wait_for_url(lambda u: "/login" not in u, timeout=120_000)
        login.close()
        for slug in slugs:
            page = context.new_page()
            console = []
            page.on("pageerror", lambda exc, console=console: console.append(str(exc)))
            page.goto(f"{server.url}/superset/dashboard/{slug}/?standalone=1")
            drawn(page)
            errors = page.eval_on_selector_all("[data-test='chart-container'] .alert, .chart-container .alert", "els => els.map(e => e.textContent)")
            charts = page.eval_on_selector_all(
                "[data-test='chart-container'], .chart-container",
                "els => els.map(e => e.querySelector('canvas, svg, table, .big_number, .header-line') !== null)",
            )
            shot = shots / f"{slug}.png"
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
            page.close()
            assert not errors and not console, f"{slug}: {errors} {console}"
            assert charts and all(charts), f"{slug}: {charts.count(False)} of {len(charts)} chart(s) drew nothing"
