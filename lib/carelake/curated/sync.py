"""Bringing a curated table in line with freshly computed rows: a full overwrite, or a merge of
only the rows that differ and a delete of the rows that vanished from the recomputed scope."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

from carelake.config import Config
from carelake.delta import MergeSpec, Rows
from carelake.delta.log import open_table
from carelake.delta.storage import rs_uri, storage_options
from carelake.run import StageSummary
from carelake.storage import table_uri

if TYPE_CHECKING:
    from carelake.delta import DeltaTables

UNKNOWN_KEY = "unknown"


def with_full_keys(df: DataFrame, keys: tuple[str, ...]) -> DataFrame:
    """Null string keys read ``unknown``: a null key never matches in a merge and would be
    inserted again on every run."""
    string_keys = {f.name for f in df.schema.fields if f.name in keys and isinstance(f.dataType, StringType)}
    return df.select(*[F.coalesce(F.col(c), F.lit(UNKNOWN_KEY)).alias(c) if c in string_keys else c for c in df.columns])


def tables_missing_columns(config: Config, tables: DeltaTables) -> list[str]:
    """The curated tables written by an earlier version that lack a column this one declares
    (carelake.curated.dictionary): an incremental merge cannot add it, a full rebuild does.
    Read from the Delta logs (no Spark job)."""
    from carelake.curated.dictionary import TABLES  # via the stage, it imports this module

    options = storage_options(config)
    behind = []
    for name, (_, columns) in TABLES.items():
        uri = table_uri(config, "curated", name)
        if tables.exists(uri):
            stored = {field.name for field in open_table(rs_uri(uri), options).schema().fields}
            if set(columns) - stored:
                behind.append(name)
    return behind


def sync_table(
    tables: DeltaTables, uri: str, fresh: DataFrame, keys: tuple[str, ...], scope: DataFrame | None,
    full: bool, summary: StageSummary, name: str, meta: dict[str, str],
) -> None:
    """Bring table ``uri`` in line with ``fresh``, the recomputed rows of ``scope``.

    ``full`` (or no table yet): overwrite with ``fresh``. Else merge by ``keys`` only the fresh
    rows that differ from the stored ones, and delete stored rows of ``scope`` (the key columns of
    ``scope``; None = the whole table) that ``fresh`` no longer has. Records the counts."""
    fresh = with_full_keys(fresh, keys).localCheckpoint(eager=True)
    counts = summary.counts(name)
    if full or not tables.exists(uri):
        # schema merge: a column added since the table was written joins it
        result = tables.write(fresh, uri, mode="overwrite", commit_metadata=meta, schema_mode="merge")
        # The commit's own row count, when the engine reports it, saves a count of the rows.
        rows = result.rows_inserted if result.rows_inserted is not None else fresh.count()
        counts.rows_in = counts.rows_valid = counts.rows_written = rows
        counts.delta_version = summary.tables[uri] = result.version
        return
    counts.rows_in = counts.rows_valid = fresh.count()
    stored = tables.read(uri)
    if scope is not None:
        stored = stored.join(scope, scope.columns, "left_semi")
    changed = fresh.subtract(stored.select(*fresh.columns)).localCheckpoint(eager=True)
    vanished = stored.select(*keys).subtract(fresh.select(*keys)).collect()
    written = 0
    if not changed.isEmpty():
        result = tables.merge(changed, uri, MergeSpec(keys), commit_metadata=meta)
        written += (result.rows_inserted or 0) + (result.rows_updated or 0)
        summary.tables[uri] = result.version
    if vanished:
        result = tables.delete(uri, Rows.keys(keys, vanished))
        written += result.rows_deleted or 0
        summary.tables[uri] = result.version
    counts.rows_written = written
    counts.delta_version = tables.version(uri)
