"""The maintain stage: compact the curated model's small files, z-order facts by NPI, vacuum.

Only partitions holding more than one file are optimized: a partition of one file is already
compact, and z-ordering inside it would rewrite it for no gain in file skipping (its statistics
already span its rows). After a first maintain, a run that touched a few partitions costs those.

Safe only while nothing writes these tables: optimize rewrites files and vacuum deletes the
ones no longer referenced (older than ``delta.vacuum_retention_hours``), which a concurrent
reader of an old version could still need. Run it between pipeline runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import SparkSession

from carelake.config import Config
from carelake.delta import Rows
from carelake.model.facts import FACTS
from carelake.run import StageSummary
from carelake.storage import table_uri

if TYPE_CHECKING:
    from carelake.delta import DeltaTables

DIMENSIONS = ("dim_provider", "dim_patient", "dim_date")


def crowded_partitions(files: list[dict]) -> list[dict[str, str | None]]:
    """The partition values (log strings) of every partition of ``files`` (a table's live files)
    holding more than one file; ``[{}]`` for an unpartitioned table of several files."""
    counts: dict[tuple[tuple[str, str | None], ...], int] = {}
    for f in files:
        key = tuple(sorted((f.get("partition_values") or {}).items()))
        counts[key] = counts.get(key, 0) + 1
    return [dict(key) for key, n in sorted(counts.items(), key=str) if n > 1]


def partitions_rows(partitions: list[dict[str, str | None]]) -> Rows | None:
    """:func:`crowded_partitions`' result as the ``where`` of an optimize (None: the whole,
    unpartitioned table)."""
    if partitions == [{}]:
        return None
    return Rows(tuple(tuple((column, (value,)) for column, value in p.items()) for p in partitions))


def optimize_crowded(tables: DeltaTables, uri: str, zorder_by: list[str] | None = None) -> tuple[int, int, int]:
    """Optimize only the partitions of ``uri`` holding several files (a partition of one file
    is left as it is, so a rerun over a compacted table rewrites nothing): (files before,
    files after, partitions optimized)."""
    files = tables.files(uri)
    crowded = crowded_partitions(files)
    if not crowded:
        return len(files), len(files), 0
    tables.optimize(uri, zorder_by=zorder_by, where=partitions_rows(crowded))
    return len(files), len(tables.files(uri)), len(crowded)


def run_maintain(spark: SparkSession, config: Config, tables: DeltaTables, run_id: str | None = None) -> StageSummary:
    """Optimize and vacuum every existing model table; returns the ``maintain`` stage summary
    with, per table, a note ``files before -> after optimize, N removed by vacuum`` and the
    Delta version after optimizing. Facts are z-ordered by their NPI column, dimensions only
    compacted. ``spark`` and ``run_id`` are unused: the signature is every stage's."""
    summary = StageSummary("maintain")
    plan = [(name, [spec.npi_col]) for name, spec in FACTS.items()] + [(name, None) for name in DIMENSIONS]
    for name, zorder_by in plan:
        uri = table_uri(config, "curated", name)
        if not tables.exists(uri):
            continue
        before, after, crowded = optimize_crowded(tables, uri, zorder_by)
        removed = tables.vacuum(uri, config.vacuum_retention_hours)
        version = tables.version(uri)
        summary.tables[uri] = version
        summary.counts(name).delta_version = version
        summary.notes.append(
            f"{name}: files {before} -> {after} after optimize ({crowded} partitions of several files), "
            f"{len(removed)} removed by vacuum"
        )
    if not summary.tables:
        return summary.finish("nothing-to-do")
    return summary.finish()


def compact_tables(tables: DeltaTables, uris: list[str]) -> list[str]:
    """Compact (no z-order, no vacuum) the partitions of several files of each existing table in
    ``uris``; a note per table rewritten. For tables written in many small commits, such as raw
    and processed under a stream: compaction changes no data and keeps every version readable."""
    notes = []
    for uri in uris:
        if not tables.exists(uri):
            continue
        before, after, crowded = optimize_crowded(tables, uri)
        if crowded:
            notes.append(f"{uri.rsplit('/', 2)[-2]}/{uri.rsplit('/', 1)[-1]}: files {before} -> {after}")
    return notes


def run_compact(spark: SparkSession, config: Config, tables: DeltaTables, run_id: str | None = None) -> StageSummary:
    """The compact stage: :func:`compact_tables` over every raw and processed table (the ones a
    stream appends to in small commits; maintain covers curated). ``spark`` and ``run_id`` are
    unused: the signature is every stage's."""
    # Imported here: these packages import the model package.
    from carelake.ingest import INGEST_LOG_TABLE
    from carelake.process import BATCHES_TABLE, QUARANTINE_TABLE
    from carelake.process.history import history_table
    from carelake.sources.canonical import ENTITIES

    summary = StageSummary("compact")
    uris = [table_uri(config, "raw", t) for t in (*ENTITIES, INGEST_LOG_TABLE)]
    uris += [table_uri(config, "processed", t) for t in (*ENTITIES, QUARANTINE_TABLE, BATCHES_TABLE)]
    uris += [table_uri(config, "processed", t) for t in filter(None, map(history_table, ENTITIES))]
    summary.notes.extend(compact_tables(tables, uris))
    for uri in uris:
        if tables.exists(uri):
            summary.tables[uri] = tables.version(uri)
    return summary.finish("ok" if summary.notes else "nothing-to-do")
