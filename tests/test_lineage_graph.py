"""Lineage events, the graph read back from them, the batch question and the page (no Spark).

The events are sent through openlineage-python's file transport exactly as a run sends them;
the stage facts are written by hand here, so every expected answer is the hand-written story:
batch B1 ingested, processed, modelled, aggregated, then rolled back; batch B2 only ingested.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from openlineage.client.facet_v2 import column_lineage_dataset

from carelake.lineage.events import (
    RowCountsFacet,
    SourceFilesFacet,
    StageFacts,
    StageLineage,
    column_lineage,
    make_client,
)
from carelake.lineage.graph import event_files, load_graph
from carelake.lineage.page import page_data, render_page
from carelake.lineage.query import describe, describe_batch
from carelake.lineage.settings import lineage_settings


@pytest.fixture
def lineage_config(base_config, tmp_path: Path):
    return base_config.with_overrides(**{"lakehouse.root": str(tmp_path / "lake"), "lineage.enabled": True})


def _uri(config, label: str) -> str:
    return f"{Path(config.root).resolve()}/{label}"


def _send_story(config) -> None:
    client = make_client(config)
    assert client is not None
    u = lambda label: _uri(config, label)  # noqa: E731
    folder = u("landing/hospital_a/encounters")
    files = [{"name": "hospital_a/encounters/e1.csv", "uri": folder + "/e1.csv", "sha256": "ab" * 32, "sizeBytes": 10,
              "rows": 3, "status": "ingested", "reason": None}]
    ingest = StageFacts("ingest", inputs={folder: None}, outputs={u("raw/encounters"): 1}, batches=["B1"], batch_action="written",
                        input_facets={folder: {"carelake_sourceFiles": SourceFilesFacet(files=files)}},
                        output_facets={u("raw/encounters"): {"columnLineage": column_lineage({"satisfaction": [(folder, "satisfaction")]}, "raw")}})
    process = StageFacts("process", inputs={u("raw/encounters"): 1}, outputs={u("processed/encounters"): 1}, batches=["B1"],
                         output_facets={u("processed/encounters"): {
                             "columnLineage": column_lineage({"satisfaction_score": [(u("raw/encounters"), "satisfaction")]}, "conform"),
                             "carelake_rowCounts": RowCountsFacet(rowsIn=3, rowsValid=2, rowsQuarantined=1, duplicatesDropped=0, rowsWritten=2),
                         }})
    model = StageFacts("model", inputs={u("processed/encounters"): 1}, outputs={u("curated/fact_encounter"): 1}, batches=["B1"],
                       output_facets={u("curated/fact_encounter"): {"columnLineage": column_lineage(
                           {"satisfaction_score": [(u("processed/encounters"), "satisfaction_score")]}, "model")}})
    features = column_lineage({"avg_satisfaction": [(u("curated/fact_encounter"), "satisfaction_score")]}, "mean")
    # As the Spark listener says it: the grouping key shaped the rows, not the values (INDIRECT).
    features.fields["avg_satisfaction"].inputFields.append(column_lineage_dataset.InputField(
        namespace="file", name=u("curated/fact_encounter"), field="npi",
        transformations=[column_lineage_dataset.Transformation(type="INDIRECT", subtype="GROUP_BY")]))
    aggregates = StageFacts("aggregates", inputs={u("curated/fact_encounter"): 1}, outputs={u("curated/provider_features"): 1},
                            output_facets={u("curated/provider_features"): {"columnLineage": features}})
    run1 = StageLineage(client, "carelake", "R1")
    for facts in (ingest, process, model, aggregates):
        run1.start(facts.stage, facts.inputs)
        run1.finish(facts, "ok")
    # A second batch only reaches raw; then B1 is rolled back out of raw and processed.
    StageLineage(client, "carelake", "R2").finish(
        StageFacts("ingest", inputs={folder: None}, outputs={u("raw/encounters"): 2}, batches=["B2"], batch_action="written"), "ok")
    StageLineage(client, "carelake", "R3").finish(
        StageFacts("rollback", outputs={u("raw/encounters"): 3, u("processed/encounters"): 2}, batches=["B1"], batch_action="rolled_back"), "ok")


def test_stage_events_are_openlineage_run_events_in_the_file_transport(lineage_config) -> None:
    _send_story(lineage_config)
    folder = lineage_settings(lineage_config).folder
    assert folder == str(Path(lineage_config.root, "_lineage").resolve())
    [path] = event_files(folder)
    events = [json.loads(line) for line in Path(path).read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"] * 4 + ["COMPLETE", "COMPLETE"]
    for event in events:
        uuid.UUID(event["run"]["runId"])  # OpenLineage run ids are UUIDs
        assert event["schemaURL"].startswith("https://openlineage.io/spec/")
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", event["eventTime"])
        assert event["run"]["facets"]["parent"]["job"]["name"] == "carelake.pipeline"
    process = events[3]
    [output] = process["outputs"]
    assert output["facets"]["version"]["datasetVersion"] == "1"
    assert output["facets"]["carelake_rowCounts"]["rowsQuarantined"] == 1
    assert output["facets"]["carelake_rowCounts"]["_schemaURL"].startswith("urn:carelake:lineage-facets:1")
    sources = output["facets"]["columnLineage"]["fields"]["satisfaction_score"]["inputFields"]
    assert sources == [{"namespace": "file", "name": _uri(lineage_config, "raw/encounters"), "field": "satisfaction",
                        "transformations": [{"type": "DIRECT", "subtype": "TRANSFORMATION", "description": "conform"}]}]


def test_batch_lineage_lists_each_version_it_reached_and_the_rollback(lineage_config) -> None:
    _send_story(lineage_config)
    graph = load_graph(lineage_config, lineage_settings(lineage_config).folder)
    reached = [(run.stage, graph.label(table), version, how) for run, table, version, how in graph.batch_versions("B1")]
    assert reached == [
        ("ingest", "raw/encounters", 1, "written"),
        ("process", "processed/encounters", 1, "consumed"),
        ("model", "curated/fact_encounter", 1, "consumed"),
        ("aggregates", "curated/provider_features", 1, "derived"),
        ("rollback", "raw/encounters", 3, "rolled back"),
        ("rollback", "processed/encounters", 2, "rolled back"),
    ]
    # B2 came after B1's process read raw version 1: nothing downstream holds it.
    assert [(graph.label(t), v) for _, t, v, _ in graph.batch_versions("B2")] == [("raw/encounters", 2)]
    assert "B1" in describe_batch(graph, "B1")[0]
    with pytest.raises(ValueError, match="no run .* batch 'B9'"):
        describe_batch(graph, "B9")


def test_column_lineage_reaches_the_landing_columns_and_files(lineage_config) -> None:
    _send_story(lineage_config)
    graph = load_graph(lineage_config, lineage_settings(lineage_config).folder)
    lines = describe(graph, "curated/provider_features.avg_satisfaction")
    text = "\n".join(lines)
    upstream = text.split("upstream columns:")[1].split("source files:")[0]
    assert [line.strip() for line in upstream.strip().splitlines()] == [
        "curated/fact_encounter.satisfaction_score (version 1)",
        "processed/encounters.satisfaction_score (version 2)",
        "raw/encounters.satisfaction (version 3)",
        "landing/hospital_a/encounters.satisfaction",
    ]
    assert "landing/hospital_a/encounters/e1.csv  sha256 abababababab  rows 3  ingested  batch B1" in text
    down = describe(graph, "raw/encounters.satisfaction")
    assert down[down.index("downstream columns:") + 1:] == [
        "  processed/encounters.satisfaction_score",
        "    curated/fact_encounter.satisfaction_score",
        "      curated/provider_features.avg_satisfaction",
    ]
    with pytest.raises(ValueError, match="no column lineage for curated/provider_features.nope"):
        describe(graph, "curated/provider_features.nope")
    with pytest.raises(ValueError, match="no table 'curated/nope'"):
        describe(graph, "curated/nope")


def test_lineage_page_is_one_self_contained_file(lineage_config) -> None:
    _send_story(lineage_config)
    graph = load_graph(lineage_config, lineage_settings(lineage_config).folder)
    page = render_page(page_data(graph))
    for table in ("raw/encounters", "processed/encounters", "curated/fact_encounter", "curated/provider_features"):
        assert f'data-table="{table}"' in page
    assert 'data-table="landing/hospital_a/encounters"' in page
    # Nothing is loaded from anywhere: no src= or stylesheet links, no URL but the SVG namespace.
    assert not re.search(r"\b(src|href)\s*=", page)
    assert set(re.findall(r"https?://[^\s\"'<]+", page)) == {"http://www.w3.org/2000/svg"}
    data = json.loads(re.search(r'<script type="application/json" id="lineage-data">(.*?)</script>', page, re.S).group(1))
    assert data["columns"]["curated/provider_features"]["avg_satisfaction"]["up"] == ["curated/fact_encounter.satisfaction_score"]
    assert data["latest"] == {"raw/encounters": 3, "processed/encounters": 2}  # the rollback was the latest run


def test_spark_listener_conf_follows_the_lineage_section(lineage_config, tmp_path: Path) -> None:
    from carelake.lineage.settings import LISTENER, spark_listener_conf

    jars = [tmp_path / "delta-spark_2.13-4.4.0.jar", tmp_path / "openlineage-spark_2.13-1.53.0.jar"]
    files = spark_listener_conf(lineage_config, jars)
    assert files["spark.extraListeners"] == LISTENER
    assert files["spark.openlineage.transport.type"] == "file"
    # OpenLineage's list syntax for a Spark setting: [a;b]
    assert files["spark.openlineage.filter.deniedSparkNodes"] == (
        "[org.apache.spark.sql.execution.LogicalRDD;org.apache.spark.sql.catalyst.plans.logical.Union]")
    assert files["spark.openlineage.transport.location"] == str(Path(lineage_config.root, "_lineage", "spark.jsonl").resolve())
    http = spark_listener_conf(lineage_config.with_overrides(**{"lineage.url": "http://127.0.0.1:5000"}), jars)
    assert (http["spark.openlineage.transport.type"], http["spark.openlineage.transport.url"]) == ("http", "http://127.0.0.1:5000")
    assert "spark.openlineage.transport.location" not in http
    assert spark_listener_conf(lineage_config, jars[:1]) == {}  # jar not fetched
    assert spark_listener_conf(lineage_config.with_overrides(**{"lineage.spark": False}), jars) == {}
    assert spark_listener_conf(lineage_config.with_overrides(**{"lineage.enabled": False}), jars) == {}
    remote = lineage_config.with_overrides(**{"lakehouse.root": "s3://bucket/lake"})
    assert not lineage_settings(remote).enabled  # no local folder and no server: nothing to write to


def test_listener_release_matches_the_python_client() -> None:
    """infra/jvm/pom.xml's openlineage-spark and pip openlineage-python are the same release."""
    from importlib.metadata import version

    from carelake.spark.jvm_deps import pom_path

    assert f"<openlineage.version>{version('openlineage-python')}</openlineage.version>" in pom_path().read_text()


