"""Lineage of a real run: `carelake run` in its own process (so OpenLineage's Spark listener is
started with its session, as for a user), then `carelake lineage` and `carelake rollback`.

Expected answers come from conf/local.yaml and the landing folder, read here by hand: which
source column of each hospital feeds ``satisfaction_score``, and the files (with SHA-256
computed here) that were landed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from carelake.cli import main
from carelake.generate import generate
from carelake.lineage.settings import lineage_settings, openlineage_jar
from carelake.spark.jvm_deps import fetched_jars
from tests.conftest import TEST_SPARK_CONF

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
STAGES = "ingest,process,model,aggregates"
TIMEOUT_S = 1500


def _env(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "CARELAKE_LAKEHOUSE__ROOT": str(root),
        "CARELAKE_SPARK__MASTER": "local[2]",
        # The suite's own session settings (shuffle partitions, AQE off, snapshot tasks, ...).
        **{f"CARELAKE_SPARK__CONF__{key}": value for key, value in TEST_SPARK_CONF.items()},
        # Two NPI buckets, not 16: each fact month is 2 partitions, not 16 (a Delta file each);
        # partitioning is not what these tests look at.
        "CARELAKE_PARTITIONING__NPI_BUCKETS": "2",
        # At this tiny scale one orphaned referral is several percent: the run must not stop on
        # the quarantine threshold, lineage is what is under test.
        "CARELAKE_QUALITY__MAX_QUARANTINE_RATE": "1.0",
    }


def _carelake(root: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "carelake.cli", *args, "--conf", str(REPO / "conf" / "local.yaml")],
        env=_env(root), cwd=root.parent, capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )
    assert done.returncode == 0, f"carelake {' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def lineage_run(tmp_path_factory: pytest.TempPathFactory, base_config):
    """A tiny lakehouse after one run of ingest..aggregates with lineage on (the default)."""
    if openlineage_jar(fetched_jars()) is None:
        pytest.skip("the OpenLineage Spark jar is not in .jvm/jars: run `make setup` with Maven access")
    root = tmp_path_factory.mktemp("lineage") / "lake"
    config = base_config.with_overrides(**{"lakehouse.root": str(root), "lineage.enabled": True})
    # One month without second registrations of the same people (matching's truth: more files of
    # kinds already here): every source and file kind still lands (24 files; 41 in three months),
    # and ingest reads each file in jobs of its own.
    generate(Path(config.landing), config, scale=0.005, seed=11, defect_rate=0.03, months=1, persons=False)
    _carelake(root, "run", "--stages", STAGES)
    [summary] = [json.loads(p.read_text()) for p in (root / "_runs").glob("*.json")]
    return config, root, summary


def _lineage(capsys, *args: str) -> list[str]:
    """``carelake lineage ...`` in this process: it reads the event files, it starts no Spark."""
    capsys.readouterr()
    assert main(["lineage", *args, "--conf", str(REPO / "conf" / "local.yaml")]) == 0
    return capsys.readouterr().out.splitlines()


@pytest.fixture
def on_run_root(lineage_run, monkeypatch):
    """The run's root for commands of this process (as CARELAKE_LAKEHOUSE__ROOT)."""
    monkeypatch.setenv("CARELAKE_LAKEHOUSE__ROOT", str(lineage_run[1]))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_provider_features_column_traced_to_landing_files_and_source_columns(lineage_run, on_run_root, capsys) -> None:
    _, root, _ = lineage_run
    lines = _lineage(capsys, "curated/provider_features.avg_satisfaction")
    text = "\n".join(lines)
    upstream = {line.strip().split(" (version")[0] for line in text.split("upstream columns:")[1].split("source files:")[0].splitlines() if line.strip()}
    # conf/local.yaml: satisfaction_score <- hospital_a `satisfaction`, hospital_b `satisfactionScore`,
    # hospital_c `SAT_SCORE`; raw names are the lower-cased source names.
    expected = {
        "curated/fact_encounter.satisfaction_score",
        "processed/encounters.satisfaction_score",
        "raw/encounters.satisfaction", "raw/encounters.satisfactionscore", "raw/encounters.sat_score",
        "landing/hospital_a/encounters.satisfaction", "landing/hospital_b/encounters.satisfactionScore",
        "landing/hospital_c/encounters.SAT_SCORE",
    }
    assert expected <= upstream, f"missing {sorted(expected - upstream)} in:\n{text}"
    # The mean satisfaction comes from no diagnosis, charge or claim column.
    assert not [c for c in upstream if any(w in c.lower() for w in ("dx", "diagnosis", "charge", "claim", "billed"))], text
    landed = sorted(p for h in ("hospital_a", "hospital_b", "hospital_c") for p in (root / "landing" / h / "encounters").glob("*") if p.is_file())
    assert landed
    for path in landed:
        assert f"{path.name}  sha256 {_sha256(path)[:12]}" in text, f"{path} not listed:\n{text}"


