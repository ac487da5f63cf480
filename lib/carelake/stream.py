"""Near-real-time runs: a Structured Streaming query over the landing zone whose micro-batches
run the batch pipeline's own stages on the files that arrived.

The stream's source is Spark's file source (``binaryFile``, only path, size and modification
time are read); its checkpoint under ``<root>/_checkpoints/landing`` records which files each
micro-batch holds. ``foreachBatch`` hands those files to :func:`carelake.pipeline.run_pipeline`
(ingest narrowed to them, then the downstream stages as configured), so there is one
implementation of every stage. Exactly once across crashes comes from the stages themselves: a
micro-batch replayed after a kill finds its files in the ingest log (or repairs the log from the
raw commit's metadata), and every downstream stage consumes only the batches its own log has
not recorded. Every ``maintain_every`` micro-batches the maintain stage (curated: compaction and
vacuum) and the compact stage (raw and processed: compaction) run too, so small files stay
bounded; Spark keeps ``minBatchesToRetain`` checkpoint entries and compacts its
file-source log, so the checkpoint stays bounded too.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from carelake.config import Config
from carelake.run import RunSummary
from carelake.storage import filesystem_for, join_uri, list_files, spark_uri

log = logging.getLogger(__name__)

DEFAULT_STREAM_STAGES = ("ingest", "process", "model", "aggregates")
PROGRESS_FOLDER = "progress"
# The binaryFile source's fixed schema (a stream must be given it); only path, length and
# modificationTime are selected, so contents are never read.
BINARY_FILE_SCHEMA = "path STRING, modificationTime TIMESTAMP, length BIGINT, content BINARY"


@dataclass(frozen=True)
class StreamSettings:
    """The ``stream`` section of the config, with defaults."""

    stages: tuple[str, ...] = DEFAULT_STREAM_STAGES
    interval_seconds: float = 30.0
    max_files_per_trigger: int = 200
    maintain_every: int = 20

    @classmethod
    def from_config(cls, config: Config) -> StreamSettings:
        section = config.section("stream")
        stages = section.get("stages") or DEFAULT_STREAM_STAGES
        if isinstance(stages, str):  # from the environment: CARELAKE_STREAM__STAGES=ingest,process
            stages = [s.strip() for s in stages.split(",") if s.strip()]
        stages = tuple(stages)
        if not stages or stages[0] != "ingest":
            raise ValueError(f"stream.stages must start with ingest (the stream's files enter there), found {list(stages)}")
        return cls(
            stages=stages,
            interval_seconds=float(section.get("interval_seconds", cls.interval_seconds)),
            max_files_per_trigger=int(section.get("max_files_per_trigger", cls.max_files_per_trigger)),
            maintain_every=int(section.get("maintain_every", cls.maintain_every)),
        )


def checkpoint_location(config: Config) -> str:
    """Where the landing stream keeps its offsets and commits."""
    return join_uri(config.root, "_checkpoints", "landing")


def progress_location(config: Config) -> str:
    """The folder holding one progress record (a JSON object) per finished micro-batch."""
    return join_uri(config.root, "_stream", PROGRESS_FOLDER)


def landing_files(spark: SparkSession, config: Config, settings: StreamSettings) -> DataFrame:
    """A streaming frame of files arriving under the landing zone: ``path``, ``length``,
    ``modificationTime`` (file contents are never read here; ingest reads them)."""
    return (
        spark.readStream.format("binaryFile")
        .schema(BINARY_FILE_SCHEMA)
        .option("recursiveFileLookup", "true")
        .option("maxFilesPerTrigger", settings.max_files_per_trigger)
        .load(spark_uri(config.landing))
        .select("path", "length", "modificationTime")
    )


@dataclass
class MicroBatchProgress:
    """What one micro-batch did: its files, each stage's status and end time, and latencies."""

    batch_id: int
    files: int
    run_id: str | None = None
    status: str = "nothing-to-do"
    started_at: float = field(default_factory=time.time)
    stage_finished_at: dict[str, float] = field(default_factory=dict)
    stage_status: dict[str, str] = field(default_factory=dict)
    landed_at: list[float] = field(default_factory=list)
    maintained: bool = False

    def latencies(self, stage: str) -> list[float]:
        """Seconds from each file's landing to the end of ``stage`` in this micro-batch."""
        end = self.stage_finished_at.get(stage)
        return [] if end is None else [end - t for t in self.landed_at]

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id, "run_id": self.run_id, "status": self.status, "files": self.files,
            "started_at": self.started_at, "stage_finished_at": self.stage_finished_at,
            "stage_status": self.stage_status, "landed_at": self.landed_at, "maintained": self.maintained,
        }

    def line(self) -> str:
        """One human line: batch, files, stages with status, latency to the last stage."""
        stages = " ".join(f"{name}={status}" for name, status in self.stage_status.items()) or "-"
        last = list(self.stage_finished_at)[-1] if self.stage_finished_at else None
        lat = self.latencies(last) if last else []
        latency = f", landing->{last} p50 {statistics.median(lat):.1f} s max {max(lat):.1f} s" if lat else ""
        return f"micro-batch {self.batch_id}: {self.files} file(s), {stages}{latency}{' (maintained)' if self.maintained else ''}"


