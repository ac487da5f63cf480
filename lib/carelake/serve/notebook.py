"""What notebooks need to run unchanged on Databricks and as plain ``python notebooks/x.py``.

On Databricks the runtime provides ``spark`` and ``display``; elsewhere :func:`get_spark` builds
the configured session and :func:`display` prints. :func:`read_table` turns a table that is not
built yet into a printed hint instead of an exception, so a notebook runs on a partial lakehouse.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from carelake.config import Config, load_config
from carelake.delta import open_tables
from carelake.serve.catalog import discover_tables
from carelake.spark import build_session
from carelake.storage import table_uri

# Columns that identify a person: never previewed by the shared notebooks.
PII_COLUMNS = frozenset(
    {"first_name", "last_name", "ssn", "phone", "email", "street_address", "address", "birth_date", "mrn", "raw_payload"}
)


def on_databricks() -> bool:
    """True inside a Databricks runtime (it sets ``DATABRICKS_RUNTIME_VERSION``)."""
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def get_spark(config: Config | None = None) -> SparkSession:
    """Databricks' ``spark`` when present, else ``build_session(config or load_config())``."""
    provided = getattr(sys.modules["__main__"], "spark", None)
    if isinstance(provided, SparkSession):
        return provided
    if on_databricks():
        return SparkSession.builder.getOrCreate()
    return build_session(config or load_config())


def display(df: DataFrame | Any, n: int = 20) -> None:
    """Databricks' ``display`` when present, else print the first ``n`` rows as a table.

    Accepts a Spark or pandas DataFrame.
    """
    provided = getattr(sys.modules["__main__"], "display", None)
    if on_databricks() and callable(provided) and provided is not display:
        provided(df)
        return
    if isinstance(df, DataFrame):
        df.show(n, truncate=60)
    else:
        print(df.head(n).to_string(index=False))


def zone_tables(config: Config, zone: str) -> list[str]:
    """Names of the Delta tables built in ``zone`` (raw, processed or curated), sorted."""
    return [t.name for t in discover_tables(config) if t.zone == zone]


def read_table(spark: SparkSession, config: Config, zone: str, table: str) -> DataFrame | None:
    """The table as a DataFrame, or None after printing that it is not built yet."""
    uri = table_uri(config, zone, table)
    tables = open_tables(spark, config)
    if not tables.exists(uri):
        print(f"table {zone}.{table} not built yet — run make run (looked in {uri})")
        return None
    return tables.read(uri)


def without_pii(df: DataFrame) -> DataFrame:
    """``df`` without the person-identifying columns in :data:`PII_COLUMNS`."""
    return df.drop(*[c for c in df.columns if c.lower().lstrip("_") in PII_COLUMNS])


def finish(spark: SparkSession) -> None:
    """Stop the session a plain-Python run started; leaves Databricks' session alone."""
    if not on_databricks():
        spark.stop()
