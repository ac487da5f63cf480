"""The lineage graph read back from the OpenLineage event files, and the questions it answers.

Table edges come from carelake's stage events (what each stage read -> what it wrote, with
versions); column edges from every event's ``columnLineage`` facet: carelake's (landing column
-> raw column -> processed column, from the config) and the Spark listener's (every Spark job's
plan: processed -> curated -> aggregates). Datasets are shown as ``<zone>/<table>`` relative
to the lakehouse root (``landing/<folder>`` for landing folders).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from carelake.config import Config
from carelake.lineage.events import PRODUCER, dataset_name
from carelake.storage import is_remote, to_local_path

Dataset = tuple[str, str]  # (namespace, name)
Column = tuple[Dataset, str]


@dataclass(frozen=True)
class StageRun:
    """One finished stage, as its COMPLETE / FAIL event tells it."""

    run_id: str
    stage: str
    status: str
    event_time: str
    inputs: dict[Dataset, int | None]
    outputs: dict[Dataset, int]
    batches: tuple[str, ...]
    batch_action: str
    source_files: dict[Dataset, list[dict[str, Any]]]


@dataclass
class LineageGraph:
    """Stage runs in time order, table edges and column edges."""

    root: str
    landing: str
    runs: list[StageRun] = field(default_factory=list)
    table_edges: set[tuple[Dataset, Dataset]] = field(default_factory=set)
    column_edges: set[tuple[Column, Column]] = field(default_factory=set)  # (input, output)

    def label(self, dataset: Dataset) -> str:
        """``<zone>/<table>`` for a table under the root, ``landing/<folder>`` for a landing folder."""
        _, name = dataset
        for base, prefix in ((self.landing, "landing"), (self.root, "")):
            if name == base or name.startswith(base + "/"):
                rest = name[len(base):].strip("/")
                return f"{prefix}/{rest}" if prefix else rest
        return name

    def dataset(self, label: str) -> Dataset | None:
        """The dataset a ``<zone>/<table>`` label names, if the events know it."""
        for ds in self.datasets():
            if self.label(ds) == label.strip("/"):
                return ds
        return None

    def datasets(self) -> set[Dataset]:
        found = {d for edge in self.table_edges for d in edge}
        found |= {c[0] for edge in self.column_edges for c in edge}
        for run in self.runs:
            found |= set(run.outputs) | set(run.inputs)
        return found

    def latest_version(self, dataset: Dataset) -> int | None:
        versions = [run.outputs[dataset] for run in self.runs if dataset in run.outputs]
        return versions[-1] if versions else None

    def columns(self, dataset: Dataset) -> list[str]:
        """The columns of ``dataset`` any column edge names."""
        return sorted({c[1] for edge in self.column_edges for c in edge if c[0] == dataset})

    def column_parents(self, column: Column) -> list[Column]:
        return sorted(i for i, o in self.column_edges if o == column and i[0] != column[0])

    def column_children(self, column: Column) -> list[Column]:
        return sorted(o for i, o in self.column_edges if i == column and o[0] != column[0])

    def upstream_columns(self, column: Column) -> list[tuple[int, Column]]:
        """Every column ``column`` derives from, depth first: (depth, column)."""
        return _walk(column, self.column_parents)

    def downstream_columns(self, column: Column) -> list[tuple[int, Column]]:
        return _walk(column, self.column_children)

    def upstream_tables(self, dataset: Dataset) -> list[tuple[int, Dataset]]:
        return _walk(dataset, lambda d: sorted(i for i, o in self.table_edges if o == d and i != d))

    def downstream_tables(self, dataset: Dataset) -> list[tuple[int, Dataset]]:
        return _walk(dataset, lambda d: sorted(o for i, o in self.table_edges if i == d and o != d))

    def source_files(self, folder: Dataset) -> list[dict[str, Any]]:
        """Every landing file of ``folder`` that an ingest run listed, with its batch id."""
        return [
            {**f, "batch_id": run.batches[0] if run.batches else run.run_id}
            for run in self.runs
            for f in run.source_files.get(folder, [])
        ]

    def batch_versions(self, batch_id: str) -> list[tuple[StageRun, Dataset, int, str]]:
        """Every table version batch ``batch_id`` reached: (run, table, version, how).

        A run reached it when its batches facet names it, or when it read a version of a table
        that an earlier such run wrote (or a later one). A rollback of the batch ends its reach
        into the tables it rolled back."""
        reached: dict[Dataset, int] = {}  # table -> first version holding the batch
        rolled_back: set[Dataset] = set()
        found = []
        for run in self.runs:
            named = batch_id in run.batches
            if named and run.batch_action == "rolled_back":
                for table, version in run.outputs.items():
                    found.append((run, table, version, "rolled back"))
                    rolled_back.add(table)
                continue
            read = any(
                table in reached and table not in rolled_back and version is not None and version >= reached[table]
                for table, version in run.inputs.items()
            )
            if not (named or read):
                continue
            how = "written" if run.batch_action == "written" and named else ("consumed" if named else "derived")
            for table, version in run.outputs.items():
                reached.setdefault(table, version)
                rolled_back.discard(table)
                found.append((run, table, version, how))
        return found


def _walk(start: Any, neighbours) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    seen = {start}

    def visit(node: Any, depth: int) -> None:
        for nxt in neighbours(node):
            if nxt in seen:
                continue
            seen.add(nxt)
            out.append((depth, nxt))
            visit(nxt, depth + 1)

    visit(start, 0)
    return out


def event_files(folder: str) -> list[str]:
    """The ``*.jsonl`` event files in ``folder`` (both producers')."""
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".jsonl"))


