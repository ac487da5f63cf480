"""A tiny full pipeline leaks no patient PII into curated tables, logs or the run summary, and
every commit and the summary say who wrote."""

from __future__ import annotations

import contextlib
import csv
import glob
import json
import os
import re
from datetime import datetime
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql.types import StringType

from carelake.config import Config
from carelake.delta.audit import ACTOR_KEY
from carelake.storage import table_uri
from tests.tiny_lake import ACTOR, KEY_HEX

PII_FIELDS = ("first_name", "last_name", "ssn", "phone", "email", "street_address", "birth_date")
# Provider names are not patient PII and dim_provider keeps them on purpose; the same name pool
# feeds patients and providers, so those two columns are left out of the exact-name check.
PROVIDER_NAME_COLUMNS = {("dim_provider", "first_name"), ("dim_provider", "last_name")}


def landing_patients(config: Config) -> list[dict[str, str]]:
    """Every patient row of the landing files, keyed by canonical column names."""
    rows = []
    for system in config.sources.values():
        entity = system.entities.get("patients")
        if entity is None:
            continue
        for path in sorted(glob.glob(os.path.join(config.landing, entity.path))):
            with open(path, encoding="utf-8", errors="replace", newline="") as handle:
                if system.format == "json":
                    records = []
                    for line in handle:
                        try:
                            records.append(json.loads(line))
                        except json.JSONDecodeError:
                            continue  # a defect line; its values are still in other rows' shape
                else:
                    records = list(csv.DictReader(handle, delimiter=system.options.get("delimiter", ",")))
            for record in records:
                if isinstance(record, dict):
                    rows.append({c: str(record.get(src) or "").strip() for c, src in entity.columns.items()})
    return rows


def pii_values(patients: list[dict[str, str]]) -> tuple[set[str], set[str]]:
    """(values no curated cell may equal, longer values no cell, log line or summary may contain)."""
    exact: set[str] = set()
    contained: set[str] = set()
    for p in patients:
        for field in PII_FIELDS:
            if p[field]:
                exact.add(p[field])
        for field in ("ssn", "phone", "email", "street_address", "birth_date"):
            if len(p[field]) >= 7:
                contained.add(p[field])
        if p["first_name"] and p["last_name"]:
            contained.add(f"{p['first_name']} {p['last_name']}")
        for fmt in ("%Y-%m-%d", "%m/%d/%Y"):
            with contextlib.suppress(ValueError):
                contained.add(datetime.strptime(p["birth_date"], fmt).date().isoformat())
    return exact, contained


def leak_pattern(values: set[str]) -> re.Pattern[str]:
    """Any of ``values`` standing alone: not inside a longer run of letters or digits, so a
    defect SSN of zeros does not match inside ``CLM0000000001``."""
    alternatives = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
    return re.compile(f"(?<![0-9A-Za-z])(?:{alternatives})(?![0-9A-Za-z])")


@pytest.fixture(scope="module")
def pipeline(tiny_lake: dict) -> dict:
    """The shared tiny lakehouse: generated with defects, every default stage run once with INFO
    logs captured (tests/tiny_lake.py)."""
    return tiny_lake


def test_pipeline_ran_and_found_patients(pipeline: dict) -> None:
    assert pipeline["summary"].status == "ok", pipeline["summary_text"]
    assert len(landing_patients(pipeline["config"])) > 50
    assert pipeline["logs"], "no INFO log lines were captured"


def test_curated_tables_hold_no_patient_pii(spark: SparkSession, pipeline: dict) -> None:
    config = pipeline["config"]
    exact, contained = pii_values(landing_patients(config))
    pattern = leak_pattern(contained)
    curated = Path(table_uri(config, "curated", ""))
    names = sorted(p.name for p in curated.iterdir() if (p / "_delta_log").is_dir())
    assert {"dim_patient", "fact_encounter", "fact_claim"} <= set(names)
    from carelake.delta import open_tables

    tables = open_tables(spark, config)
    leaks = []
    for name in names:
        df = tables.read(table_uri(config, "curated", name))
        assert "patient_key" not in df.columns, name
        strings = [f.name for f in df.schema.fields if isinstance(f.dataType, StringType)]
        for row in df.select(*strings).collect():
            for column in strings:
                value = row[column]
                if value is None:
                    continue
                if value in exact and (name, column) not in PROVIDER_NAME_COLUMNS:
                    leaks.append((name, column, "exact"))
                elif pattern.search(value):
                    leaks.append((name, column, "contains"))
    assert not leaks, f"PII values found in curated (table, column, match): {sorted(set(leaks))}"