def test_stage_events_carry_files_versions_counts_and_expectations(lineage_run) -> None:
    config, root, summary = lineage_run
    folder = Path(lineage_settings(config).folder)
    events = [json.loads(line) for line in (folder / "carelake.jsonl").read_text().splitlines()]
    finished = {e["job"]["name"]: e for e in events if e["eventType"] in ("COMPLETE", "FAIL")}
    assert set(finished) == {"carelake.pipeline", *(f"carelake.{s}" for s in STAGES.split(","))}
    ingest = finished["carelake.ingest"]
    listed = {f["uri"]: f["sha256"] for i in ingest["inputs"] for f in i["facets"].get("carelake_sourceFiles", {}).get("files", [])}
    # Every source file; the generator's own files (its manifest, the planted truth) are not sources.
    landing = root / "landing"
    landed = {
        str(p): _sha256(p)
        for p in landing.rglob("*")
        if p.is_file() and not any(part.startswith("_") for part in p.relative_to(landing).parts)
        and p.relative_to(landing).parts[0] != "reference"  # read by the aggregates stage, not ingested
    }
    assert listed == landed
    batches = ingest["run"]["facets"]["carelake_batches"]
    assert (batches["batchIds"], batches["action"]) == ([summary["run_id"]], "written")
    stages = {s["stage"]: s for s in summary["stages"]}
    process = finished["carelake.process"]
    for output in process["outputs"]:
        assert output["facets"]["version"]["datasetVersion"] == str(stages["process"]["tables"][output["name"]])
    by_name = {o["name"].rsplit("/", 1)[-1]: o for o in process["outputs"]}
    for entity, counts in stages["process"]["entities"].items():
        facet = by_name[entity]["facets"]["carelake_rowCounts"]
        assert facet["rowsQuarantined"] == counts["rows_quarantined"]
        assert facet["rowsIn"] == facet["rowsValid"] + facet["rowsQuarantined"] + facet["duplicatesDropped"]
    assert sum(by_name[e]["facets"]["carelake_rowCounts"]["rowsQuarantined"] for e in stages["process"]["entities"]) > 0
    assertions = by_name["encounters"]["facets"]["dataQualityAssertions"]["assertions"]
    gx = json.loads((root / "_runs" / summary["run_id"] / "gx" / "encounters.json").read_text())
    assert len(assertions) == len(gx["results"]) > 0
    # The Spark listener's events are there too: the processed merge's column lineage from raw.
    spark_events = [json.loads(line) for line in (folder / "spark.jsonl").read_text().splitlines()]
    merged = [o for e in spark_events for o in e.get("outputs") or []
              if o["name"].endswith("/processed/encounters") and "columnLineage" in o.get("facets", {})]
    assert merged, "no column lineage from the Spark listener for processed/encounters"
    sources = {(i["name"].rsplit("/lake/", 1)[-1], i["field"]) for o in merged
               for i in o["facets"]["columnLineage"]["fields"].get("satisfaction_score", {}).get("inputFields", [])}
    assert ("raw/encounters", "satisfaction") in sources, sources
    page = root / "_reports" / "latest" / "lineage.html"
    assert 'data-table="curated/provider_features"' in page.read_text()


def test_spark_listener_skips_jobs_without_datasets_and_keeps_every_table_write(lineage_run) -> None:
    """The deniedSparkNodes/rddEventsDisabled filters: no events for actions on Python-built
    frames and unions (they name no dataset), while each table the run wrote is still an output."""
    _, root, _ = lineage_run
    events = [json.loads(line) for line in (root / "_lineage" / "spark.jsonl").read_text().splitlines()]
    names = [e["job"]["name"] for e in events]
    assert not [n for n in names if "scan_existing_rdd" in n or n.endswith(".union")], names
    written = {o["name"].rsplit("/lake/", 1)[-1] for e in events for o in e.get("outputs") or []}
    on_disk = {f"{zone.name}/{table.name}" for zone in (root / "raw", root / "processed", root / "curated")
               if zone.is_dir() for table in zone.iterdir() if (table / "_delta_log").is_dir()}
    assert on_disk and on_disk <= written, f"tables written without a Spark lineage event: {on_disk - written}"


def test_events_validate_against_the_openlineage_json_schema(lineage_run) -> None:
    from tests.openlineage_schema import spec_validator

    errors = spec_validator()
    config, _, _ = lineage_run
    folder = Path(lineage_settings(config).folder)
    for name in ("carelake.jsonl", "spark.jsonl"):
        for line in (folder / name).read_text().splitlines():
            event = json.loads(line)
            assert errors(event) == [], f"{name}: {event['job']['name']}"


def _delta_version(table: Path) -> int:
    return max(int(p.stem) for p in (table / "_delta_log").glob("*.json"))


