"""Notebooks run headless as plain Python on a tiny lakehouse, including one missing tables."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import write_deltalake

REPO = Path(__file__).resolve().parents[1]
SECRET = "SSN 123-45-6789 Jane Roe"
NOW = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """raw.providers, processed.encounters, processed._quarantine, raw._ingest_log; no
    processed.providers or raw.encounters, so the notebooks meet missing tables too."""
    root = tmp_path_factory.mktemp("notebook_lakehouse")
    write_deltalake(
        str(root / "raw" / "providers"),
        pa.table({
            "provider_npi": ["1234567893", "1245319599", "1003000126"],
            "first_name": ["Ann", "Bob", "Cy"],
            "_source_system": ["hospital_a", "hospital_a", "hospital_b"],
        }),
    )
    write_deltalake(
        str(root / "processed" / "encounters"),
        pa.table({"encounter_id": ["e1", "e2"], "npi": ["1234567893", "1245319599"], "source_system": ["hospital_a", "crm"]}),
    )
    write_deltalake(
        str(root / "processed" / "_quarantine"),
        pa.table({
            "entity": ["patients", "patients", "claims"],
            "source_system": ["hospital_a", "hospital_b", "claims_feed"],
            "source_file": ["hospital_a/patients/p1.csv", "hospital_b/patients/p2.json", "claims/c1.csv"],
            "reasons": [["invalid_birth_date"], ["missing_patient_id", "invalid_zip"], ["invalid_npi"]],
            "raw_payload": [SECRET, SECRET, SECRET],
        }),
    )
    write_deltalake(
        str(root / "raw" / "_ingest_log"),
        pa.table({
            "file_name": ["p1.csv", "broken.csv"],
            "source_system": ["hospital_a", "hospital_a"],
            "entity": ["patients", "patients"],
            "status": ["ingested", "rejected"],
            "reason": [None, "unreadable: not UTF-8"],
            "logged_at": pa.array([NOW, NOW], pa.timestamp("us", tz="UTC")),
        }),
    )
    return root


def _run_notebook(name: str, root: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "CARELAKE_CONFIG": str(REPO / "conf" / "local.yaml"),
        "CARELAKE_LAKEHOUSE__ROOT": str(root),
        "CARELAKE_SPARK__MASTER": "local[1]",
        "CARELAKE_SPARK__CONF__spark.driver.memory": "1g",
        "CARELAKE_SPARK__CONF__spark.ui.enabled": "false",
        "CARELAKE_SPARK__CONF__spark.sql.shuffle.partitions": "1",
        "CARELAKE_SPARK__CONF__spark.sql.adaptive.enabled": "false",
        "PYSPARK_PYTHON": sys.executable,
    }
    return subprocess.run(
        [sys.executable, str(REPO / "notebooks" / name)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.parametrize("path", sorted((REPO / "notebooks").glob("*.py")), ids=lambda p: p.name)
def test_notebook_is_in_databricks_source_format(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# Databricks notebook source"
    assert lines.count("# COMMAND ----------") >= 2
    assert any(line.startswith("# MAGIC %md") for line in lines)


@pytest.mark.slow
def test_explore_notebook_lists_tables_counts_and_missing_ones(lakehouse: Path, tmp_path: Path) -> None:
    result = _run_notebook("01_explore_raw_and_processed.py", lakehouse, tmp_path)
    out = result.stdout
    assert result.returncode == 0, f"exit {result.returncode}\n{out[-2000:]}\n{result.stderr[-3000:]}"
    assert "raw.providers: 3 rows" in out
    assert "processed.encounters: 2 rows" in out
    assert "zone curated: no tables built yet" in out
    assert "table processed.providers not built yet — run make run" in out
    assert "table raw.encounters not built yet — run make run" in out
    assert "rows per source system in raw.providers" in out
    assert "hospital_b" in out
    assert "Ann" not in out  # first_name is dropped from previews


@pytest.mark.slow
def test_quality_notebook_counts_reasons_without_payload(lakehouse: Path, tmp_path: Path) -> None:
    result = _run_notebook("02_data_quality_review.py", lakehouse, tmp_path)
    out = result.stdout
    assert result.returncode == 0, f"exit {result.returncode}\n{out[-2000:]}\n{result.stderr[-3000:]}"
    assert "quarantined rows: 3" in out
    assert "missing_patient_id, invalid_zip" in out
    assert "invalid_npi" in out
    assert "rejected files: 1 of 2 logged" in out
    assert "unreadable: not UTF-8" in out
    assert SECRET not in out and "123-45-6789" not in out

