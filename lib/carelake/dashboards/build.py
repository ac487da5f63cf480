"""Writing the static report: ``<root>/_reports/latest/index.html`` and one page per dashboard.

Each page is one HTML file with the page script and the chart rows inlined; Plotly's JavaScript
bundle (from the ``plotly`` package, ~4.8 MB) is one file next to the pages that every page
loads by its relative name, so the folder opens from disk or an S3 bucket with no server and
nothing fetched from the internet. The rows are the small frames of
:mod:`carelake.dashboards.frames` (months x hospitals x departments, providers, ...), never
patient rows. Every chart names the tables and Delta versions it was drawn from and the as-of
date of the aggregates.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from datetime import date, datetime, timezone
from functools import lru_cache, reduce
from importlib import resources
from typing import TYPE_CHECKING, Any

import jinja2
import pandas as pd
from markupsafe import Markup
from pyarrow import fs as pafs
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carelake.config import Config
from carelake.curated.state import STATE_TABLE as AGGREGATE_STATE_TABLE
from carelake.dashboards.pages import DASHBOARDS, FILTERS, FRAMES, RUN_FRAMES, Chart, check_catalog
from carelake.delta.arrow import live_bytes, read_arrow, readable_by_pyarrow
from carelake.delta.errors import TableNotFoundError
from carelake.delta.log import open_table
from carelake.delta.storage import rs_uri, storage_options
from carelake.run import RunSummary
from carelake.storage import filesystem_for, is_remote, join_uri, table_uri, to_local_path

if TYPE_CHECKING:
    from carelake.delta import DeltaTables

log = logging.getLogger(__name__)

REPORT_FOLDER = "_reports/latest"
LINEAGE_PAGE = "lineage.html"  # written by the lineage report when it runs; linked when present
STATE_TABLE = f"curated.{AGGREGATE_STATE_TABLE}"
# Tables up to this size are read on the driver with pyarrow (the curated aggregates: months x
# hospitals x departments, providers, areas); larger ones through Spark.
DRIVER_READ_BYTES = 16 * 1024 * 1024

HEADERS = {
    "npi": "NPI", "specialty": "Specialty", "encounters_365d": "Encounters (365 d)", "cost_per_case": "Cost per case",
    "cost_index": "Cost index", "readmission_rate": "Readmission", "readmission_rate_shrunk": "Readmission (shrunk)",
    "complication_rate_shrunk": "Complication (shrunk)", "avg_satisfaction": "Satisfaction", "composite_score": "Score",
    "top_procedure_code": "Top code", "top_procedure_share": "Top code share", "procedure_hhi": "HHI",
    "zip3": "Area (zip3)", "referrals_requested": "Referrals", "referrals_leaked": "Leaked", "leakage_rate": "Leakage",
    "expand_network": "Expand?", "route_to": "Route to (NPI, best first)",
    "eligible_providers": "Eligible", "routing_reason": "Why", "stage": "Stage", "table": "Table", "rows_in": "In",
    "rows_valid": "Valid", "rows_quarantined": "Quarantined", "duplicates_dropped": "Duplicates", "rows_written": "Written",
    "delta_version": "Version", "reconciles": "Reconciles", "entity": "Table", "run_id": "Run", "success": "Passed",
    "evaluated": "Expectations", "failed": "Failed", "failed_expectations": "Failed expectations",
}
FILTER_NAMES = {"hospital": "hospital", "service_month": "month", "specialty": "specialty"}


def column_format(column: str) -> str:
    """The d3 format a table shows ``column`` with (rates as percentages, money rounded)."""
    if column.endswith(("_rate", "_share", "_shrunk")) or column == "readmission_rate":
        return ".1%"
    if column.startswith("cost_per") or column in ("paid", "billed", "allowed", "total_cost"):
        return "$,.0f"
    if column in ("cost_index", "composite_score", "procedure_hhi", "avg_satisfaction"):
        return ".2f"
    return ""


def plotly_file() -> str:
    """The name of the Plotly bundle beside the pages; versioned, so a page never loads a
    bundle other than the one it was written for."""
    from plotly.offline.offline import get_plotlyjs_version

    return f"plotly-{get_plotlyjs_version()}.min.js"


@lru_cache(maxsize=1)
def _report_script() -> str:
    return resources.files("carelake.dashboards").joinpath("report.js").read_text(encoding="utf-8")


def _write_plotly(config: Config, base: str) -> str:
    """Write Plotly's bundle into the report folder unless it is there whole already (same
    size: a write cut short is written again); returns its name."""
    from plotly.offline import get_plotlyjs

    name = plotly_file()
    bundle = get_plotlyjs().encode("utf-8")
    filesystem, path = filesystem_for(join_uri(base, name), config)
    info = filesystem.get_file_info(path)
    if info.type != pafs.FileType.File or info.size != len(bundle):
        filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with filesystem.open_output_stream(path) as out:
            out.write(bundle)
    return name


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("carelake.dashboards", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )


def _json_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def frame_payload(frame: pd.DataFrame) -> dict[str, Any]:
    """A pandas frame as ``{"columns": [...], "data": [[...], ...]}`` with JSON-safe values."""
    rows = [[_json_value(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    return {"columns": [str(c) for c in frame.columns], "data": rows}


def script_json(payload: Any) -> str:
    """JSON safe to inline in a ``<script>``: no ``</`` can close the tag early."""
    return json.dumps(payload, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def frames_as_json(built: dict[str, DataFrame]) -> DataFrame:
    """Every frame's rows as ``(frame, row)`` with ``row`` a JSON object (nulls kept), in one
    DataFrame: the report collects all its frames in one Spark job instead of one job each."""
    parts = [
        df.select(F.lit(name).alias("frame"), F.to_json(F.struct(*df.columns), {"ignoreNullFields": "false"}).alias("row"))
        for name, df in built.items()
    ]
    return reduce(DataFrame.unionByName, parts)


def collect_frames(built: dict[str, DataFrame]) -> dict[str, dict[str, Any]]:
    """The frames' rows as :func:`frame_payload` payloads, collected together."""
    payloads = {name: {"columns": list(df.columns), "data": []} for name, df in built.items()}
    if built:
        for frame, row in frames_as_json(built).collect():
            values = json.loads(row)
            payloads[frame]["data"].append([_json_value(values.get(c)) for c in payloads[frame]["columns"]])
    return payloads


