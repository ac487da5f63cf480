"""The dashboards in Apache Superset, over the Thrift server: definitions and ``make bi``.

Superset runs in a virtual environment of its own (``.bi/venv``, from
``infra/superset/requirements.lock``: its pins conflict with ours). This module, in the
project's environment, turns the report's catalog (:data:`carelake.dashboards.pages.DASHBOARDS`)
and ``access.roles`` into one JSON definition — datasets as SQL over the served ``curated``
tables, charts, dashboards, clinician roles with row-level security — which
``infra/superset/provision.py`` applies inside Superset on every start. Nothing is clicked
together: the repository is the definition.

:func:`run_bi` starts (or reuses) the Thrift server, prepares Superset's metadata database,
applies the definition and serves Superset on 127.0.0.1 until interrupted.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carelake.config import Config
from carelake.dashboards.build import HEADERS, column_format
from carelake.dashboards.frames import NOT_ROUTED, ROUTED_PROVIDERS
from carelake.dashboards.pages import DASHBOARDS, Chart, Measure
from carelake.serve.access import role_policies

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
BI_VENV = Path(os.environ.get("CARELAKE_BI_VENV", REPO / ".bi" / "venv"))
CONFIG_FILE = REPO / "infra" / "superset" / "superset_config.py"
PROVISION = REPO / "infra" / "superset" / "provision.py"
DEFAULT_PORT = 8088
DATABASE_NAME = "carelake"
START_TIMEOUT_S = 600  # per step (Thrift server, Superset's health): a loaded 2-core machine is slow

# The SQL behind each report frame, over the tables the Thrift server serves. Same grain or
# finer than the report's frame: the measures (sum, weighted mean, ratio) give the same numbers.
DATASETS: dict[str, str] = {
    "kpi_patient": "SELECT * FROM curated.kpi_patient WHERE service_month <> 'unknown'",
    "kpi_finance": "SELECT * FROM curated.kpi_finance WHERE service_month <> 'unknown'",
    "kpi_hospital": "SELECT * FROM curated.kpi_hospital WHERE service_month <> 'unknown'",
    "kpi_executive": "SELECT * FROM curated.kpi_executive WHERE service_month <> 'unknown'",
    "specialty_months": (
        "SELECT k.*, coalesce(f.specialty, 'unknown') AS specialty, CASE WHEN k.encounters > 0 THEN 1 ELSE 0 END AS providers "
        "FROM curated.kpi_provider k LEFT JOIN curated.provider_features f ON k.npi = f.npi WHERE k.service_month <> 'unknown'"
    ),
    "ranked_providers": "SELECT * FROM curated.provider_features WHERE encounters_365d >= 10",
    "procedure_volume": "SELECT npi, coalesce(specialty, 'unknown') AS specialty, procedure_code, volume FROM curated.provider_procedure_stats",
    "demand_months": (
        "SELECT *, CASE WHEN expand_network THEN 1 ELSE 0 END AS cells_to_expand FROM curated.network_demand_by_zip "
        "WHERE service_month <> 'unknown'"
    ),
    # The leaked cells of the latest month with leaks, with referral_routing's first ROUTED_PROVIDERS NPIs
    # by rank (concat_ws skips a missing rank) and rank 1's reason, or rank 0's (none eligible).
    "routing_latest": (
        "SELECT d.service_month, d.zip3, coalesce(d.specialty, 'unknown') AS specialty, d.referrals_requested, d.referrals_leaked, "
        "d.leakage_rate, d.demand_capacity_ratio, d.expand_network, coalesce(r.eligible_providers, 0) AS eligible_providers, "
        "nullif(r.route_to, '') AS route_to, coalesce(r.routing_reason, '" + NOT_ROUTED + "') AS routing_reason "
        "FROM curated.network_demand_by_zip d LEFT JOIN (SELECT zip3, specialty, concat_ws(', ', "
        + ", ".join(f"max(CASE WHEN `rank` = {n} THEN npi END)" for n in range(1, ROUTED_PROVIDERS + 1))
        + ") AS route_to, max(eligible_providers) AS eligible_providers, max(CASE WHEN `rank` <= 1 THEN reason END) AS routing_reason "
        "FROM curated.referral_routing GROUP BY zip3, specialty) r ON d.zip3 = r.zip3 AND d.specialty = r.specialty "
        "WHERE d.referrals_leaked > 0 AND d.service_month = "
        "(SELECT max(service_month) FROM curated.network_demand_by_zip WHERE service_month <> 'unknown' AND referrals_leaked > 0)"
    ),
    "patient_mix": (
        "SELECT source_system AS hospital, sex, 1 AS patients, CASE WHEN high_risk THEN 1 ELSE 0 END AS high_risk_patients, "
        "CASE WHEN birth_year IS NULL THEN 'unknown' WHEN year(as_of) - birth_year < 18 THEN '0-17' "
        "WHEN year(as_of) - birth_year < 45 THEN '18-44' WHEN year(as_of) - birth_year < 65 THEN '45-64' ELSE '65+' END AS age_band, "
        "visits_365d, readmissions_365d, total_cost FROM curated.patient_summary"
    ),
}
# Datasets with a hospital column: a clinician sees only their hospital's rows in them.
HOSPITAL_DATASETS = ("kpi_finance", "kpi_hospital", "patient_mix")
# All-hospital patient aggregates with no hospital column: not given to a clinician (as the
# clinician_<hospital> SQL views do not expose patient data without a hospital column).
ALL_HOSPITAL_DATASETS = ("kpi_patient", "kpi_executive")


def metric(measure: Measure) -> dict[str, Any]:
    """A report measure as a Superset ad-hoc SQL metric."""
    if measure.how == "mean":
        sql = f"SUM({measure.column} * {measure.weight}) / NULLIF(SUM(CASE WHEN {measure.column} IS NOT NULL THEN {measure.weight} END), 0)"
    elif measure.how == "ratio":
        sql = f"SUM({measure.column}) / NULLIF(SUM({measure.weight}), 0)"
    else:
        sql = f"SUM({measure.column})"
    return {"expressionType": "SQL", "sqlExpression": sql, "label": measure.label}


def superset_format(d3: str) -> str:
    """Superset's number formats are d3 formats, but it has no ``$`` prefix variant of ``.3s``."""
    return "SMART_NUMBER" if d3.endswith("s") else d3


