"""The static dashboard report: chart frames (chispa), the pages written from hand-made curated
tables, and the pages opened in headless Chromium (skipped, with the reason, without it)."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from pathlib import Path

import pytest
from chispa import assert_df_equality

from carelake.dashboards import build_report
from carelake.dashboards import frames as F_
from carelake.dashboards.browser import browser_context, check_page, missing_browser_reason
from carelake.dashboards.pages import DASHBOARDS, FRAMES
from carelake.delta import open_tables
from carelake.run import EntityCounts, RunSummary, StageSummary
from tests.dashboard_tables import (
    ENCOUNTERS,
    LEAK_ROWS,
    LEAK_SCHEMA,
    PAID,
    ROUTE_TO,
    write_dashboard_tables,
)


def test_specialty_months_weights_rates_by_encounters(spark) -> None:
    kpi = spark.createDataFrame(
        [("1", "2024-01", 2, 100.0, 0.5, 0.0, 4.0, 10.0, 5.0), ("2", "2024-01", 8, 300.0, 0.0, 0.25, 3.0, 20.0, 10.0),
         ("3", "unknown", 5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)],
        "npi string, service_month string, encounters long, total_cost double, readmission_rate double, "
        "complication_rate double, avg_satisfaction double, billed double, paid double",
    )
    features = spark.createDataFrame([("1", "cardiology"), ("2", "cardiology"), ("3", "cardiology")], "npi string, specialty string")
    expected = spark.createDataFrame(
        [("cardiology", "2024-01", 2, 10, 400.0, 30.0, 15.0, 0.1, 0.2, 3.2)],
        "specialty string, service_month string, providers long, encounters long, total_cost double, billed double, "
        "paid double, readmission_rate double, complication_rate double, avg_satisfaction double",
    )
    actual = F_.specialty_months(kpi, features)
    assert_df_equality(actual, expected.select(*actual.columns), ignore_nullable=True, allow_nan_equality=True)


def test_quarantine_by_rule_counts_a_row_under_each_rule(spark) -> None:
    quarantine = spark.createDataFrame(
        [("encounters", "hospital_a", ["npi_luhn", "orphan:npi"], datetime(2024, 3, 1, 8)),
         ("encounters", None, ["npi_luhn"], datetime(2024, 3, 1, 9))],
        "entity string, source_system string, reasons array<string>, quarantined_at timestamp",
    )
    expected = spark.createDataFrame(
        [("2024-03-01", "hospital_a", "encounters", "npi_luhn", 1), ("2024-03-01", "hospital_a", "encounters", "orphan:npi", 1),
         ("2024-03-01", "unknown", "encounters", "npi_luhn", 1)],
        "quarantined_on string, hospital string, entity string, rule string, rows long",
    )
    assert_df_equality(F_.quarantine_by_rule(quarantine), expected, ignore_row_order=True, ignore_nullable=True)


def test_patient_mix_bands_ages_at_the_report_date(spark) -> None:
    patients = spark.createDataFrame(
        [("hospital_a", "F", 2010, True, 1, 1, 5.0), ("hospital_a", "F", 2006, False, 2, 0, 5.0), ("hospital_a", "F", None, False, 1, 0, 1.0)],
        "source_system string, sex string, birth_year int, high_risk boolean, visits_365d long, readmissions_365d long, total_cost double",
    )
    actual = F_.patient_mix(patients, date(2024, 6, 1)).select("age_band", "patients", "high_risk_patients")
    expected = spark.createDataFrame([("0-17", 1, 1), ("18-44", 1, 0), ("unknown", 1, 0)], "age_band string, patients long, high_risk_patients long")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_routing_latest_routes_the_latest_leaks_by_referral_routing_rank(spark) -> None:
    # No route_to column in the demand rows: the routes must come from referral_routing.
    demand = spark.createDataFrame(LEAK_ROWS, LEAK_SCHEMA)
    # Ranks out of NPI order and out of row order; a cell with no eligible provider has one rank 0 row.
    routing = spark.createDataFrame(
        [("100", "cardiology", 3, "n1", 4, "third"), ("100", "cardiology", 1, "n9", 4, "best: quality O/E 0.80"),
         ("100", "cardiology", 4, "n0", 4, "fourth"), ("100", "cardiology", 2, "n5", 4, "second"),
         ("200", "oncology", 0, None, 0, "no eligible provider among 2 of the specialty: 2 beyond 80 km"),
         ("300", "oncology", 1, "n7", 1, "only")],
        "zip3 string, specialty string, rank int, npi string, eligible_providers long, reason string",
    )
    expected = spark.createDataFrame(
        [("100", "cardiology", 4, "n9, n5, n1", "best: quality O/E 0.80"),
         ("200", "oncology", 0, None, "no eligible provider among 2 of the specialty: 2 beyond 80 km"),
         ("400", "urology", 0, None, F_.NOT_ROUTED)],
        "zip3 string, specialty string, eligible_providers long, route_to string, routing_reason string",
    )
    actual = F_.routing_latest(demand, routing)
    assert {r.service_month for r in actual.collect()} == {"2024-12"}
    assert_df_equality(actual.select(*expected.columns), expected, ignore_row_order=True, ignore_nullable=True)


def test_a_frame_missing_a_column_names_it(spark) -> None:
    with pytest.raises(ValueError, match=r"kpi_provider: expected column\(s\) readmission_rate"):
        F_.specialty_months(spark.createDataFrame([("1", "2024-01", 1)], "npi string, service_month string, encounters long"),
                            spark.createDataFrame([], "npi string, specialty string"))


@pytest.fixture(scope="module")
def report(spark, base_config, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The report written over hand-made curated tables, with a run summary to reconcile."""
    config = base_config.with_overrides(**{"lakehouse.root": str(tmp_path_factory.mktemp("dashboards") / "lakehouse")})
    tables = open_tables(spark, config)
    versions = write_dashboard_tables(spark, config, tables)
    gx = Path(config.root) / "_runs" / "20241231T000000Z-aaaaaa" / "gx"
    gx.mkdir(parents=True)
    (gx / "claims.json").write_text(json.dumps({
        "success": False, "statistics": {"evaluated_expectations": 7, "unsuccessful_expectations": 1},
        "results": [{"success": False, "expectation_config": {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "npi"}}}],
    }))
    stage = StageSummary("process")
    stage.entities["claims"] = EntityCounts(rows_in=10, rows_valid=7, rows_quarantined=2, duplicates_dropped=1, rows_written=7, delta_version=3)
    summary = RunSummary(run_id="20241231T000000Z-bbbbbb", config_file="conf/local.yaml", root=config.root, status="ok", stages=[stage])
    index = build_report(spark, config, tables, summary)
    return {"config": config, "index": Path(index), "versions": versions, "summary": summary}