def reconciliation_frame(summary: dict[str, Any] | None) -> pd.DataFrame:
    """Per stage and entity of a run summary (``RunSummary.to_dict()`` or its JSON file): the
    counts and whether they reconcile (in = valid + quarantined + duplicates dropped)."""
    columns = ["stage", "table", "rows_in", "rows_valid", "rows_quarantined", "duplicates_dropped", "rows_written",
               "delta_version", "reconciles"]
    rows = []
    for stage in (summary or {}).get("stages", []):
        for name, counts in sorted(stage["entities"].items()):
            reconciles = counts["rows_in"] == counts["rows_valid"] + counts["rows_quarantined"] + counts["duplicates_dropped"]
            rows.append([stage["stage"], name, *(counts[c] for c in columns[2:8]), "yes" if reconciles else "NO"])
    return pd.DataFrame(rows, columns=columns)


def _latest_summary(config: Config) -> dict[str, Any] | None:
    """The newest ``<root>/_runs/<run_id>.json`` (run ids sort by time), or None."""
    filesystem, base = filesystem_for(join_uri(config.root, "_runs"), config)
    found = sorted(
        info.path for info in filesystem.get_file_info(pafs.FileSelector(base, allow_not_found=True))
        if info.type == pafs.FileType.File and info.path.endswith(".json")
    )
    if not found:
        return None
    with filesystem.open_input_stream(found[-1]) as stream:
        return json.loads(stream.read())


