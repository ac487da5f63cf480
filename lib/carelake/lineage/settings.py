"""Where OpenLineage events go: the ``lineage`` section of the config.

Two producers write the events: OpenLineage's own Spark listener (``openlineage-spark``, fetched
by ``make setup`` like the Delta jars) sends one event per Spark job with its dataset- and
column-level lineage, and :mod:`carelake.lineage.events` sends one run per pipeline stage with
what Spark cannot know (source files and checksums, batch ids, Delta versions, quarantine
counts, expectation results). Both use the same transport: files under ``<root>/_lineage/`` by
default, an HTTP lineage server (Marquez, DataHub, OpenMetadata, ...) when ``lineage.url`` is set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from carelake.config import Config
from carelake.storage import is_remote, join_uri, to_local_path

LISTENER = "io.openlineage.spark.agent.OpenLineageSparkListener"
LINEAGE_FOLDER = "_lineage"
STAGE_EVENTS_FILE = "carelake.jsonl"  # the per-stage run events (openlineage-python)
SPARK_EVENTS_FILE = "spark.jsonl"  # the Spark listener's events
API_KEY_ENV = "OPENLINEAGE_API_KEY"
# Logical plan roots of Spark jobs that touch no table (OpenLineage's deniedSparkNodes filter).
DATASET_LESS_PLAN_ROOTS = (
    "org.apache.spark.sql.execution.LogicalRDD",
    "org.apache.spark.sql.catalyst.plans.logical.Union",
)


@dataclass(frozen=True)
class LineageSettings:
    """The ``lineage`` section, resolved: on or off, file folder or HTTP server."""

    enabled: bool
    spark: bool
    namespace: str
    url: str | None
    endpoint: str
    folder: str | None  # local folder of the event files; None when events go over HTTP only

    @property
    def stage_events_path(self) -> str | None:
        return None if self.folder is None else os.path.join(self.folder, STAGE_EVENTS_FILE)

    @property
    def spark_events_path(self) -> str | None:
        return None if self.folder is None else os.path.join(self.folder, SPARK_EVENTS_FILE)


def lineage_settings(config: Config) -> LineageSettings:
    """The resolved ``lineage`` section of ``config``.

    File events need a local folder: for an object-store root they are off unless
    ``lineage.dir`` names a local folder or ``lineage.url`` a server."""
    section = config.section("lineage")
    url = section.get("url") or None
    folder = section.get("dir") or None
    if folder is None and not is_remote(config.root):
        folder = join_uri(to_local_path(config.root), LINEAGE_FOLDER)
    if url:
        folder = None
    enabled = bool(section.get("enabled", True)) and (url is not None or folder is not None)
    return LineageSettings(
        enabled=enabled,
        spark=enabled and bool(section.get("spark", True)),
        namespace=str(section.get("namespace") or "carelake"),
        url=str(url) if url else None,
        endpoint=str(section.get("endpoint") or "api/v1/lineage"),
        folder=str(Path(folder).resolve()) if folder else None,
    )


def openlineage_jar(jars: list[Path]) -> Path | None:
    """The OpenLineage Spark listener jar among ``jars``, if fetched."""
    return next((j for j in jars if j.name.startswith("openlineage-spark_")), None)


def spark_listener_conf(config: Config, jars: list[Path]) -> dict[str, str]:
    """Spark settings that start OpenLineage's listener with this config's transport; {} when
    lineage or its Spark part is off, or the listener jar was not fetched."""
    settings = lineage_settings(config)
    if not settings.spark or openlineage_jar(jars) is None:
        return {}
    conf = {
        "spark.extraListeners": LISTENER,
        "spark.openlineage.namespace": settings.namespace,
        # Jobs that read and write no dataset (actions on RDDs and on frames built from Python
        # rows, counts of unions) give events with no inputs or outputs: skip building them.
        "spark.openlineage.filter.rddEventsDisabled": "true",
        "spark.openlineage.filter.deniedSparkNodes": "[" + ";".join(DATASET_LESS_PLAN_ROOTS) + "]",
    }
    if settings.url:
        conf.update({
            "spark.openlineage.transport.type": "http",
            "spark.openlineage.transport.url": settings.url,
            "spark.openlineage.transport.endpoint": settings.endpoint,
        })
    else:
        os.makedirs(str(settings.folder), exist_ok=True)
        conf.update({
            "spark.openlineage.transport.type": "file",
            "spark.openlineage.transport.location": str(settings.spark_events_path),
        })
    return conf