def test_report_writes_an_index_and_a_page_per_dashboard(report: dict) -> None:
    folder = report["index"].parent
    assert report["index"] == Path(report["config"].root) / "_reports" / "latest" / "index.html"
    assert sorted(p.name for p in folder.glob("*.html")) == sorted(["index.html", *(f"{d.key}.html" for d in DASHBOARDS)])
    index = report["index"].read_text()
    for d in DASHBOARDS:
        assert f'href="{d.key}.html"' in index
    assert "lineage.html" not in index  # no lineage page yet: no link to it


def test_each_chart_names_its_tables_versions_and_as_of(report: dict) -> None:
    finance = (report["index"].parent / "finance.html").read_text()
    version = report["versions"]["curated.kpi_finance"]
    assert f"From curated.kpi_finance v{version} · aggregates as of 2024-12-31 · filters: hospital, month" in finance
    doctors = (report["index"].parent / "doctors.html").read_text()
    assert "filters: month, specialty" in doctors


def _page_data(html: Path) -> dict:
    """The chart rows a page embeds (``window.CARELAKE_PAGE``)."""
    found = re.search(r"window\.CARELAKE_PAGE = (\{.*?\});</script>", html.read_text(), re.S)
    assert found, f"{html.name} embeds no chart rows"
    return json.loads(found.group(1))  # JSON reads the "<\\/" escape as "</"


def test_the_routing_table_routes_by_referral_routing(report: dict) -> None:
    frame = _page_data(report["index"].parent / "providers.html")["frames"]["routing_latest"]
    rows = [dict(zip(frame["columns"], values, strict=True)) for values in frame["data"]]
    assert [(r["zip3"], r["specialty"], r["route_to"]) for r in rows] == [("100", "cardiology", ", ".join(ROUTE_TO))]
    assert rows[0]["eligible_providers"] == 3 and rows[0]["routing_reason"] == "rank 1"
    source = "From curated.network_demand_by_zip v{}, curated.referral_routing v{}".format(
        report["versions"]["curated.network_demand_by_zip"], report["versions"]["curated.referral_routing"])
    assert source in (report["index"].parent / "providers.html").read_text()


