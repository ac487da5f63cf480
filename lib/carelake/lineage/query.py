"""The answers of ``carelake lineage``: upstream and downstream of a table or column, and every
table version a batch touched."""

from __future__ import annotations

from carelake.lineage.graph import Dataset, LineageGraph

MAX_FILES = 20  # source files listed per landing folder; the rest are counted


def _version(graph: LineageGraph, dataset: Dataset) -> str:
    version = graph.latest_version(dataset)
    return "" if version is None else f" (version {version})"


def describe(graph: LineageGraph, target: str) -> list[str]:
    """Lines answering ``carelake lineage <zone>/<table>[.<column>]``; ValueError naming what is
    known when the table or column is not in the lineage events."""
    table, _, column = target.strip("/").partition(".")
    dataset = graph.dataset(table)
    if dataset is None:
        known = sorted({graph.label(d) for d in graph.datasets()})
        raise ValueError(f"lineage: no table {table!r} in the lineage events; known: {', '.join(known) or 'none (run the pipeline first)'}")
    if column:
        return _describe_column(graph, dataset, column)
    return _describe_table(graph, dataset)


def _describe_column(graph: LineageGraph, dataset: Dataset, column: str) -> list[str]:
    label = graph.label(dataset)
    if column not in graph.columns(dataset):
        known = graph.columns(dataset)
        raise ValueError(f"lineage: no column lineage for {label}.{column}; columns with lineage: {', '.join(known) or 'none'}")
    lines = [f"{label}.{column}{_version(graph, dataset)}", "upstream columns:"]
    upstream = graph.upstream_columns((dataset, column))
    lines += [f"  {'  ' * depth}{graph.label(ds)}.{col}{_version(graph, ds)}" for depth, (ds, col) in upstream] or ["  none recorded"]
    folders = sorted({ds for _, (ds, _) in upstream if graph.label(ds).startswith("landing/")}, key=graph.label)
    lines += _files(graph, folders)
    lines.append("downstream columns:")
    downstream = graph.downstream_columns((dataset, column))
    lines += [f"  {'  ' * depth}{graph.label(ds)}.{col}" for depth, (ds, col) in downstream] or ["  none recorded"]
    return lines


def _describe_table(graph: LineageGraph, dataset: Dataset) -> list[str]:
    lines = [f"{graph.label(dataset)}{_version(graph, dataset)}", "upstream tables:"]
    upstream = graph.upstream_tables(dataset)
    lines += [f"  {'  ' * depth}{graph.label(ds)}{_version(graph, ds)}" for depth, ds in upstream] or ["  none recorded"]
    lines += _files(graph, sorted({ds for _, ds in upstream if graph.label(ds).startswith("landing/")}, key=graph.label))
    lines.append("downstream tables:")
    lines += [f"  {'  ' * depth}{graph.label(ds)}{_version(graph, ds)}" for depth, ds in graph.downstream_tables(dataset)] or ["  none recorded"]
    return lines


def _files(graph: LineageGraph, folders: list[Dataset]) -> list[str]:
    if not folders:
        return []
    lines = ["source files:"]
    for folder in folders:
        files = graph.source_files(folder)
        for f in files[:MAX_FILES]:
            # The event JSON leaves out empty values: a rejected file has no rows, an ingested one no reason.
            status = f["status"] + (f" ({f['reason']})" if f.get("reason") else "")
            lines.append(f"  {graph.label(folder)}/{f['name'].rsplit('/', 1)[-1]}  sha256 {f['sha256'][:12]}  "
                         f"rows {f.get('rows', '-')}  {status}  batch {f['batch_id']}")
        if len(files) > MAX_FILES:
            lines.append(f"  ... {len(files) - MAX_FILES} more file(s) in {graph.label(folder)}")
    return lines


def describe_batch(graph: LineageGraph, batch_id: str) -> list[str]:
    """Lines answering ``carelake lineage --batch <id>``: each table version the batch reached."""
    found = graph.batch_versions(batch_id)
    if not found:
        raise ValueError(f"lineage: no run in the lineage events wrote or consumed batch {batch_id!r}")
    lines = [f"batch {batch_id}: {len(found)} table version(s)", f"  {'stage':<11}{'run':<25}{'table':<36}{'version':>8}  how"]
    for run, table, version, how in found:
        lines.append(f"  {run.stage:<11}{run.run_id:<25}{graph.label(table):<36}{version:>8}  {how}")
    return lines
