"""The curated tables the API serves, held in memory as Arrow tables, one consistent set at a time.

A :class:`Snapshot` is immutable: every table at one Delta version, and per role what that role
may see. :class:`SnapshotStore` loads one, and :meth:`SnapshotStore.refresh` builds the next when a
served table commits a new version, then swaps it in with one assignment. A request takes the
current snapshot once and answers from it, so a reload during the request never mixes versions.

Data files are read with pyarrow from the file list delta-rs keeps (never through delta-rs'
own ``to_pyarrow_table``, which aborts the process at exit here: see :mod:`carelake.delta.log`).
No Spark session is involved.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from carelake.config import Config
from carelake.delta.arrow import read_arrow
from carelake.delta.errors import TableNotFoundError
from carelake.delta.log import open_table, table_exists
from carelake.delta.storage import rs_uri, storage_options
from carelake.serve.access import RolePolicy, role_policies, view_plan
from carelake.serve.api.queries import routing_cells
from carelake.storage import table_uri

log = logging.getLogger(__name__)

FEATURES = "provider_features"
PROCEDURES = "provider_procedure_stats"
SCORES = "provider_scores"
DEMAND = "network_demand_by_zip"
ROUTING = "referral_routing"
KPI_SERIES = ("executive", "patient", "provider", "hospital", "finance")
SERVED_TABLES = (FEATURES, PROCEDURES, SCORES, DEMAND, ROUTING, *(f"kpi_{s}" for s in KPI_SERIES))


@dataclass(frozen=True)
class ServedTable:
    """One curated table at one Delta version."""

    name: str
    version: int
    data: pa.Table


def read_table(uri: str, options: dict[str, str], version: int | None = None) -> ServedTable:
    """The Delta table at ``uri`` (latest, or ``version``) as one Arrow table
    (:func:`carelake.delta.arrow.read_arrow`)."""
    table = open_table(uri, options, version)
    return ServedTable(uri.rstrip("/").rsplit("/", 1)[-1], table.version(), read_arrow(uri, options, table))


def role_table(plan_policy: RolePolicy, table: pa.Table) -> pa.Table | None:
    """``table`` as ``plan_policy``'s SQL view shows it (:func:`carelake.serve.access.view_plan`),
    or ``None`` when the role may not see it. A column the view would mask is left out: the API
    serves no masked values."""
    plan = view_plan(plan_policy, table.column_names)
    if plan is None:
        return None
    if plan.hospital_column is not None:
        table = table.filter(pc.equal(table[plan.hospital_column], plan.hospital))
    return table.select([c for c in plan.columns if c not in plan.masks])


def latest_rows(table: pa.Table, keys: list[str], order: str = "as_of") -> pa.Table:
    """The rows of ``table`` with the greatest ``order`` per ``keys`` (ties: all of them)."""
    if table.num_rows == 0:
        return table
    latest = table.group_by(keys).aggregate([(order, "max")]).rename_columns([*keys, "_latest"])
    joined = table.join(latest, keys, join_type="inner")
    return joined.filter(pc.equal(joined[order], joined["_latest"])).drop_columns(["_latest"])


def _rows_by_npi(table: pa.Table | None) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    if table is None:
        return grouped
    for row in table.to_pylist():
        grouped.setdefault(row["npi"], []).append(row)
    return grouped


@dataclass(frozen=True)
class RoleView:
    """What one role database sees of a snapshot: its tables, and provider rows by NPI and
    referral_routing rows by (zip3, specialty), so those lookups do not scan."""

    role: str
    hospital: str | None
    tables: Mapping[str, pa.Table]
    features_by_npi: Mapping[str, dict[str, Any]]
    procedures_by_npi: Mapping[str, list[dict[str, Any]]]
    scores_by_npi: Mapping[str, list[dict[str, Any]]]
    routing: Mapping[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)


def build_role_view(policy: RolePolicy, tables: Mapping[str, ServedTable]) -> RoleView:
    """The :class:`RoleView` of ``policy`` over ``tables``."""
    visible = {}
    for name, served in tables.items():
        shown = role_table(policy, served.data)
        if shown is not None:
            visible[name] = shown
    features = visible.get(FEATURES)
    features_by_npi = {r["npi"]: r for r in features.to_pylist()} if features is not None else {}
    procedures = visible.get(PROCEDURES)
    if procedures is not None and "procedure_code" in procedures.column_names:
        procedures = procedures.sort_by([("npi", "ascending"), ("procedure_code", "ascending")])
    scores = visible.get(SCORES)
    if scores is not None and {"npi", "model_name", "as_of"} <= set(scores.column_names):
        scores = latest_rows(scores, ["npi", "model_name"]).sort_by([("npi", "ascending"), ("model_name", "ascending")])
    routing = visible.get(ROUTING)
    routing_by_cell = routing_cells(routing) if routing is not None and "rank" in routing.column_names else {}
    return RoleView(
        policy.database, policy.hospital, visible, features_by_npi, _rows_by_npi(procedures), _rows_by_npi(scores),
        routing_by_cell,
    )


@dataclass(frozen=True)
class Snapshot:
    """Every served table at one version each, and each role's view of them."""

    tables: Mapping[str, ServedTable]
    views: Mapping[str, RoleView]
    loaded_at: dt.datetime
    as_of: dt.date | None = None
    missing: tuple[str, ...] = field(default=())

    def versions(self, names: list[str] | tuple[str, ...]) -> dict[str, int]:
        """``{table: Delta version}`` of those of ``names`` that are served."""
        return {n: self.tables[n].version for n in names if n in self.tables}