def test_pages_load_only_files_beside_them(report: dict) -> None:
    folder = report["index"].parent
    for html in sorted(folder.glob("*.html")):
        page = html.read_text()
        assert not re.search(r'(src|href)="(https?:)?//', page), f"{html.name} loads something from elsewhere"
        for source in re.findall(r"<script[^>]+src=\"([^\"]+)\"", page):
            assert "/" not in source and ":" not in source, f"{html.name}: {source} is not a file beside it"
            assert (folder / source).read_text()[:200].startswith("/**\n* plotly.js v"), source
    page = (folder / "executive.html").read_text()
    assert "<script src=" in page and len(page) < 200_000  # Plotly loaded from its one file, not inlined


def test_index_links_the_lineage_page_when_it_exists(spark, report: dict) -> None:
    lineage = report["index"].parent / "lineage.html"
    lineage.write_text("<html><body>lineage</body></html>")
    try:
        build_report(spark, report["config"], open_tables(spark, report["config"]), report["summary"])
        assert 'href="lineage.html"' in report["index"].read_text()
    finally:
        lineage.unlink()
        build_report(spark, report["config"], open_tables(spark, report["config"]), report["summary"])


def test_every_chart_frame_is_known() -> None:
    for dashboard in DASHBOARDS:
        for chart in dashboard.charts:
            assert chart.frame in FRAMES or chart.frame in ("reconciliation", "expectations"), chart.key


BROWSER = missing_browser_reason()


def _tile_values(page, chart: str) -> list[str]:
    return page.eval_on_selector_all(f"#chart-{chart} text.number", "els => els.map(e => e.textContent)")


@pytest.mark.skipif(BROWSER is not None, reason=f"browser tests need Chromium and Playwright: {BROWSER}")
def test_every_page_renders_every_chart_with_data_in_chromium(report: dict) -> None:
    shots = Path(report["config"].root) / "_reports" / "screenshots"
    with browser_context() as context:
        for html in sorted(report["index"].parent.glob("*.html")):
            check = check_page(context, html.as_uri(), shots / f"{html.stem}.png")
            assert not check.errors, f"{html.name}: {check.errors}"
            assert Path(check.screenshot).stat().st_size > 10_000
            if html.stem == "index":
                continue
            expected = {f"chart-{c.key}" for d in DASHBOARDS if d.key == html.stem for c in d.charts}
            assert set(check.charts) == expected
            broken = {k: v for k, v in check.charts.items() if v["state"] != "rendered" or int(v["points"]) == 0}
            assert not broken, f"{html.name}: charts without data: {broken}"


@pytest.mark.skipif(BROWSER is not None, reason=f"browser tests need Chromium and Playwright: {BROWSER}")
def test_filters_redraw_the_charts_with_the_planted_numbers(report: dict) -> None:
    page_uri = (report["index"].parent / "executive.html").as_uri()
    with browser_context() as context:
        page = context.new_page()
        page.goto(page_uri)
        page.wait_for_selector("body[data-state=ready]")
        total = sum(sum(v) for v in ENCOUNTERS.values())  # the 'unknown' month row is left out
        assert _tile_values(page, "exec_care_tiles")[0] == f"{total}"
        assert page.get_attribute("#chart-exec_visits", "data-points") == str(2 * len(ENCOUNTERS))
        page.select_option("#filter-hospital", "hospital_b")
        page.wait_for_selector("body[data-state=ready]")
        assert _tile_values(page, "exec_care_tiles")[0] == f"{sum(ENCOUNTERS['hospital_b'])}"
        assert page.get_attribute("#chart-exec_visits", "data-points") == "2"
        page.select_option("#filter-from", "2024-12")
        page.wait_for_selector("body[data-state=ready]")
        assert _tile_values(page, "exec_care_tiles")[0] == f"{ENCOUNTERS['hospital_b'][1]}"
        assert _tile_values(page, "exec_money_tiles")[1] == f"{PAID['hospital_b'][1]:.0f}"
        page.close()
        # Paid is also the numerator of the collection rate: it must be summed once.
        page = context.new_page()
        page.goto((report["index"].parent / "finance.html").as_uri())
        page.wait_for_selector("body[data-state=ready]")
        billed, allowed, paid, collection, denial = _tile_values(page, "finance_tiles")
        assert sum(sum(v) for v in PAID.values()) == 1000.0  # paid; allowed is 1.5 x paid on each of 2 payer rows
        assert (paid, allowed) == ("1.00k", "3.00k")  # d3's ',.3s' format
        assert collection == f"{1 / 3:.1%}"
        page.close()
