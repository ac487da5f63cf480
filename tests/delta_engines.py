"""Both Delta engines as one pytest parameter, and a deterministic race between two writers.

``race(loser, winner)`` runs ``loser`` (a table operation whose input rows pass through
:func:`held`) in a thread; the held rows stop the loser's Spark task after it has read its
snapshot, ``winner`` commits meanwhile, then the loser is released and tries to commit.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from carelake.config import Config
from carelake.delta import DeltaTables, open_tables
from carelake.delta.api import jvm_delta_available

ENGINES = ("jvm", "rs")
HOLD_TIMEOUT_S = 120.0
# A small fact table with every type the engines must round-trip, and nulls.
FACT_SCHEMA = "id long, service_month string, npi_bucket int, amount decimal(10,2), service_date date, active boolean"
JAN = dt.date(2024, 1, 15)
FEB = dt.date(2024, 2, 3)


def typed_rows(spark, rows: list[tuple]) -> DataFrame:
    """``rows`` as a DataFrame of :data:`FACT_SCHEMA`."""
    return spark.createDataFrame(rows, FACT_SCHEMA)


def fact_rows(spark) -> DataFrame:
    """Three facts over two months and two buckets, one with null amount and flag."""
    return typed_rows(
        spark,
        [
            (1, "2024-01", 3, Decimal("10.50"), JAN, True),
            (2, "2024-01", 5, Decimal("20.00"), JAN, False),
            (3, "2024-02", 3, None, FEB, None),
        ],
    )


def engine_tables(spark, config: Config, engine: str) -> DeltaTables:
    """The table API on ``engine``; skips with the reason when the Delta jars are not loaded."""
    if engine == "jvm":
        available, reason = jvm_delta_available(spark)
        if not available:
            pytest.skip(f"jvm engine unavailable: {reason} (run `make setup` to fetch the Delta jars)")
    return open_tables(spark, config.with_overrides(**{"delta.engine": engine}))


def held(frame: DataFrame, signals: Path, column: str) -> DataFrame:
    """``frame`` whose ``column`` passes through a UDF that, the first time it runs, writes
    ``signals/started`` and waits for ``signals/go`` (later evaluations pass straight through)."""
    started, go = str(signals / "started"), str(signals / "go")
    timeout = HOLD_TIMEOUT_S

    def wait(value):  # no type hints: Spark would take it for a pandas UDF
        import os
        import time

        if not os.path.exists(go):
            open(started, "w").close()
            deadline = time.monotonic() + timeout
            while not os.path.exists(go) and time.monotonic() < deadline:
                time.sleep(0.05)
        return value

    hold = F.udf(wait, frame.schema[column].dataType).asNondeterministic()
    return frame.coalesce(1).withColumn(column, hold(F.col(column)))


@dataclass
class RaceOutcome:
    """What each side of a race ended with: a result or the exception it raised."""

    loser: Any
    winner: Any

    @property
    def loser_failed(self) -> bool:
        return isinstance(self.loser, BaseException)


def race(loser: Callable[[], Any], winner: Callable[[], Any], signals: Path) -> RaceOutcome:
    """Run ``loser`` until its held rows start, run ``winner`` to its commit, release the loser."""
    signals.mkdir(parents=True, exist_ok=True)
    outcome: dict[str, Any] = {}

    def run_loser() -> None:
        try:
            outcome["loser"] = loser()
        except BaseException as exc:  # reported to the test, which asserts on it
            outcome["loser"] = exc

    thread = threading.Thread(target=run_loser, daemon=True)
    thread.start()
    deadline = time.monotonic() + HOLD_TIMEOUT_S
    while not (signals / "started").exists():
        if not thread.is_alive() or time.monotonic() > deadline:
            (signals / "go").touch()
            thread.join()
            raise AssertionError(f"the held operation never reached its rows: {outcome.get('loser')}")
        time.sleep(0.05)
    try:
        won = winner()
    finally:
        (signals / "go").touch()
    thread.join(HOLD_TIMEOUT_S)
    return RaceOutcome(outcome.get("loser"), won)