def axis_format(d3: str) -> str:
    """A chart axis's format: a count's whole-number format would label the fractional ticks of a
    small range (0.2, 0.4, ...) as 0 and 1, so its axis keeps up to two decimals, trimmed."""
    return ",.2~f" if d3 == ",.0f" else superset_format(d3)


def chart_definitions(chart: Chart) -> list[dict[str, Any]]:
    """One report chart as Superset charts (a KPI chart becomes one big number per measure);
    empty for kinds Superset draws differently (the scatter stays in the static report)."""
    base = {"dataset": chart.frame, "description": chart.says}
    first = chart.measures[0]
    if chart.kind == "kpi":
        return [
            {**base, "name": f"{chart.title}: {m.label}", "viz_type": "big_number_total",
             "params": {"metric": metric(m), "y_axis_format": superset_format(m.format), "subheader": ""}}
            for m in chart.measures
        ]
    if chart.kind in ("line", "bar", "hbar"):
        params: dict[str, Any] = {
            "x_axis": chart.x, "metrics": [metric(m) for m in chart.measures], "groupby": [chart.series] if chart.series else [],
            "row_limit": 10000, "y_axis_format": axis_format(first.format), "show_legend": True, "truncate_metric": True,
            "x_axis_sort_asc": True, "rich_tooltip": True,
        }
        if chart.kind != "line":
            params["stack"] = "Stack" if chart.series and first.how == "sum" else None
        if chart.kind == "hbar":
            params |= {"orientation": "horizontal", "x_axis_sort": first.label, "x_axis_sort_asc": chart.ascending}
            if chart.top:
                params["series_limit"] = chart.top
        viz = "echarts_timeseries_line" if chart.kind == "line" else "echarts_timeseries_bar"
        return [{**base, "name": chart.title, "viz_type": viz, "params": params}]
    if chart.kind == "table":
        return [{**base, "name": chart.title, "viz_type": "table", "params": {
            "query_mode": "raw", "all_columns": list(chart.columns), "row_limit": chart.top or 1000,
            "order_by_cols": [json.dumps([first.column, chart.ascending])], "server_pagination": False,
            # The report's number formats (rates as percentages, money in dollars), not raw floats.
            "column_config": {c: {"d3NumberFormat": superset_format(f)} for c in chart.columns if (f := column_format(c))},
        }}]
    return []


def definition(config: Config, thrift_host: str, thrift_port: int) -> dict[str, Any]:
    """Everything Superset is given: the Thrift database, datasets, charts, dashboards, and one
    role per clinician hospital of ``access.roles`` with its row-level security filter."""
    dashboards = []
    for d in DASHBOARDS:
        charts = [c for chart in d.charts if chart.frame in DATASETS for c in chart_definitions(chart)]
        if charts:
            dashboards.append({"slug": f"carelake-{d.key}", "title": d.title, "description": d.answers, "charts": charts})
    clinicians = [
        {"role": p.database, "hospital": p.hospital, "filtered": list(HOSPITAL_DATASETS),
         "visible": [name for name in DATASETS if name not in ALL_HOSPITAL_DATASETS], "clause": f"hospital = '{p.hospital}'"}
        for p in role_policies(config) if p.role == "clinician" and p.hospital
    ]
    return {
        "database": {"name": DATABASE_NAME, "uri": f"hive://carelake@{thrift_host}:{thrift_port}/default"},
        "datasets": DATASETS,
        # The report's column headers, as the datasets' column labels (tables show these, not names).
        "column_labels": HEADERS,
        "dashboards": dashboards,
        "clinicians": clinicians,
    }