def test_stage_events_validate_against_the_openlineage_json_schema(lineage_config) -> None:
    from tests.openlineage_schema import spec_validator

    errors = spec_validator()
    _send_story(lineage_config)
    [path] = event_files(lineage_settings(lineage_config).folder)
    events = [json.loads(line) for line in Path(path).read_text().splitlines()]
    for event in events:
        assert errors(event) == [], event["job"]["name"]
    # The check can fail: an event without its run id is refused.
    broken = {**events[0], "run": {"facets": {}}}
    assert errors(broken)


def test_declared_feature_sources_name_feature_columns() -> None:
    from carelake.curated.features import COLUMNS, SOURCES

    assert set(SOURCES) <= set(COLUMNS), sorted(set(SOURCES) - set(COLUMNS))
    assert SOURCES["avg_satisfaction"] == (("curated/fact_encounter", "satisfaction_score"),)
    for inputs in SOURCES.values():
        for label, _ in inputs:
            assert label.split("/", 1)[0] in ("processed", "curated"), label


def test_every_aggregate_declares_sources_of_its_own_columns() -> None:
    """Each curated aggregate has declared column lineage; its keys are columns of the table, and
    an input that is another aggregate names one of that aggregate's columns."""
    from carelake.curated.column_sources import AREA_POPULATION
    from carelake.curated.dictionary import SOURCES, TABLES

    assert set(SOURCES) == set(TABLES)
    for table, declared in SOURCES.items():
        columns = TABLES[table][1]
        assert declared and set(declared) <= set(columns), (table, sorted(set(declared) - set(columns)))
        for inputs in declared.values():
            for label, column in inputs:
                assert label == AREA_POPULATION or label.split("/", 1)[0] in ("processed", "curated"), label
                upstream = label.split("/", 1)[-1]
                if upstream in TABLES:
                    assert column in TABLES[upstream][1], (table, label, column)
    # Hand-checked: a cost is summed from the encounter cost; a count of visits has no input column.
    assert SOURCES["patient_summary"]["total_cost"] == (("curated/fact_encounter", "encounter_cost"),)
    assert "visits" not in SOURCES["patient_summary"]
    assert SOURCES["kpi_executive"]["paid"] == (("curated/kpi_finance", "paid"),)


