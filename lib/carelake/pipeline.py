"""Run pipeline stages in order against one SparkSession and write the run summary.

Stages are looked up by name here, so the CLI, the jobs, the notebooks and the tests all run
the same code. Each stage is ``run_<stage>(spark, config, tables, run_id) -> StageSummary``.
Every stage writes, so a run holds the lakehouse writer lock (:mod:`carelake.ops.lock`) from
its first stage to its summary: a second run on the same root fails fast, naming the first.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Collection, Sequence
from functools import partial

from pyspark.sql import SparkSession

from carelake.config import Config
from carelake.delta import open_tables
from carelake.run import RunSummary, StageSummary, new_run_id
from carelake.storage import check_store

log = logging.getLogger(__name__)

# name -> "module:function"; imported on use so a job loads only what it runs.
STAGES: dict[str, str] = {
    "ingest": "carelake.ingest.stage:run_ingest",
    "process": "carelake.process:run_process",
    "match": "carelake.matching.stage:run_match",
    "model": "carelake.model:run_model",
    "aggregates": "carelake.curated.stage:run_aggregates",
    "train": "carelake.ml.stage:run_train",
    "score": "carelake.ml.stage:run_score",
    "maintain": "carelake.model:run_maintain",
    "compact": "carelake.model.maintenance:run_compact",
}
DEFAULT_STAGES: tuple[str, ...] = ("ingest", "process", "match", "model", "aggregates", "train", "score")


def stage_function(name: str) -> Callable[..., StageSummary]:
    """The function behind stage ``name``; a clear error listing the known stages otherwise."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}: expected one of {', '.join(STAGES)}")
    module, _, attr = STAGES[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def run_pipeline(
    spark: SparkSession, config: Config, stages: Sequence[str] = DEFAULT_STAGES, run_id: str | None = None,
    ingest_files: Collection[str] | None = None,
) -> RunSummary:
    """Run ``stages`` in order; stop after a failed stage; write and return the run summary.

    ``ingest_files`` narrows the ingest stage to those landing files (a stream's micro-batch).

    Raises :class:`carelake.ops.lock.WriterLockError` when another run holds the writer lock
    (after ``lock.wait_seconds``) or takes it over meanwhile.
    """
    # Imported here: the carelake.ops package imports the process stage (and Great Expectations).
    from carelake.lineage.run import RunLineage
    from carelake.ops.lock import writer_lock

    functions = [(name, stage_function(name)) for name in stages]
    if ingest_files is not None:
        functions = [(n, partial(f, only_files=ingest_files) if n == "ingest" else f) for n, f in functions]
    check_store(config)
    summary = RunSummary(run_id=run_id or new_run_id(), config_file=config.source_file, root=config.root)
    lineage = RunLineage(config, summary.run_id)
    with writer_lock(config, summary.run_id) as lock:
        tables = open_tables(spark, config)
        lineage.run_started()
        for name, function in functions:
            lock.check()
            log.info("stage %s: starting", name)
            lineage.stage_started(tables, name)
            try:
                stage = function(spark, config, tables, summary.run_id)
            except Exception as exc:
                # Keep the record of what ran before the error, then let the caller report it.
                summary.stages.append(StageSummary(name, notes=[f"{type(exc).__name__}: {exc}"]).finish("error"))
                summary.status = "error"
                lineage.stage_finished(tables, summary.stages[-1])
                lineage.run_finished(summary)
                summary.write(config)
                raise
            summary.stages.append(stage)
            lineage.stage_finished(tables, stage)
            if stage.status == "failed":
                break
        statuses = {s.status for s in summary.stages}
        summary.status = "failed" if "failed" in statuses else "ok"
        summary.lineage_page = lineage.run_finished(summary)
        summary.write(config)
    return summary