def expectation_rows(results: dict[str, tuple[str, dict[str, Any]]]) -> pd.DataFrame:
    """``{entity: (run_id, GX validation result JSON)}`` -> one row per entity: passed, evaluated
    and failed expectation counts, and the failed expectations by type and column."""
    rows = []
    for entity, (run_id, result) in sorted(results.items()):
        stats = result.get("statistics", {})
        failed = []
        for item in result.get("results", []):
            if not item.get("success"):
                config = item.get("expectation_config", {})
                column = config.get("kwargs", {}).get("column")
                failed.append(f"{config.get('type')}:{column}" if column else str(config.get("type")))
        rows.append([entity, run_id, "yes" if result.get("success") else "NO", stats.get("evaluated_expectations"),
                     stats.get("unsuccessful_expectations", len(failed)), ", ".join(failed) or "-"])
    return pd.DataFrame(rows, columns=["entity", "run_id", "success", "evaluated", "failed", "failed_expectations"])


def _latest_gx_results(config: Config) -> dict[str, tuple[str, dict[str, Any]]]:
    """The newest ``<root>/_runs/<run_id>/gx/<entity>.json`` per entity (run ids sort by time)."""
    filesystem, base = filesystem_for(join_uri(config.root, "_runs"), config)
    latest: dict[str, tuple[str, str]] = {}
    for info in filesystem.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True)):
        parts = info.path[len(base):].strip("/").split("/")
        if info.type == pafs.FileType.File and len(parts) == 3 and parts[1] == "gx" and parts[2].endswith(".json"):
            entity = parts[2][: -len(".json")]
            if entity not in latest or parts[0] > latest[entity][0]:
                latest[entity] = (parts[0], info.path)
    results = {}
    for entity, (run_id, path) in latest.items():
        with filesystem.open_input_stream(path) as stream:
            results[entity] = (run_id, json.loads(stream.read()))
    return results


def _write(config: Config, uri: str, text: str) -> None:
    filesystem, path = filesystem_for(uri, config)
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with filesystem.open_output_stream(path) as out:
        out.write(text.encode("utf-8"))


def _exists(config: Config, uri: str) -> bool:
    filesystem, path = filesystem_for(uri, config)
    return filesystem.get_file_info(path).type == pafs.FileType.File


def _source_line(chart: Chart, frame_tables: dict[str, tuple[str, ...]], versions: dict[str, int | None],
                 run_id: str, as_of: str, columns: list[str]) -> str:
    if chart.frame in RUN_FRAMES:
        origin = f"From run {run_id}'s summary" if chart.frame == "reconciliation" else "From <root>/_runs/<run_id>/gx"
    else:
        origin = "From " + ", ".join(
            f"{t} v{versions[t]}" if versions.get(t) is not None else f"{t} (not built yet)" for t in frame_tables[chart.frame]
        )
    applied = [FILTER_NAMES[f] for f in FILTERS if f in columns]
    filters = f"filters: {', '.join(applied)}" if applied else "not filtered"
    return f"{origin} · aggregates as of {as_of} · {filters}"


def read_input(spark: SparkSession, config: Config, tables: DeltaTables, uri: str) -> tuple[int | None, DataFrame | None]:
    """A table the report reads, at its latest version from its Delta log: ``(version, rows)``,
    ``(None, None)`` when there is no table at ``uri``. A table of at most
    :data:`DRIVER_READ_BYTES` of Parquet that pyarrow reads exactly is read on the driver from the
    log's file list and handed to Spark as local rows: no Delta snapshot jobs, which were most of
    the report's time (one set per table, a dozen tables). A larger one is read by the Delta
    engine, at the same version."""
    options = storage_options(config)
    try:
        table = open_table(rs_uri(uri), options)
    except TableNotFoundError:
        return None, None
    version = table.version()
    if readable_by_pyarrow(table) and live_bytes(table) <= DRIVER_READ_BYTES:
        return version, spark.createDataFrame(read_arrow(rs_uri(uri), options, table))
    return version, tables.read(uri, version=version)


def _as_of(inputs: dict[str, DataFrame]) -> str:
    state = inputs.get(STATE_TABLE)
    if state is None:
        return "not built yet"
    value = state.agg(F.max("as_of")).collect()[0][0]
    return str(value) if value else "not built yet"