def test_aggregates_stage_declares_the_feature_column_lineage(lineage_config) -> None:
    from carelake.lineage.stages import stage_facts
    from carelake.run import StageSummary
    from carelake.storage import table_uri

    features = table_uri(lineage_config, "curated", "provider_features")
    summary = StageSummary("aggregates", tables={features: 3})
    facts = stage_facts(lineage_config, None, "R1", summary, {table_uri(lineage_config, "curated", "fact_encounter"): 2})
    lineage = facts.output_facets[features]["columnLineage"]
    [source] = lineage.fields["avg_satisfaction"].inputFields
    assert (source.name, source.field) == (table_uri(lineage_config, "curated", "fact_encounter"), "satisfaction_score")
    assert {f.field for f in lineage.fields["marketing_roi"].inputFields} == {"paid_amount", "marketing_spend"}
    assert "encounters_365d" not in lineage.fields  # a row count has no input column


def test_aggregates_stage_declares_every_aggregate_and_the_population_file(lineage_config) -> None:
    import hashlib

    from carelake.lineage.stages import stage_facts, stage_inputs
    from carelake.run import StageSummary
    from carelake.storage import table_uri

    reference = Path(lineage_config.landing) / "reference" / "area_population.csv"
    reference.parent.mkdir(parents=True)
    reference.write_text("zip3,population\n100,5000\n101,7000\n")
    written = {table_uri(lineage_config, "curated", t): v for v, t in enumerate(
        ("patient_summary", "kpi_finance", "kpi_executive", "network_adequacy"), start=1)}
    inputs = stage_inputs(lineage_config, _NoTables(), "aggregates")
    folder = str(reference.parent.resolve())
    assert inputs == {folder: None}  # no table exists yet; the landed file does
    facts = stage_facts(lineage_config, None, "R1", StageSummary("aggregates", tables=written), inputs)

    def sources(table: str, column: str) -> set[tuple[str, str]]:
        fields = facts.output_facets[table_uri(lineage_config, "curated", table)]["columnLineage"].fields
        return {(f.name.rsplit("/lake/", 1)[-1], f.field) for f in fields[column].inputFields}

    assert sources("patient_summary", "total_cost") == {("curated/fact_encounter", "encounter_cost")}
    assert sources("patient_summary", "sex") == {("curated/dim_patient", "sex")}
    assert sources("kpi_finance", "collection_rate") == {("curated/fact_claim", "paid_amount"), ("curated/fact_claim", "allowed_amount")}
    assert sources("kpi_executive", "paid") == {("curated/kpi_finance", "paid")}
    assert sources("network_adequacy", "population") == {("landing/reference", "population")}
    lineage = facts.output_facets[table_uri(lineage_config, "curated", "patient_summary")]["columnLineage"]
    assert "visits" not in lineage.fields  # a count of encounters
    # Only tables the stage wrote get a facet.
    assert table_uri(lineage_config, "curated", "kpi_provider") not in facts.output_facets
    [listed] = facts.input_facets[folder]["carelake_sourceFiles"].files
    assert (listed["name"], listed["rows"], listed["sizeBytes"]) == ("area_population.csv", 2, reference.stat().st_size)
    assert listed["sha256"] == hashlib.sha256(reference.read_bytes()).hexdigest()