def _as_of(tables: Mapping[str, ServedTable]) -> dt.date | None:
    features = tables.get(FEATURES)
    if features is None or "as_of" not in features.data.column_names or features.data.num_rows == 0:
        return None
    return pc.max(features.data["as_of"]).as_py()


def build_snapshot(tables: Mapping[str, ServedTable], policies: list[RolePolicy]) -> Snapshot:
    """A :class:`Snapshot` of ``tables`` with a view per role of ``policies``."""
    views = {p.database: build_role_view(p, tables) for p in policies}
    missing = tuple(n for n in SERVED_TABLES if n not in tables)
    return Snapshot(dict(tables), views, dt.datetime.now(dt.timezone.utc), _as_of(tables), missing)


class SnapshotStore:
    """The current :class:`Snapshot` of the curated zone of ``config``, reloaded on demand
    (:meth:`refresh`) or every ``interval`` seconds by :meth:`start`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.options = storage_options(config)
        self.policies = role_policies(config)
        self.uris = {name: rs_uri(table_uri(config, "curated", name)) for name in SERVED_TABLES}
        self._lock = threading.Lock()  # one reload at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.current = build_snapshot({}, self.policies)
        self.refresh()

    def _latest_version(self, uri: str) -> int | None:
        if not table_exists(uri, self.options):
            return None
        try:
            return open_table(uri, self.options).version()
        except TableNotFoundError:
            return None

    def refresh(self) -> bool:
        """Load every served table that has a new version (or appeared / went away) and swap in
        the new snapshot; True when anything changed. A table that fails to load keeps its
        previous version and the error is logged."""
        with self._lock:
            old = self.current.tables
            tables: dict[str, ServedTable] = {}
            changed = False
            for name, uri in self.uris.items():
                version = self._latest_version(uri)
                if version is None:
                    changed = changed or name in old
                    continue
                if name in old and old[name].version == version:
                    tables[name] = old[name]
                    continue
                try:
                    tables[name] = read_table(uri, self.options, version)
                    changed = True
                except Exception as exc:  # a bad file must not take the API down: keep serving
                    log.error("api: %s version %s not loaded (%s); serving the previous one", name, version, exc)
                    if name in old:
                        tables[name] = old[name]
            if changed:
                self.current = build_snapshot(tables, self.policies)
                log.info("api: serving %s", ", ".join(f"{n}@{t.version}" for n, t in sorted(tables.items())) or "no tables yet")
            return changed

    def start(self, interval: float) -> None:
        """Refresh every ``interval`` seconds in a daemon thread until :meth:`stop`."""
        if interval <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.refresh()
                except Exception:
                    log.exception("api: refresh failed; serving the previous snapshot")

        self._thread = threading.Thread(target=loop, name="carelake-api-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the refresh thread (if started)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