def _write_progress(config: Config, progress: MicroBatchProgress) -> None:
    # One object per micro-batch (object stores have no append, and rewriting one growing file
    # costs more with every batch). Named by batch id then time: a batch replayed after a crash
    # keeps both records, and names sort in the order they were written.
    filesystem, folder = filesystem_for(progress_location(config), config)
    filesystem.create_dir(folder, recursive=True)
    name = f"{progress.batch_id:012d}-{time.time_ns()}.json"
    with filesystem.open_output_stream(f"{folder}/{name}") as out:
        out.write(json.dumps(progress.to_dict()).encode())


def read_progress(config: Config) -> list[dict[str, Any]]:
    """Every micro-batch progress record written so far (oldest first)."""
    records = []
    for info in list_files(progress_location(config), "*.json", config):  # sorted by name
        filesystem, path = filesystem_for(info.uri, config)
        with filesystem.open_input_stream(path) as stream:
            records.append(json.loads(stream.read().decode()))
    return records


def micro_batch_runner(
    config: Config, settings: StreamSettings, report: Callable[[str], None] = print
) -> Callable[[DataFrame, int], None]:
    """The ``foreachBatch`` function: run the configured stages on the micro-batch's files."""
    from carelake.pipeline import run_pipeline

    def run(batch: DataFrame, batch_id: int) -> None:
        files = batch.collect()
        progress = MicroBatchProgress(batch_id=batch_id, files=len(files),
                                      landed_at=[r["modificationTime"].timestamp() for r in files])
        if files:
            spark = batch.sparkSession
            run_id = f"stream-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{batch_id}"
            stages = list(settings.stages)
            progress.maintained = settings.maintain_every > 0 and batch_id % settings.maintain_every == settings.maintain_every - 1
            if progress.maintained:
                stages += ["maintain", "compact"]
            summary: RunSummary = run_pipeline(spark, config, stages, run_id=run_id, ingest_files=[r["path"] for r in files])
            progress.run_id, progress.status = run_id, summary.status
            finished = progress.started_at
            for stage in summary.stages:
                finished += stage.duration_s or 0.0
                progress.stage_finished_at[stage.stage] = finished
                progress.stage_status[stage.stage] = stage.status
            if summary.status != "ok":
                # The query stops with this error; its checkpoint replays the batch on restart.
                raise RuntimeError(f"micro-batch {batch_id}: run {run_id} ended {summary.status}; see <root>/_runs/{run_id}.json")
        _write_progress(config, progress)
        report(progress.line())

    return run


def start_stream(
    spark: SparkSession, config: Config, available_now: bool = False,
    settings: StreamSettings | None = None, report: Callable[[str], None] = print,
) -> StreamingQuery:
    """Start the landing stream: every ``interval_seconds`` (processing-time trigger), or with
    ``available_now`` every file that has landed, in micro-batches, then stop."""
    settings = settings or StreamSettings.from_config(config)
    writer = (
        landing_files(spark, config, settings).writeStream.queryName("carelake-landing")
        .option("checkpointLocation", spark_uri(checkpoint_location(config)))
        .foreachBatch(micro_batch_runner(config, settings, report))
    )
    writer = writer.trigger(availableNow=True) if available_now else writer.trigger(processingTime=f"{settings.interval_seconds} seconds")
    return writer.start()