class _NoTables:
    """DeltaTables of an empty lakehouse: no table exists."""

    def exists(self, uri: str) -> bool:
        return False


def test_kpi_column_traced_through_the_aggregate_it_is_built_from(lineage_config) -> None:
    """kpi_executive.paid <- kpi_finance.paid <- fact_claim.paid_amount <- processed -> raw -> landing."""
    from carelake.lineage.stages import stage_facts
    from carelake.run import StageSummary
    from carelake.storage import table_uri

    client = make_client(lineage_config)
    u = lambda label: _uri(lineage_config, label)  # noqa: E731
    folder = u("landing/claims_feed/claims")
    run = StageLineage(client, "carelake", "R1")
    run.finish(StageFacts("ingest", inputs={folder: None}, outputs={u("raw/claims"): 1}, batches=["B1"], batch_action="written",
                          output_facets={u("raw/claims"): {"columnLineage": column_lineage({"paid": [(folder, "PAID")]}, "raw")}}), "ok")
    run.finish(StageFacts("process", inputs={u("raw/claims"): 1}, outputs={u("processed/claims"): 1}, output_facets={
        u("processed/claims"): {"columnLineage": column_lineage({"paid_amount": [(u("raw/claims"), "paid")]}, "conform")}}), "ok")
    run.finish(StageFacts("model", inputs={u("processed/claims"): 1}, outputs={u("curated/fact_claim"): 1}, output_facets={
        u("curated/fact_claim"): {"columnLineage": column_lineage({"paid_amount": [(u("processed/claims"), "paid_amount")]}, "model")}}), "ok")
    written = {table_uri(lineage_config, "curated", t): 4 for t in ("kpi_finance", "kpi_executive")}
    run.finish(stage_facts(lineage_config, None, "R1", StageSummary("aggregates", tables=written),
                           {u("curated/fact_claim"): 1}), "ok")
    graph = load_graph(lineage_config, lineage_settings(lineage_config).folder)
    lines = describe(graph, "curated/kpi_executive.paid")
    upstream = "\n".join(lines).split("upstream columns:")[1].split("source files:")[0]
    assert [line.strip() for line in upstream.strip().splitlines()] == [
        "curated/kpi_finance.paid (version 4)",
        "curated/fact_claim.paid_amount (version 1)",
        "processed/claims.paid_amount (version 1)",
        "raw/claims.paid (version 1)",
        "landing/claims_feed/claims.PAID",
    ]
    down = describe(graph, "curated/fact_claim.paid_amount")
    assert "  curated/kpi_finance.paid" in down and "    curated/kpi_executive.paid" in down, down
