"""A Delta table read onto the driver as one Arrow table: delta-rs lists the live files of a
version, pyarrow reads them. For small tables only (the curated aggregates the API serves and
the report draws): everything lands in the driver's memory, and no Spark job runs.

Never through delta-rs' own ``to_pyarrow_table``, which aborts the process at exit here (see
:mod:`carelake.delta.log`).
"""

from __future__ import annotations

import pyarrow as pa
from deltalake import DeltaTable
from pyspark.sql.types import StructType

from carelake.delta.files import read_file
from carelake.delta.log import add_actions, file_uri, open_table
from carelake.delta.storage import filesystem
from carelake.delta.types import arrow_schema_from_spark, spark_schema_from_delta

# Reader features whose rows a plain Parquet read gets wrong (deleted rows, renamed columns).
UNREADABLE_FEATURES = frozenset({"columnMapping", "deletionVectors"})


def readable_by_pyarrow(table: DeltaTable) -> bool:
    """True when the table's files read with pyarrow give exactly its rows."""
    return not set(table.protocol().reader_features or []) & UNREADABLE_FEATURES


def live_bytes(table: DeltaTable) -> int:
    """The size of the table's live data files (from its log)."""
    return sum(entry["size"] or 0 for entry in add_actions(table))


def read_arrow(uri: str, options: dict[str, str], table: DeltaTable | None = None, version: int | None = None) -> pa.Table:
    """The Delta table at ``uri`` (``table`` when already opened, else latest or ``version``)
    as one Arrow table with its Spark schema; partition columns come from the log, columns
    added after a file was written are null in it."""
    table = table if table is not None else open_table(uri, options, version)
    schema: StructType = spark_schema_from_delta(table.schema())
    arrow_schema = arrow_schema_from_spark(schema)
    parts = []
    for entry in add_actions(table):
        fs, path = filesystem(file_uri(uri, entry["path"]), options)
        parts.append(read_file(fs, path, arrow_schema, entry["partition_values"]))
    return pa.concat_tables(parts) if parts else arrow_schema.empty_table()
