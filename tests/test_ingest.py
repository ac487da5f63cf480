"""Raw ingest end to end on tiny hand-written landing files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import functions as F

from carelake.config import Config
from carelake.delta import Rows, open_tables
from carelake.ingest import INGEST_LOG_TABLE, run_ingest
from carelake.storage import table_uri

A_PROVIDERS = (
    "provider_npi,first_name,last_name,specialty,taxonomy_code,org_name,practice_zip,network_id,employer_id,status,last_updated\n"
    "1234567893,Ann,Lee,Cardiology,207RC0000X,Riverside,60601,N1,E1,A,2024-01-01 00:00:00\n"
    "1497758544,Bo,Kim,Oncology,207RX0202X,Riverside,60602,N1,E2,I,2024-01-01 00:00:00\n"
)
B_PROVIDERS = (
    '{"npi": "1234567893", "firstName": "Ann", "lastName": "Lee", "active": true, "updatedAt": "2024-01-02T00:00:00Z"}\n'
    '{"npi": "1003000126", "firstName": "Zo\u00eb", "lastName": "M\u00fcller", "active": false, "updatedAt": "2024-01-02T00:00:00Z"}\n'
)
C_PROVIDERS = "NPI_NUM|PROV_FIRST|PROV_LAST|ZIP|ACTIVE_FLAG|CHANGE_DT\n1003000126|Cy|Ray|60603|1|01/03/2024 10:00\n1003000127|Di|Ox\n"


def land(config: Config, relative: str, content: str | bytes) -> Path:
    path = Path(config.landing) / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


@pytest.fixture
def landed(config: Config) -> Config:
    land(config, "hospital_a/providers/providers_2024-01.csv", A_PROVIDERS)
    land(config, "hospital_b/providers/providers_2024-01.jsonl", B_PROVIDERS)
    land(config, "hospital_c/providers/providers_2024-01.txt", C_PROVIDERS)
    land(config, "hospital_a/providers/providers_garbage.csv", b"\x00\x01\x02\xffgarbage")
    land(config, "hospital_a/patients/patients_2024-01.csv", "patient_id,first_name\n")
    land(config, "hospital_a/unmatched/notes.csv", "not,configured\n1,2\n")
    return config


def test_ingest_appends_every_row_as_strings_with_metadata(spark, landed: Config) -> None:
    tables = open_tables(spark, landed)
    summary = run_ingest(spark, landed, tables, "run-1")

    raw = tables.read(table_uri(landed, "raw", "providers"))
    assert raw.count() == 6  # 2 (a) + 2 (b) + 2 (c, one truncated)
    assert {f.dataType.simpleString() for f in raw.schema if not f.name.startswith("_ingested")} == {"string"}
    for column in ("_source_system", "_source_file", "_ingested_at", "_batch_id", "_row_hash", "_corrupt_record"):
        assert column in raw.columns
    # source columns are named by the raw rule; each source keeps its own columns
    assert {"provider_npi", "npi", "npi_num", "firstname", "prov_first"} <= set(raw.columns)
    by_system = {r["_source_system"]: r["count"] for r in raw.groupBy("_source_system").count().collect()}
    assert by_system == {"hospital_a": 2, "hospital_b": 2, "hospital_c": 2}
    # JSON booleans and unicode survive as text
    zoe = raw.where(F.col("npi") == "1003000126").first()
    assert (zoe["firstname"], zoe["lastname"], zoe["active"]) == ("Zo\u00eb", "M\u00fcller", "false")
    # the truncated line is kept, flagged for processing to quarantine
    truncated = raw.where(F.col("npi_num") == "1003000127").first()
    assert truncated["_corrupt_record"] is not None
    assert raw.where(F.col("_corrupt_record").isNotNull()).count() == 1
    assert raw.select("_batch_id").distinct().collect()[0][0] == "run-1"

    counts = summary.entities["providers"]
    assert (counts.rows_in, counts.rows_written) == (6, 6) and counts.reconciles
    notes = " ".join(summary.notes)
    assert "providers_garbage.csv: binary content" in notes
    assert "patients_2024-01.csv: header only" in notes

    ingest_log = tables.read(table_uri(landed, "raw", INGEST_LOG_TABLE))
    statuses = {(r.file_name, r.status): r.rows for r in ingest_log.collect()}
    assert statuses == {
        ("hospital_a/providers/providers_2024-01.csv", "ingested"): 2,
        ("hospital_b/providers/providers_2024-01.jsonl", "ingested"): 2,
        ("hospital_c/providers/providers_2024-01.txt", "ingested"): 2,
        ("hospital_a/providers/providers_garbage.csv", "rejected"): None,
        ("hospital_a/patients/patients_2024-01.csv", "rejected"): None,
    }


def test_second_run_ingests_nothing_and_changes_no_table(spark, landed: Config) -> None:
    tables = open_tables(spark, landed)
    run_ingest(spark, landed, tables, "run-1")
    raw_uri = table_uri(landed, "raw", "providers")
    log_uri = table_uri(landed, "raw", INGEST_LOG_TABLE)
    versions = (tables.version(raw_uri), tables.version(log_uri))
    rows = sorted(tables.read(raw_uri).select("_row_hash").collect())

    again = run_ingest(spark, landed, tables, "run-2")

    assert again.status == "nothing-to-do"
    assert (tables.version(raw_uri), tables.version(log_uri)) == versions
    assert sorted(tables.read(raw_uri).select("_row_hash").collect()) == rows


def test_only_files_narrows_ingest_to_the_named_files_in_sparks_spelling(spark, landed: Config) -> None:
    tables = open_tables(spark, landed)
    named = (Path(landed.landing) / "hospital_b/providers/providers_2024-01.jsonl").resolve().as_uri()  # file:///...

    summary = run_ingest(spark, landed, tables, "run-1", only_files=[named])

    logged = {r.file_name for r in tables.read(table_uri(landed, "raw", INGEST_LOG_TABLE)).collect()}
    assert logged == {"hospital_b/providers/providers_2024-01.jsonl"}
    assert summary.entities["providers"].rows_written == 2
    rest = run_ingest(spark, landed, tables, "run-2")
    assert rest.entities["providers"].rows_written == 4  # a and c, not b again


def test_changed_file_content_is_ingested_again(spark, landed: Config) -> None:
    tables = open_tables(spark, landed)
    run_ingest(spark, landed, tables, "run-1")
    land(landed, "hospital_a/providers/providers_2024-01.csv", A_PROVIDERS + "1003000134,Ed,Fox,,,,,,,A,2024-02-01 00:00:00\n")

    second = run_ingest(spark, landed, tables, "run-2")

    assert second.entities["providers"].rows_in == 3
    assert tables.read(table_uri(landed, "raw", "providers")).where("_batch_id = 'run-2'").count() == 3


def test_run_fails_when_too_many_files_are_rejected(spark, config: Config) -> None:
    land(config, "hospital_a/providers/a.csv", b"")
    land(config, "hospital_a/providers/b.csv", b"\x00\x00")
    summary = run_ingest(spark, config, open_tables(spark, config), "run-1")
    assert summary.status == "failed"
    assert any("max_rejected_file_rate" in n for n in summary.notes)


def test_crash_between_raw_append_and_log_is_repaired(spark, landed: Config) -> None:
    """A run that appended raw rows but died before logging must not ingest those files twice."""
    tables = open_tables(spark, landed)
    run_ingest(spark, landed, tables, "run-1")
    log_uri = table_uri(landed, "raw", INGEST_LOG_TABLE)
    logged_rows = sorted((r.file_name, r.rows) for r in tables.read(log_uri).where("status = 'ingested'").collect())
    tables.delete(log_uri, Rows.where(status=["ingested"]))  # the log append that never happened

    repaired = run_ingest(spark, landed, tables, "run-2")

    assert tables.read(table_uri(landed, "raw", "providers")).count() == 6
    assert any("repaired the ingest log" in n for n in repaired.notes)
    assert sorted((r.file_name, r.rows) for r in tables.read(log_uri).where("status = 'ingested'").collect()) == logged_rows
