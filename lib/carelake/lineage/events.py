"""OpenLineage run events per pipeline stage, sent with the openlineage-python client.

Each stage is one OpenLineage run (job ``carelake.<stage>``, a child of the pipeline run) with a
START and a COMPLETE / FAIL event. Its datasets carry what Spark's own listener cannot know:

- inputs: the tables the stage reads, each with the Delta version it read (``version``); for
  ingest, the landing folders with every file of the batch, its SHA-256, size, rows and status
  (``carelake_sourceFiles``);
- outputs: every table written with the Delta version written (``version``), rows written
  (``outputStatistics``), rows in / valid / quarantined / duplicates (``carelake_rowCounts``),
  the Great Expectations results of a processed table (``dataQualityAssertions``), and the
  column lineage carelake knows from its config (source column -> raw column -> canonical
  column, ``columnLineage``);
- run facets: the carelake run id and stage (``carelake_run``), the ingest batch ids the stage
  wrote or consumed (``carelake_batches``).

Datasets are named as OpenLineage's naming spec and the Spark listener name them (namespace
``file`` and the absolute path for a local table, ``s3://bucket`` and the key otherwise), so a
lineage server joins both producers' events on the same datasets.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlparse

import attr
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    BaseFacet,
    DatasetFacet,
    RunFacet,
    column_lineage_dataset,
    data_quality_assertions_dataset,
    dataset_version_dataset,
    job_type_job,
    output_statistics_output_dataset,
    parent_run,
)
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport

from carelake import __version__
from carelake.config import Config
from carelake.lineage.settings import API_KEY_ENV, lineage_settings
from carelake.storage import filesystem_for, is_remote, join_uri, to_local_path

log = logging.getLogger(__name__)

PRODUCER = f"urn:carelake:{__version__}"
FACET_SCHEMA = "urn:carelake:lineage-facets:1"  # the carelake_* facets, described in docs/lineage.md
PIPELINE_JOB = "carelake.pipeline"


@attr.define
class SourceFilesFacet(DatasetFacet):
    """The landing files of one source folder in this batch: name, uri, sha256, bytes, rows, status."""

    files: list[dict[str, Any]]

    @staticmethod
    def _get_schema() -> str:
        return FACET_SCHEMA + "#SourceFilesFacet"


@attr.define
class RowCountsFacet(DatasetFacet):
    """Rows in / valid / quarantined / duplicates dropped / written by this stage."""

    rowsIn: int  # noqa: N815
    rowsValid: int  # noqa: N815
    rowsQuarantined: int  # noqa: N815
    duplicatesDropped: int  # noqa: N815
    rowsWritten: int  # noqa: N815

    @staticmethod
    def _get_schema() -> str:
        return FACET_SCHEMA + "#RowCountsFacet"


@attr.define
class CarelakeRunFacet(RunFacet):
    """The carelake run id, stage and status of this OpenLineage run."""

    runId: str  # noqa: N815
    stage: str
    status: str

    @staticmethod
    def _get_schema() -> str:
        return FACET_SCHEMA + "#CarelakeRunFacet"


@attr.define
class BatchesFacet(RunFacet):
    """The ingest batch ids this run wrote (ingest), consumed (process, model) or rolled back."""

    batchIds: list[str]  # noqa: N815
    action: str  # written | consumed | rolled_back

    @staticmethod
    def _get_schema() -> str:
        return FACET_SCHEMA + "#BatchesFacet"


def dataset_name(uri: str) -> tuple[str, str]:
    """(namespace, name) of a table or folder URI as OpenLineage's naming spec gives them."""
    if is_remote(uri):
        parsed = urlparse(uri)
        scheme = "s3" if parsed.scheme in ("s3", "s3a") else parsed.scheme
        return f"{scheme}://{parsed.netloc}", parsed.path.lstrip("/")
    return "file", to_local_path(uri)


def run_uuid(run_id: str, job: str) -> str:
    """A stable OpenLineage run id (a UUID) for carelake run ``run_id`` and ``job``."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"carelake:{run_id}:{job}"))


def make_client(config: Config) -> OpenLineageClient | None:
    """The openlineage-python client for ``config``'s transport; None when lineage is off."""
    settings = lineage_settings(config)
    if not settings.enabled:
        return None
    if settings.url:
        api_key = os.environ.get(API_KEY_ENV)
        auth = ApiKeyTokenProvider({"apiKey": api_key}) if api_key else None
        http = HttpConfig(url=settings.url, endpoint=settings.endpoint, **({"auth": auth} if auth else {}))
        return OpenLineageClient(transport=HttpTransport(http))
    os.makedirs(str(settings.folder), exist_ok=True)
    return OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(settings.stage_events_path), append=True)))


@dataclass
class StageFacts:
    """What a stage read and wrote, gathered around it for its lineage events."""

    stage: str
    inputs: dict[str, int | None] = field(default_factory=dict)  # uri -> version read (None: folder)
    outputs: dict[str, int] = field(default_factory=dict)  # uri -> version written
    batches: list[str] = field(default_factory=list)
    batch_action: str = "consumed"
    input_facets: dict[str, dict[str, Any]] = field(default_factory=dict)
    output_facets: dict[str, dict[str, Any]] = field(default_factory=dict)


def event_time() -> str:
    return datetime.now(timezone.utc).isoformat()


