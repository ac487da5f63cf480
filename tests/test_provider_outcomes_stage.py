"""``curated.provider_outcomes`` written by the real pipeline: tiny generated files -> ingest,
process, model, aggregates; the table has one row per NPI and as_of with sane figures, a re-run
writes nothing, and the top-providers text ranks from it."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from carelake.curated import run_aggregates, top_providers_report
from carelake.curated.outcomes import MEASURES, TABLE_COLUMNS
from carelake.delta import open_tables
from carelake.storage import table_uri


@pytest.fixture(scope="module")
def lake(spark: SparkSession, tiny_lake: dict) -> dict:
    """The shared tiny lakehouse after a full run (tests/tiny_lake.py): four months, so index
    stays with a complete 30-day follow-up exist."""
    config = tiny_lake["config"]
    assert tiny_lake["summary"].status == "ok", tiny_lake["summary_text"]
    tables = open_tables(spark, config)
    uri = table_uri(config, "curated", "provider_outcomes")
    return {"config": config, "tables": tables, "uri": uri,
            "rows": tables.read(uri).toPandas(),
            "providers": {r.npi for r in tables.read(table_uri(config, "curated", "dim_provider")).select("npi").collect()}}


def test_one_row_per_npi_and_as_of_with_documented_columns(lake: dict) -> None:
    rows = lake["rows"]
    assert list(rows.columns) == list(TABLE_COLUMNS)
    assert len(rows) > 5
    assert not rows.duplicated(["npi", "as_of"]).any()
    assert rows["as_of"].nunique() == 1
    assert set(rows["npi"]) <= lake["providers"]  # attributed to known NPIs, never to a null one


@pytest.mark.parametrize("measure", list(MEASURES))
def test_measure_figures_are_sane(lake: dict, measure: str) -> None:
    rows = lake["rows"]
    has = rows[rows[f"{measure}_cases"].notna()]
    assert len(has) > 0, f"no provider has {measure} cases"
    assert (has[f"{measure}_cases"] >= 1).all()
    assert (has[f"{measure}_observed_per_case"] >= 0).all()
    assert (has[f"{measure}_expected_per_case"] >= 0).all()
    has = has[has[f"{measure}_oe_ratio"].notna()]  # expected 0 (no peer had the event): no ratio
    assert len(has) > 0, f"no provider has a {measure} ratio"
    ratio, shrunk, weight = (has[f"{measure}_{c}"] for c in ("oe_ratio", "oe_ratio_shrunk", "shrinkage_weight"))
    assert weight.between(0, 1).all()
    # Shrunk toward 1: between 1 and the raw ratio (rounding allowed).
    low, high = ratio.where(ratio < 1, 1), ratio.where(ratio > 1, 1)
    assert ((shrunk >= low - 1e-6) & (shrunk <= high + 1e-6)).all()
    assert has[f"{measure}_prior_variance"].nunique() == 1  # one prior per measure, all providers
    for _, ranked in has.groupby("specialty"):
        ranks = sorted(ranked[f"{measure}_rank_in_specialty"].astype(int))
        assert ranks == list(range(1, len(ranked) + 1))
        assert (ranked[f"{measure}_providers_in_specialty"] == len(ranked)).all()
    if measure == "readmission_30d":
        assert (has[f"{measure}_observed_per_case"] <= 1).all()
    if measure == "length_of_stay":
        assert (has[f"{measure}_observed_per_case"] <= 30).all()


def test_cost_cases_reconcile_with_claims(spark: SparkSession, lake: dict) -> None:
    """Every cost case is a (encounter, billing NPI) pair with allowed claims: no more cases than
    such pairs, and no cost case without a claim."""
    config, tables = lake["config"], lake["tables"]
    claims = tables.read(table_uri(config, "curated", "fact_claim"))
    pairs = claims.where(F.col("encounter_key").isNotNull() & F.col("allowed_amount").isNotNull()).select(
        "encounter_key", "npi").distinct().count()
    cases = lake["rows"]["cost_per_case_cases"].sum()
    assert 0 < cases <= pairs


def test_rerun_writes_nothing_and_report_ranks_from_the_table(spark: SparkSession, lake: dict) -> None:
    config, tables, uri = lake["config"], lake["tables"], lake["uri"]
    version = tables.version(uri)
    again = run_aggregates(spark, config, tables, "outcomes-2")
    assert again.status == "nothing-to-do"
    assert tables.version(uri) == version
    report = top_providers_report(spark, config, tables, n=3)
    assert "most cost-effective" in report and "best outcomes" in report
    listed = {line.split()[0] for line in report.splitlines() if line.startswith("    ") and line.split()[0].isdigit()}
    assert listed and listed <= set(lake["rows"]["npi"])
