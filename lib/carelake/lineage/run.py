"""The lineage of one pipeline run: a parent run for the pipeline, a child run per stage, and
the lineage page written when the run ends."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from openlineage.client.event_v2 import Job, Run, RunEvent, RunState

from carelake.config import Config
from carelake.delta import DeltaTables
from carelake.lineage.events import (
    PIPELINE_JOB,
    PRODUCER,
    CarelakeRunFacet,
    StageFacts,
    StageLineage,
    event_time,
    make_client,
    run_uuid,
)
from carelake.lineage.settings import lineage_settings
from carelake.lineage.stages import stage_facts, stage_inputs
from carelake.run import RunSummary, StageSummary

log = logging.getLogger(__name__)


class RunLineage:
    """Sends a run's lineage events; every method is a no-op when lineage is off.

    Gathering lineage never fails the run: an error is logged as a warning and the stage's
    event goes without the facts that could not be read."""

    def __init__(self, config: Config, run_id: str) -> None:
        self.config = config
        self.run_id = run_id
        settings = lineage_settings(config)
        client = make_client(config)
        self.stages = StageLineage(client, settings.namespace, run_id) if client else None
        self._inputs: dict[str, dict[str, int | None]] = {}
        self.seconds = 0.0  # spent gathering and sending lineage (the run summary reports it)

    def _timed(self, work: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            return work()
        finally:
            self.seconds += time.monotonic() - started

    def run_started(self) -> None:
        self._timed(self._run_started)

    def stage_started(self, tables: DeltaTables, stage: str) -> None:
        self._timed(lambda: self._stage_started(tables, stage))

    def stage_finished(self, tables: DeltaTables, summary: StageSummary) -> None:
        self._timed(lambda: self._stage_finished(tables, summary))

    def run_finished(self, summary: RunSummary) -> str | None:
        """The pipeline's closing event, then the lineage page; the page's URI (None when off)."""
        page = self._timed(lambda: self._run_finished(summary))
        summary.lineage_seconds = round(self.seconds, 3) if self.stages else None
        return page

    def _run_started(self) -> None:
        if self.stages:
            self.stages.emit(self._pipeline_event(RunState.START, "running"))

    def _stage_started(self, tables: DeltaTables, stage: str) -> None:
        if not self.stages:
            return
        try:
            self._inputs[stage] = stage_inputs(self.config, tables, stage)
        except Exception as exc:  # noqa: BLE001 - lineage must not stop the run
            log.warning("lineage: could not list the inputs of %s: %s", stage, exc)
            self._inputs[stage] = {}
        self.stages.start(stage, self._inputs[stage])

    def _stage_finished(self, tables: DeltaTables, summary: StageSummary) -> None:
        if not self.stages:
            return
        inputs = self._inputs.pop(summary.stage, {})
        try:
            facts = stage_facts(self.config, tables, self.run_id, summary, inputs)
        except Exception as exc:  # noqa: BLE001 - lineage must not stop the run
            log.warning("lineage: could not gather the facts of %s: %s", summary.stage, exc)
            facts = StageFacts(stage=summary.stage, inputs=inputs, outputs=dict(summary.tables))
        self.stages.finish(facts, summary.status)

    def _run_finished(self, summary: RunSummary) -> str | None:
        if not self.stages:
            return None
        self.stages.emit(self._pipeline_event(RunState.FAIL if summary.status != "ok" else RunState.COMPLETE, summary.status))
        from carelake.lineage.page import write_lineage_page

        try:
            return write_lineage_page(self.config)
        except Exception as exc:  # noqa: BLE001 - the page is a view; the events are the record
            log.warning("lineage: could not write the lineage page: %s", exc)
            return None

    def _pipeline_event(self, state: RunState, status: str) -> RunEvent:
        assert self.stages is not None
        return RunEvent(
            eventType=state,
            eventTime=event_time(),
            run=Run(runId=run_uuid(self.run_id, PIPELINE_JOB),
                    facets={"carelake_run": CarelakeRunFacet(runId=self.run_id, stage="pipeline", status=status)}),
            job=Job(namespace=self.stages.namespace, name=PIPELINE_JOB),
            producer=PRODUCER,
        )


def record_rollback(config: Config, tables: DeltaTables, batch_id: str, touched: list[str]) -> None:
    """The lineage event of ``carelake rollback``: the tables it changed with their new versions,
    so ``carelake lineage --batch`` shows where the batch was taken back out."""
    client = make_client(config)
    if client is None:
        return
    from carelake.run import new_run_id

    run_id = new_run_id()
    stages = StageLineage(client, lineage_settings(config).namespace, run_id)
    facts = StageFacts(stage="rollback", outputs={uri: tables.version(uri) for uri in touched},
                       batches=[batch_id], batch_action="rolled_back")
    stages.finish(facts, "ok")
