"""One tiny generated lakehouse, run through the whole default pipeline once per test session
and shared by the tests that only read what a full run leaves (the PII scan, the provider
outcomes table). Each of them used to generate and run its own; one run serves them all.

Tests sharing it must not write to it (a rerun that writes nothing is fine)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pyspark.sql import SparkSession

from carelake.config import Config
from carelake.delta.audit import ACTOR_ENV
from carelake.generate import generate
from carelake.pipeline import run_pipeline
from carelake.privacy.tokens import TOKEN_KEY_ENV

# Four months: index stays with a complete 30-day follow-up exist before as_of. Defects on, so
# the quarantine and its notes are exercised; the quarantine threshold is off, since defect
# shares are noisy on files this small.
SCALE, SEED, MONTHS, DEFECT_RATE = 0.01, 7, 4, 0.05
KEY_HEX = "5a" * 32
ACTOR = "tiny-lake-test"


class LogLines(logging.Handler):
    """Every formatted INFO-or-above record of the run."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def build_tiny_lake(spark: SparkSession, base_config: Config, root: Path) -> dict:
    """Generate, then run every default stage once with INFO logs captured, under a known token
    key and actor: {config, summary, summary_text, logs}."""
    # Matching on: the PII scan covers the match stage's logs, notes and restricted tables too.
    config = base_config.with_overrides(
        **{"lakehouse.root": str(root / "lakehouse"), "quality.max_quarantine_rate": 1.0, "matching.enabled": True}
    )
    generate(config.landing, config, scale=SCALE, seed=SEED, defect_rate=DEFECT_RATE, months=MONTHS)
    saved = {name: os.environ.get(name) for name in (TOKEN_KEY_ENV, ACTOR_ENV)}
    os.environ.update({TOKEN_KEY_ENV: KEY_HEX, ACTOR_ENV: ACTOR})
    handler = LogLines()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root_logger = logging.getLogger()
    old_level = root_logger.level
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.INFO)
    try:
        summary = run_pipeline(spark, config, run_id="tiny-lake")
    finally:
        root_logger.removeHandler(handler)
        root_logger.setLevel(old_level)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    summary_path = Path(config.root) / "_runs" / f"{summary.run_id}.json"
    return {"config": config, "summary": summary, "summary_text": summary_path.read_text(), "logs": handler.lines}