class StageLineage:
    """Sends the START and COMPLETE / FAIL events of the stages of one carelake run."""

    def __init__(self, client: OpenLineageClient, namespace: str, run_id: str) -> None:
        self.client = client
        self.namespace = namespace
        self.run_id = run_id

    def _parent(self) -> parent_run.ParentRunFacet:
        return parent_run.ParentRunFacet(
            run=parent_run.Run(runId=run_uuid(self.run_id, PIPELINE_JOB)),
            job=parent_run.Job(namespace=self.namespace, name=PIPELINE_JOB),
        )

    def _job(self, stage: str) -> Job:
        kind = job_type_job.JobTypeJobFacet(processingType="BATCH", integration="CARELAKE", jobType="STAGE")
        return Job(namespace=self.namespace, name=f"carelake.{stage}", facets={"jobType": kind})

    def start(self, stage: str, inputs: dict[str, int | None]) -> None:
        """The START event of ``stage`` with the versions it is about to read."""
        self.emit(RunEvent(
            eventType=RunState.START,
            eventTime=event_time(),
            run=Run(runId=run_uuid(self.run_id, stage), facets={
                "parent": self._parent(),
                "carelake_run": CarelakeRunFacet(runId=self.run_id, stage=stage, status="running"),
            }),
            job=self._job(stage),
            inputs=[_input(uri, version, {}) for uri, version in inputs.items()],
            producer=PRODUCER,
        ))

    def finish(self, facts: StageFacts, status: str) -> RunEvent:
        """The COMPLETE (or FAIL, for a failed or erroring stage) event of a stage; the event sent."""
        run_facets: dict[str, RunFacet] = {
            "parent": self._parent(),
            "carelake_run": CarelakeRunFacet(runId=self.run_id, stage=facts.stage, status=status),
        }
        if facts.batches:
            run_facets["carelake_batches"] = BatchesFacet(batchIds=sorted(set(facts.batches)), action=facts.batch_action)
        event = RunEvent(
            eventType=RunState.FAIL if status in ("failed", "error") else RunState.COMPLETE,
            eventTime=event_time(),
            run=Run(runId=run_uuid(self.run_id, facts.stage), facets=run_facets),
            job=self._job(facts.stage),
            inputs=[_input(uri, v, facts.input_facets.get(uri, {})) for uri, v in facts.inputs.items()],
            outputs=[_output(uri, v, facts.output_facets.get(uri, {})) for uri, v in facts.outputs.items()],
            producer=PRODUCER,
        )
        self.emit(event)
        return event

    def emit(self, event: RunEvent) -> None:
        # Lineage is a record of the run, not a part of it: a lineage server that is down must
        # not fail the pipeline; the warning names what was lost.
        try:
            self.client.emit(event)
        except Exception as exc:  # noqa: BLE001 - any transport error
            log.warning("lineage: could not send the %s event of %s: %s", event.eventType.value, event.job.name, exc)


def _version_facets(version: int | None) -> dict[str, BaseFacet]:
    return {} if version is None else {"version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=str(version))}


def _input(uri: str, version: int | None, facets: dict[str, Any]) -> InputDataset:
    namespace, name = dataset_name(uri)
    return InputDataset(namespace=namespace, name=name, facets={**_version_facets(version), **facets})


def _output(uri: str, version: int, facets: dict[str, Any]) -> OutputDataset:
    namespace, name = dataset_name(uri)
    output_facets = {k: v for k, v in facets.items() if k == "outputStatistics"}
    dataset_facets = {k: v for k, v in facets.items() if k != "outputStatistics"}
    return OutputDataset(
        namespace=namespace, name=name, facets={**_version_facets(version), **dataset_facets}, outputFacets=output_facets
    )


def column_lineage(
    sources: dict[str, Iterable[tuple[str, str]]], description: str, subtype: str = "TRANSFORMATION"
) -> column_lineage_dataset.ColumnLineageDatasetFacet:
    """A column lineage facet: output column -> its (input uri, input column) pairs, each a DIRECT
    transformation of ``subtype`` (IDENTITY: the value as it is; TRANSFORMATION: parsed, mapped)."""
    fields = {}
    direct = [column_lineage_dataset.Transformation(type="DIRECT", subtype=subtype, description=description)]
    for column, inputs in sorted(sources.items()):
        input_fields = [
            column_lineage_dataset.InputField(namespace=ns, name=name, field=source_column, transformations=direct)
            for uri, source_column in sorted(set(inputs))
            for ns, name in [dataset_name(uri)]
        ]
        if input_fields:
            fields[column] = column_lineage_dataset.Fields(inputFields=input_fields, transformationDescription=description)
    return column_lineage_dataset.ColumnLineageDatasetFacet(fields=fields)


def gx_assertions(result: dict[str, Any]) -> data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet:
    """Great Expectations' validation result as OpenLineage data quality assertions."""
    assertions = []
    for item in result.get("results", []):
        expectation = item.get("expectation_config", {})
        kwargs = expectation.get("kwargs", {})
        column = kwargs.get("column") or kwargs.get("column_A") or ",".join(kwargs.get("column_list", []) or []) or None
        assertions.append(data_quality_assertions_dataset.Assertion(
            assertion=str(expectation.get("type")), success=bool(item.get("success")), column=column
        ))
    return data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(assertions=assertions)


def read_gx_result(config: Config, run_id: str, entity: str) -> dict[str, Any] | None:
    """The GX result the process stage saved for ``entity`` in run ``run_id``, if any."""
    filesystem, path = filesystem_for(join_uri(config.root, "_runs", run_id, "gx", f"{entity}.json"), config)
    try:
        with filesystem.open_input_stream(path) as stream:
            return json.loads(stream.read())
    except (FileNotFoundError, OSError):
        return None


def output_statistics(rows: int) -> output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet:
    return output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=rows)


def landing_folder(config: Config, path_glob: str) -> str:
    """The landing folder a source entity's glob reads (its part before the first wildcard)."""
    fixed = path_glob.split("*", 1)[0].rsplit("/", 1)[0]
    return join_uri(config.landing if is_remote(config.landing) else to_local_path(config.landing), fixed)
