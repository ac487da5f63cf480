"""The run summary written to ``<root>/_runs/<run_id>.json`` after every run.

Per stage and entity: rows in / valid / quarantined / duplicates dropped / written, the Delta
versions written, and the duration. ``EntityCounts.reconciles`` is the promise every stage
keeps: rows in = valid + quarantined + duplicates dropped.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from carelake.config import Config
from carelake.delta.audit import current_actor
from carelake.storage import filesystem_for, join_uri


def new_run_id() -> str:
    """A sortable, unique run id: UTC timestamp plus a short random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


@dataclass
class EntityCounts:
    """Row counts of one entity (or table) in one stage."""

    rows_in: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    duplicates_dropped: int = 0
    rows_written: int = 0
    delta_version: int | None = None

    @property
    def reconciles(self) -> bool:
        return self.rows_in == self.rows_valid + self.rows_quarantined + self.duplicates_dropped


@dataclass
class StageSummary:
    """What one stage did: counts per entity, tables and versions written, notes, status."""

    stage: str
    status: str = "ok"  # ok | failed | nothing-to-do
    entities: dict[str, EntityCounts] = field(default_factory=dict)
    tables: dict[str, int] = field(default_factory=dict)  # table uri -> Delta version written
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    _started: float = field(default_factory=time.monotonic, repr=False)

    def counts(self, entity: str) -> EntityCounts:
        """The (created on first use) counts of ``entity``."""
        return self.entities.setdefault(entity, EntityCounts())

    def finish(self, status: str | None = None) -> StageSummary:
        """Stamp the duration (and status) when the stage ends."""
        self.duration_s = round(time.monotonic() - self._started, 3)
        if status:
            self.status = status
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "status": self.status,
            "duration_s": self.duration_s,
            "entities": {
                name: {**asdict(c), "reconciles": c.reconciles} for name, c in self.entities.items()
            },
            "tables": self.tables,
            "notes": self.notes,
        }


@dataclass
class RunSummary:
    """The whole run: id, config, stages in order, overall status."""

    run_id: str
    config_file: str
    root: str
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    actor: str = field(default_factory=current_actor)  # who ran it: $CARELAKE_ACTOR or the OS user
    finished_at: str | None = None
    status: str = "running"
    stages: list[StageSummary] = field(default_factory=list)
    lineage_page: str | None = None  # the run's lineage page (carelake.lineage), when lineage is on
    lineage_seconds: float | None = None  # time the run spent gathering and sending its lineage events

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "config_file": self.config_file,
            "root": self.root,
            "actor": self.actor,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "status": self.status,
            "stages": [s.to_dict() for s in self.stages],
            "lineage_page": self.lineage_page,
            "lineage_seconds": self.lineage_seconds,
        }

    def write(self, config: Config) -> str:
        """Write ``<root>/_runs/<run_id>.json`` (local disk or the object store ``config`` names); returns its URI."""
        self.finished_at = self.finished_at or datetime.now(timezone.utc).isoformat()
        uri = join_uri(self.root, "_runs", f"{self.run_id}.json")
        payload = json.dumps(self.to_dict(), indent=2, sort_keys=False).encode("utf-8")
        filesystem, path = filesystem_for(uri, config)
        filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with filesystem.open_output_stream(path) as out:
            out.write(payload)
        return uri
