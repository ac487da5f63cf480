"""The maintain stage: compact the curated model's small files, z-order facts by NPI, vacuum.

Safe only while nothing writes these tables: optimize rewrites files and vacuum deletes the
ones no longer referenced (older than ``delta.vacuum_retention_hours``), which a concurrent
reader of an old version could still need. Run it between pipeline runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import SparkSession

from carelake.config import Config
from carelake.model.facts import FACTS
from carelake.run import StageSummary
from carelake.storage import table_uri

if TYPE_CHECKING:
    from carelake.delta import DeltaTables

DIMENSIONS = ("dim_provider", "dim_patient", "dim_date")


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
        before = len(tables.files(uri))
        tables.optimize(uri, zorder_by=zorder_by)
        after = len(tables.files(uri))
        removed = tables.vacuum(uri, config.vacuum_retention_hours)
        version = tables.version(uri)
        summary.tables[uri] = version
        summary.counts(name).delta_version = version
        summary.notes.append(f"{name}: files {before} -> {after} after optimize, {len(removed)} removed by vacuum")
    if not summary.tables:
        return summary.finish("nothing-to-do")
    return summary.finish()
