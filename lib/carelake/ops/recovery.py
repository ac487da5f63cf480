"""Recovery: restore a table to an earlier version, or take one batch back out of the lakehouse.

A batch is one ingest run: its rows carry ``_batch_id`` in raw and processed, its quarantine
rows ``batch_id``, and the ingest log and ``processed/_batches`` record it. Rolling it back
deletes all of that, and puts back the processed rows the batch had overwritten, so the same
files can be fixed and ingested again as if the batch had never arrived.
"""

from __future__ import annotations

import json
import logging

from pyspark.sql import SparkSession

from carelake.config import Config
from carelake.delta import CommitResult, DeltaTables, MergeSpec, Rows
from carelake.ingest.stage import INGEST_LOG_TABLE
from carelake.privacy.restricted import restricted_table
from carelake.process.history import history_table
from carelake.process.stage import BATCHES_TABLE, QUARANTINE_TABLE
from carelake.sources.canonical import BUSINESS_KEYS, ENTITIES
from carelake.storage import table_uri

log = logging.getLogger(__name__)

# Commit metadata of the merge that puts back rows a rolled-back batch had replaced.
ROLLED_BACK_KEY = "carelake.rolled_back_batch"
# Commit metadata of a process merge: the batch ids it merged (JSON list).
BATCHES_KEY = "carelake.batches"


def restore_table(tables: DeltaTables, uri: str, version: int) -> CommitResult:
    """Make ``version`` of the table at ``uri`` its latest contents, as a new commit.

    Fails with the valid range when ``version`` is not an existing earlier version. Versions
    whose files were removed by vacuum cannot be restored (the Delta engine says which file).
    """
    latest = tables.version(uri)
    if not 0 <= version < latest:
        expected = f"a version in 0..{latest - 1} (latest is {latest})" if latest else "an earlier version, but the table has only version 0"
        raise ValueError(f"restore {uri}: expected {expected}, found {version}")
    result = tables.restore(uri, version)
    log.info("restored %s to version %d as version %d", uri, version, result.version)
    return result


def _merged_at(tables: DeltaTables, uri: str, batch_id: str) -> int | None:
    """The version whose commit merged ``batch_id`` into the processed table (the earliest one)."""
    versions = [
        int(c["version"])
        for c in tables.history(uri)
        if batch_id in json.loads(c["metadata"].get(BATCHES_KEY) or "[]")
    ]
    return min(versions) if versions else None


def _rollback_processed(tables: DeltaTables, uri: str, entity: str, batch_id: str, metadata: dict[str, str]) -> dict:
    """Delete the batch's rows from a processed table and merge back the versions they replaced."""
    current = tables.read(uri)
    mine = current.where(current["_batch_id"] == batch_id)
    deleted = mine.count()
    if not deleted:
        return {"rows_deleted": 0, "rows_restored": 0}
    keys = list(BUSINESS_KEYS[entity])
    merged_at = _merged_at(tables, uri, batch_id)
    previous = None
    if merged_at is not None and merged_at > 0:
        before = tables.read(uri, version=merged_at - 1)
        previous = before.join(mine.select(*keys), keys, "left_semi").localCheckpoint()
    tables.delete(uri, Rows.where(_batch_id=[batch_id]))
    restored = previous.count() if previous is not None else 0
    if restored:
        tables.merge(previous, uri, MergeSpec(keys), commit_metadata=metadata)
    return {"rows_deleted": deleted, "rows_restored": restored}


def rollback_batch(spark: SparkSession, config: Config, tables: DeltaTables, batch_id: str) -> dict:
    """Remove batch ``batch_id`` from raw, processed (the history tables too), quarantine,
    ``_batches`` and the ingest log.

    Processed rows the batch had updated get back the version they had before its merge (read
    from Delta history, so it must not have been vacuumed). Returns ``{table uri: {rows_deleted,
    rows_restored}}`` for every table that held rows of the batch; raises ValueError naming the
    batch when no table holds any. Curated tables are not touched: run the model stage after.
    """
    metadata = {ROLLED_BACK_KEY: batch_id}
    report: dict[str, dict] = {}
    for entity in ENTITIES:
        # An entity's restricted identifiers table (if any) holds the same batches under the same keys.
        for table in filter(None, (entity, restricted_table(entity))):
            uri = table_uri(config, "processed", table)
            if tables.exists(uri):
                counts = _rollback_processed(tables, uri, entity, batch_id, metadata)
                if counts["rows_deleted"]:
                    report[uri] = counts
    # raw also holds entities that only feed others (a FHIR source's Conditions, PractitionerRoles)
    raw_entities = dict.fromkeys([*ENTITIES, *(e for s in config.sources.values() for e in s.entities)])
    deletes = [(table_uri(config, "raw", e), Rows.where(_batch_id=[batch_id])) for e in raw_entities]
    # A history row is a file's own version (keyed by file): deleting the batch's rows undoes it.
    deletes += [(table_uri(config, "processed", t), Rows.where(_batch_id=[batch_id])) for t in filter(None, map(history_table, ENTITIES))]
    deletes += [
        (table_uri(config, "processed", QUARANTINE_TABLE), Rows.where(batch_id=[batch_id])),
        (table_uri(config, "processed", BATCHES_TABLE), Rows.where(batch_id=[batch_id])),
        # Last: while the log still lists the files, an interrupted rollback can be run again.
        (table_uri(config, "raw", INGEST_LOG_TABLE), Rows.where(batch_id=[batch_id])),
    ]
    for uri, batch_rows in deletes:
        if not tables.exists(uri):
            continue
        rows = tables.read(uri).where(batch_rows.column()).count()
        if rows:
            tables.delete(uri, batch_rows)
            report[uri] = {"rows_deleted": rows, "rows_restored": 0}
    if not report:
        raise ValueError(f"rollback: no table under {config.root} holds rows of batch {batch_id!r}")
    return report