def build_report(spark: SparkSession, config: Config, tables: DeltaTables, summary: RunSummary | None = None) -> str:
    """Read the curated tables the dashboards draw (at their latest versions), build every page
    and write them under ``<root>/_reports/latest/``; returns the index page's path (local) or
    URI (object store). A table not built yet leaves its charts empty with a note, not an error."""
    started = time.monotonic()
    check_catalog()
    needed = sorted({t for name in FRAMES for t in FRAMES[name].tables} | {STATE_TABLE})
    versions: dict[str, int | None] = {}
    inputs: dict[str, DataFrame] = {}
    for name in needed:
        zone, table = name.split(".", 1)
        versions[name], rows = read_input(spark, config, tables, table_uri(config, zone, table))
        if rows is not None:
            inputs[name] = rows
    as_of_text = _as_of(inputs)
    as_of = date.fromisoformat(as_of_text) if as_of_text[:1].isdigit() else datetime.now(timezone.utc).date()

    built = {name: frame.build(inputs, as_of) for name, frame in FRAMES.items() if all(t in inputs for t in frame.tables)}
    payloads: dict[str, dict[str, Any]] = {name: {"columns": [], "data": []} for name in FRAMES}
    payloads.update(collect_frames(built))
    run = summary.to_dict() if summary else _latest_summary(config)
    payloads["reconciliation"] = frame_payload(reconciliation_frame(run))
    payloads["expectations"] = frame_payload(expectation_rows(_latest_gx_results(config)))
    read_s = time.monotonic() - started

    hospitals = {name: source.display_name for name, source in config.sources.items()}
    filter_values: dict[str, set[str]] = {f: set() for f in FILTERS}
    for payload in payloads.values():
        for f in FILTERS:
            if f in payload["columns"]:
                i = payload["columns"].index(f)
                filter_values[f].update(str(row[i]) for row in payload["data"] if row[i] is not None)

    run_id = run["run_id"] if run else "-"
    base = join_uri(config.root, REPORT_FOLDER)
    lineage = _exists(config, join_uri(base, LINEAGE_PAGE))
    frame_tables = {name: frame.tables for name, frame in FRAMES.items()}
    common = {
        "dashboards": DASHBOARDS, "as_of": as_of_text, "run_id": run_id, "run_status": run["status"] if run else "-",
        "built_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "lineage": lineage,
    }
    env = _environment()
    plotly_src, report_js = _write_plotly(config, base), _report_script()
    for dashboard in DASHBOARDS:
        used = sorted({c.frame for c in dashboard.charts})
        page = {
            "frames": {name: payloads[name] for name in used},
            "charts": [
                {"key": c.key, "frame": c.frame, "kind": c.kind, "x": c.x, "series": c.series, "size": c.size,
                 "columns": list(c.columns), "top": c.top, "ascending": c.ascending,
                 "measures": [asdict(m) for m in c.measures]}
                for c in dashboard.charts
            ],
            "filters": {f: sorted(filter_values[f]) for f in FILTERS},
            "labels": {"hospital": hospitals},
            "headers": HEADERS,
            "formats": {c: column_format(c) for chart in dashboard.charts for c in chart.columns},
        }
        sources = {
            c.key: _source_line(c, frame_tables, versions, run_id, as_of_text, payloads[c.frame]["columns"])
            for c in dashboard.charts
        }
        html = env.get_template("dashboard.html.j2").render(
            title=dashboard.title, here=dashboard.key, dashboard=dashboard, sources=sources,
            page_json=Markup(script_json(page)),
            plotly_src=plotly_src, report_js=Markup(report_js), **common,
        )
        _write(config, join_uri(base, f"{dashboard.key}.html"), html)
    index = env.get_template("index.html.j2").render(
        title="carelake dashboards", here="index", root=config.root, stages=(run or {}).get("stages", []),
        versions=versions, **common,
    )
    index_uri = join_uri(base, "index.html")
    _write(config, index_uri, index)
    log.info("report: %d pages in %.1fs (%.1fs reading tables)", len(DASHBOARDS) + 1, time.monotonic() - started, read_s)
    return index_uri if is_remote(index_uri) else to_local_path(index_uri)