def test_lineage_of_a_rolled_back_batch(lineage_run, on_run_root, spark, cli_keeps_suite_conf, capsys) -> None:
    _, root, summary = lineage_run
    batch = summary["run_id"]
    before = _lineage(capsys, "--batch", batch)
    assert any(" raw/encounters " in line and line.endswith("written") for line in before), before
    assert any(" curated/provider_features " in line and line.endswith("derived") for line in before), before
    # `carelake rollback` in this process: on the suite's session (no second JVM for it).
    assert main(["rollback", "--batch", batch, "--conf", str(REPO / "conf" / "local.yaml")]) == 0
    after = _lineage(capsys, "--batch", batch)
    rolled = {line.split()[2]: int(line.split()[3]) for line in after if line.endswith("rolled back")}
    # Every raw and processed table the rollback changed, at the version now on disk.
    for label in ("raw/encounters", "raw/providers", "processed/encounters", "processed/_batches", "raw/_ingest_log"):
        assert rolled.get(label) == _delta_version(root / label), f"{label}: {after}"
    assert not [t for t in rolled if t.startswith("curated/")], "rollback leaves curated tables to the next model run"


def _upstream(lines: list[str]) -> set[str]:
    text = "\n".join(lines)
    return {line.strip().split(" (version")[0]
            for line in text.split("upstream columns:")[1].split("source files:")[0].split("downstream columns:")[0].splitlines()
            if line.strip()}


def test_patient_summary_and_kpi_columns_traced_to_landing_source_columns(lineage_run, on_run_root, capsys) -> None:
    _, root, _ = lineage_run
    # conf/local.yaml: sex <- hospital_a `sex`, hospital_b `gender`, hospital_c `SEX_CD`.
    sex = _upstream(_lineage(capsys, "curated/patient_summary.sex"))
    assert {
        "curated/dim_patient.sex", "processed/patients.sex", "raw/patients.sex", "raw/patients.gender", "raw/patients.sex_cd",
        "landing/hospital_a/patients.sex", "landing/hospital_b/patients.gender", "landing/hospital_c/patients.SEX_CD",
    } <= sex, sex
    # kpi_executive.paid <- kpi_finance.paid <- fact_claim.paid_amount <- the claims feed's PAID; not billed or allowed.
    lines = _lineage(capsys, "curated/kpi_executive.paid")
    paid = _upstream(lines)
    assert {"curated/kpi_finance.paid", "curated/fact_claim.paid_amount", "processed/claims.paid_amount", "raw/claims.paid",
            "landing/claims.PAID"} <= paid, paid
    assert not [c for c in paid if "billed" in c.lower() or "allowed" in c.lower()], paid
    claims = sorted(p for p in (root / "landing" / "claims").glob("*") if p.is_file())
    assert claims
    for path in claims:
        assert f"{path.name}  sha256 {_sha256(path)[:12]}" in "\n".join(lines), f"{path} not listed:\n{lines}"
    # The residents of an area come from the landed reference file, listed with its checksum.
    lines = _lineage(capsys, "curated/network_adequacy.population")
    assert _upstream(lines) == {"landing/reference.population"}, lines
    reference = root / "landing" / "reference" / "area_population.csv"
    assert any(f"landing/reference/area_population.csv  sha256 {_sha256(reference)[:12]}" in line for line in lines), lines


def _schema_columns(table: Path) -> set[str]:
    """The columns of a Delta table's latest schema, read from its log (no Spark)."""
    schema = None
    for log in sorted((table / "_delta_log").glob("*.json")):
        for line in log.read_text().splitlines():
            action = json.loads(line)
            if "metaData" in action:
                schema = json.loads(action["metaData"]["schemaString"])
    assert schema is not None, table
    return {f["name"] for f in schema["fields"]}


def test_declared_aggregate_lineage_names_columns_the_run_wrote(lineage_run) -> None:
    """Every aggregate the run wrote has its column lineage in the aggregates event, and every
    declared column, output or input, is a column of the table as the run wrote it."""
    from carelake.curated.column_sources import AREA_POPULATION
    from carelake.curated.dictionary import SOURCES

    config, root, _ = lineage_run
    events = [json.loads(line) for line in (Path(lineage_settings(config).folder) / "carelake.jsonl").read_text().splitlines()]
    [aggregates] = [e for e in events if e["job"]["name"] == "carelake.aggregates" and e["eventType"] == "COMPLETE"]
    with_lineage = {o["name"].rsplit("/", 1)[-1] for o in aggregates["outputs"] if "columnLineage" in o["facets"]}
    assert with_lineage == set(SOURCES)
    for table, declared in SOURCES.items():
        written = _schema_columns(root / "curated" / table)
        assert set(declared) <= written, (table, sorted(set(declared) - written))
        for inputs in declared.values():
            for label, column in inputs:
                if label == AREA_POPULATION:
                    assert column in (root / "landing" / "reference" / "area_population.csv").read_text().splitlines()[0].split(",")
                else:
                    assert column in _schema_columns(root / label), (table, label, column)