def missing_superset_reason(venv: Path = BI_VENV) -> str | None:
    """Why Superset cannot be started here (its environment is not installed), or None."""
    if not (venv / "bin" / "superset").exists():
        return f"Superset is not installed in {venv}: run `make bi-setup` (a separate environment, about 1 GB)"
    return None


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class SupersetServer:
    """A running Superset (and the Thrift server it started, if any)."""

    url: str
    home: Path
    process: subprocess.Popen | None
    thrift: subprocess.Popen | None
    started_s: float
    logs: list[Any]

    def credentials(self) -> dict[str, str]:
        """User name -> password of the provisioned users (admin and one per clinician role)."""
        return json.loads((self.home / "users.json").read_text())

    def stop(self) -> None:
        for proc in (self.process, self.thrift):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGINT if proc is self.thrift else signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for log_file in self.logs:
            log_file.close()


def _users(home: Path, clinicians: list[dict[str, Any]]) -> dict[str, str]:
    """Passwords of the provisioned users, generated once into ``home/users.json`` (0600)."""
    file = home / "users.json"
    users = json.loads(file.read_text()) if file.exists() else {}
    for name in ("admin", *(c["role"] for c in clinicians)):
        users.setdefault(name, os.environ.get("CARELAKE_SUPERSET_ADMIN_PASSWORD") if name == "admin" else None)
        users[name] = users[name] or secrets.token_urlsafe(12)
    file.write_text(json.dumps(users, indent=2))
    file.chmod(0o600)
    return users


def start_superset(
    config: Config, port: int = DEFAULT_PORT, thrift_port: int | None = None, home: Path | None = None,
    host: str = "127.0.0.1",
) -> SupersetServer:
    """Start Superset on ``host:port`` over the Thrift server at ``thrift_port`` (started here,
    on a free port when None, unless one answers there), with the repository's definitions
    applied. Returns once Superset answers its health check."""
    reason = missing_superset_reason()
    if reason:
        raise RuntimeError(reason)
    if _port_open(host, port):
        raise RuntimeError(f"port {port} on {host} is taken: pick another with BI_PORT=<port>")
    started = time.monotonic()
    home = (home or Path(config.root) / "_superset").resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SUPERSET_CONFIG_PATH": str(CONFIG_FILE), "CARELAKE_SUPERSET_HOME": str(home),
           "FLASK_APP": "superset.app:create_app()", "SUPERSET_LOAD_EXAMPLES": "no"}
    thrift = None
    # Kept open while the servers run; closed by SupersetServer.stop().
    thrift_log = (home / "thrift.log").open("ab")  # noqa: SIM115
    log_file = (home / "superset.log").open("ab")  # noqa: SIM115
    thrift_port = thrift_port or _free_port()
    if not _port_open(host, thrift_port):
        cli = [sys.executable, "-m", "carelake.cli", "serve", "--port", str(thrift_port), "--host", host]
        if config.source_file:
            cli += ["--conf", config.source_file]
        thrift = subprocess.Popen(cli, stdout=thrift_log, stderr=thrift_log)
    process = None
    try:
        bin_dir = BI_VENV / "bin"
        spec = definition(config, host, thrift_port)
        (home / "definition.json").write_text(json.dumps(spec, indent=2))
        _users(home, spec["clinicians"])
        subprocess.run([str(bin_dir / "superset"), "db", "upgrade"], env=env, check=True, stdout=log_file, stderr=log_file)
        subprocess.run([str(bin_dir / "superset"), "init"], env=env, check=True, stdout=log_file, stderr=log_file)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _port_open(host, thrift_port):
            if thrift is not None and thrift.poll() is not None:
                raise RuntimeError(f"the Thrift server exited ({thrift.returncode}): see {home / 'thrift.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no Thrift server on {host}:{thrift_port} after {START_TIMEOUT_S}s")
            time.sleep(1)
        subprocess.run([str(bin_dir / "python"), str(PROVISION), str(home / "definition.json"), str(home / "users.json")],
                       env=env, check=True, stdout=log_file, stderr=log_file)
        process = subprocess.Popen(
            [str(bin_dir / "superset"), "run", "-h", host, "-p", str(port), "--with-threads"], env=env, stdout=log_file, stderr=log_file
        )
        url = f"http://{host}:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None:
                raise RuntimeError(f"Superset exited ({process.returncode}): see {home / 'superset.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Superset did not answer on {url} after {START_TIMEOUT_S}s")
            time.sleep(1)
    except BaseException:
        SupersetServer("", home, process, thrift, 0.0, [thrift_log, log_file]).stop()
        raise
    return SupersetServer(url, home, process, thrift, round(time.monotonic() - started, 1), [thrift_log, log_file])


def run_bi(config: Config, port: int = DEFAULT_PORT, thrift_port: int = 10000) -> int:
    """``make bi``: Superset on 127.0.0.1:``port`` until Ctrl-C; prints where and how to log in."""
    try:
        server = start_superset(config, port=port, thrift_port=thrift_port)
    except RuntimeError as exc:
        print(f"carelake bi: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"Superset on {server.url} (started in {server.started_s}s) over the Thrift server on 127.0.0.1:{thrift_port}")
        print(f"users and passwords: {server.home / 'users.json'}; dashboards: {server.url}/dashboard/list/")
        print("Ctrl-C stops it")
        while server.process.poll() is None:
            time.sleep(1)
        return server.process.returncode or 0
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