def read_events(paths: Iterable[str]) -> list[dict[str, Any]]:
    """Every event of the files, in file order; a truncated last line (a run killed mid-write) is skipped."""
    events = []
    for path in paths:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                line = line.strip()
                if not line:
                    continue
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return events


def _direct(source: dict[str, Any]) -> bool:
    """True for an input field whose values flow into the output column (a DIRECT transformation,
    or none listed); the listener's INDIRECT ones (join keys, filters, group-by, sort) shaped
    which rows were used, not the values, and are not followed."""
    kinds = {t.get("type") for t in source.get("transformations") or []}
    return not kinds or "DIRECT" in kinds


def _version(facets: dict[str, Any]) -> int | None:
    version = (facets or {}).get("version", {}).get("datasetVersion")
    return int(version) if version is not None and str(version).isdigit() else None


def build_graph(events: Iterable[dict[str, Any]], root: str, landing: str) -> LineageGraph:
    """The graph of ``events`` (any order; stage runs sorted by event time)."""
    graph = LineageGraph(root=root, landing=landing)
    for event in events:
        # The Spark listener puts column lineage on RUNNING events too; START ones may lack it.
        if event.get("eventType") not in ("COMPLETE", "FAIL", "RUNNING"):
            continue
        for output in event.get("outputs") or []:
            target = (output["namespace"], output["name"])
            lineage = (output.get("facets") or {}).get("columnLineage") or {}
            for out_field, spec in (lineage.get("fields") or {}).items():
                for source in spec.get("inputFields") or []:
                    if not _direct(source):
                        continue
                    graph.column_edges.add((((source["namespace"], source["name"]), source["field"]), (target, out_field)))
        run_facets = (event.get("run") or {}).get("facets") or {}
        carelake = run_facets.get("carelake_run")
        if event.get("producer") != PRODUCER or not carelake or carelake.get("stage") == "pipeline" or event["eventType"] == "RUNNING":
            continue
        inputs = {(i["namespace"], i["name"]): _version(i.get("facets")) for i in event.get("inputs") or []}
        outputs = {(o["namespace"], o["name"]): _version(o.get("facets")) or 0 for o in event.get("outputs") or []}
        batches = run_facets.get("carelake_batches") or {}
        files = {
            (i["namespace"], i["name"]): i["facets"]["carelake_sourceFiles"]["files"]
            for i in event.get("inputs") or []
            if "carelake_sourceFiles" in (i.get("facets") or {})
        }
        graph.runs.append(StageRun(
            run_id=carelake["runId"], stage=carelake["stage"], status=carelake["status"], event_time=event["eventTime"],
            inputs=inputs, outputs=outputs, batches=tuple(batches.get("batchIds") or ()),
            batch_action=batches.get("action") or "", source_files=files,
        ))
        for source in inputs:
            for target in outputs:
                if source != target:
                    graph.table_edges.add((source, target))
    graph.runs.sort(key=lambda r: r.event_time)
    return graph


def load_graph(config: Config, folder: str) -> LineageGraph:
    """The graph of every event file in ``folder`` for ``config``'s lakehouse."""
    root = dataset_name(config.root)[1] if is_remote(config.root) else to_local_path(config.root)
    landing = dataset_name(config.landing)[1] if is_remote(config.landing) else to_local_path(config.landing)
    return build_graph(read_events(event_files(folder)), root, landing)
