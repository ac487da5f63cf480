"""The business-questions notebook on a lakehouse with no curated tables: it reports what is
missing instead of crashing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "03_business_questions.py"


@pytest.mark.slow
def test_business_notebook_reports_missing_tables(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CARELAKE_CONFIG": str(REPO / "conf" / "local.yaml"),
        "CARELAKE_LAKEHOUSE__ROOT": str(tmp_path / "lakehouse"),
        "CARELAKE_SPARK__MASTER": "local[1]",
        "CARELAKE_SPARK__CONF__spark.ui.enabled": "false",
        "CARELAKE_SPARK__CONF__spark.driver.memory": "1g",
        "PYSPARK_PYTHON": sys.executable,
    }
    result = subprocess.run([sys.executable, str(NOTEBOOK)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    for table in ("provider_outcomes", "provider_features", "provider_procedure_stats", "network_demand_by_zip", "kpi_executive"):
        assert f"table curated.{table} not built yet — run make run" in result.stdout
    assert not (tmp_path / "lakehouse" / "_reports").exists()
