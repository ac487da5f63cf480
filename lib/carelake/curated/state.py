"""The aggregates stage's state: ``curated/_aggregate_state`` holds the version of every input
the last run consumed and the ``as_of`` date it used; and the default ``as_of``, the latest event
date in the facts."""

from __future__ import annotations

from datetime import date, datetime, timezone
from functools import reduce
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, LongType, StringType, StructField, StructType, TimestampType

from carelake.curated.changes import FACT_EVENT_DATES

if TYPE_CHECKING:
    from carelake.delta import DeltaTables

STATE_TABLE = "_aggregate_state"
STATE_SCHEMA = StructType(
    [
        StructField("input", StringType()),
        StructField("version", LongType()),
        StructField("as_of", DateType()),
        StructField("run_id", StringType()),
        StructField("recorded_at", TimestampType()),
    ]
)


def read_state(tables: DeltaTables, uri: str) -> tuple[dict[str, int], date | None]:
    if not tables.exists(uri):
        return {}, None
    rows = tables.read(uri).collect()
    return {r["input"]: r["version"] for r in rows}, (rows[0]["as_of"] if rows else None)


def latest_event_date(tables: DeltaTables, uris: dict[str, str], versions: dict[str, int], today: date) -> date | None:
    """The latest event date on/before ``today`` in the facts, reading only each fact's latest
    month partition that is not in the future."""
    this_month = today.strftime("%Y-%m")
    latest: list[DataFrame] = []
    for fact, column in FACT_EVENT_DATES.items():
        if fact not in versions:
            continue
        months = {
            f["partition_values"].get("service_month") for f in tables.files(uris[fact], version=versions[fact])
        }
        past = sorted(m for m in months if m and m != "unknown" and m <= this_month)
        if not past:
            continue
        latest.append(
            tables.read(uris[fact], version=versions[fact])
            .where((F.col("service_month") == past[-1]) & (F.col(column) <= F.lit(today)))
            .agg(F.max(column).alias("latest"))
        )
    if not latest:
        return None
    # One query for all facts: a query each cost its own jobs.
    return reduce(DataFrame.unionByName, latest).agg(F.max("latest")).collect()[0][0]


def write_state(
    spark: SparkSession, tables: DeltaTables, uri: str, versions: dict[str, int], as_of: date, run_id: str,
    meta: dict[str, str],
) -> int:
    """Record ``versions`` as consumed with ``as_of``, replacing the last run's; returns the version."""
    recorded = datetime.now(timezone.utc)
    state = spark.createDataFrame(
        [(name, version, as_of, run_id, recorded) for name, version in sorted(versions.items())], STATE_SCHEMA
    )
    return tables.write(state, uri, mode="overwrite", commit_metadata=meta).version