def test_enterprise_ids_stay_in_the_restricted_zone(spark: SparkSession, pipeline: dict) -> None:
    from carelake.delta import open_tables
    from carelake.privacy.restricted import MATCHING_TABLES

    config = pipeline["config"]
    match = next(s for s in pipeline["summary"].stages if s.stage == "match")
    assert match.status == "ok", match.notes
    tables = open_tables(spark, config)
    links = tables.read(table_uri(config, "processed", MATCHING_TABLES[0]))
    ids = {r[0] for r in links.select("enterprise_patient_id").distinct().collect()}
    assert ids and links.where("cluster_size > 1").count() > 0  # the tiny lake's planted people were linked
    curated = Path(table_uri(config, "curated", ""))
    leaks = []
    for name in sorted(p.name for p in curated.iterdir() if (p / "_delta_log").is_dir()):
        df = tables.read(table_uri(config, "curated", name))
        strings = [f.name for f in df.schema.fields if isinstance(f.dataType, StringType)]
        leaks += [(name, c) for row in df.select(*strings).collect() for c in strings if row[c] in ids]
    assert not leaks, f"enterprise ids in curated (table, column): {sorted(set(leaks))}"
    text = pipeline["summary_text"] + "\n".join(pipeline["logs"])
    assert not [i for i in ids if i in text]


def test_logs_and_summary_hold_no_patient_pii_or_key(pipeline: dict) -> None:
    _, contained = pii_values(landing_patients(pipeline["config"]))
    pattern = leak_pattern(contained)
    leaking_lines = [line for line in pipeline["logs"] if pattern.search(line)]
    assert not leaking_lines, f"{len(leaking_lines)} log line(s) carry PII values"
    assert not pattern.search(pipeline["summary_text"]), "the run summary carries PII values"
    assert KEY_HEX not in pipeline["summary_text"] and not any(KEY_HEX in line for line in pipeline["logs"])


def test_quarantine_notes_in_summary_hold_no_pii(pipeline: dict) -> None:
    exact, contained = pii_values(landing_patients(pipeline["config"]))
    summary = json.loads(pipeline["summary_text"])
    process = next(s for s in summary["stages"] if s["stage"] == "process")
    assert sum(c["rows_quarantined"] for c in process["entities"].values()) > 0, "defects should be quarantined"
    notes = [note for stage in summary["stages"] for note in stage["notes"]]
    words = {w for note in notes for w in re.split(r"[\s,:;()\[\]'\"=]+", note) if w}
    assert not words & {v for v in exact if len(v) >= 4}, "a stage note names a patient value"
    assert not any(v in note for note in notes for v in contained)


def test_summary_and_commits_say_who_wrote(spark: SparkSession, pipeline: dict) -> None:
    from carelake.delta import open_tables

    summary = json.loads(pipeline["summary_text"])
    assert summary["actor"] == ACTOR
    config = pipeline["config"]
    tables = open_tables(spark, config)
    uri = table_uri(config, "curated", "dim_patient")
    commit = tables.history(uri, limit=1)[0]
    assert commit["metadata"][ACTOR_KEY] == ACTOR
    assert commit["metadata"]["carelake.run_id"] == summary["run_id"]
    assert commit["metadata"]["carelake.stage"] == "model"


def test_processed_patients_keep_direct_identifiers_apart(spark: SparkSession, pipeline: dict) -> None:
    from carelake.delta import open_tables
    from carelake.privacy.restricted import DIRECT_IDENTIFIERS

    config = pipeline["config"]
    tables = open_tables(spark, config)
    patients = tables.read(table_uri(config, "processed", "patients"))
    identifiers = tables.read(table_uri(config, "processed", "patients_pii"))
    assert not set(DIRECT_IDENTIFIERS["patients"]) & set(patients.columns)
    assert set(DIRECT_IDENTIFIERS["patients"]) <= set(identifiers.columns)
    # One identifiers row per processed patient, joinable by the key.
    keys = patients.select("patient_key")
    assert identifiers.count() == patients.count() > 0
    assert identifiers.select("patient_key").exceptAll(keys).count() == 0
