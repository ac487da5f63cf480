"""The provider API: FastAPI over the in-memory snapshot of the curated tables.

Every route is under ``/v1``; ``/openapi.json`` describes them. Every answer names the Delta
versions of the tables it was built from and their ``as_of`` (``meta``) and carries an ``ETag``
made of those versions, the role and the request, so a client's ``If-None-Match`` gets ``304``
until a served table commits. Errors: 401 without a known ``X-API-Key``, 403 for what the key's
role may not see, 404 for an unknown NPI or area, 422 naming a bad parameter (docs/api.md).
"""

# No `from __future__ import annotations`: FastAPI resolves the routes' local Annotated aliases at run time.
import enum
import hashlib
import json
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

import pyarrow as pa
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field

from carelake.curated.routing import route_referral
from carelake.serve.api.keys import ApiKeys
from carelake.serve.api.queries import (
    PROVIDER_MEASURES,
    filter_providers,
    json_value,
    months_between,
    sort_by_measure,
    where_equal,
)
from carelake.serve.api.snapshot import (
    DEMAND,
    FEATURES,
    PROCEDURES,
    ROUTING,
    SCORES,
    SERVED_TABLES,
    RoleView,
    Snapshot,
)

API_VERSION = "v1"
KEY_HEADER = "X-API-Key"
MAX_LIMIT = 500
NPI_PATTERN = r"^[0-9]{10}$"
ZIP3_PATTERN = r"^[0-9]{3}$"
MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
PROCEDURE_PATTERN = r"^[0-9A-Z]{5}$"  # CPT (5 digits, or 4 and a letter) and HCPCS level II (a letter and 4 digits)
KPI_KEYS = {"executive": ("service_month",), "patient": ("service_month",), "provider": ("npi", "service_month"),
            "hospital": ("hospital", "department", "service_month"),
            "finance": ("service_month", "hospital", "department", "payer")}

access_log = logging.getLogger("carelake.api.access")

Measure = enum.Enum("Measure", {m: m for m in PROVIDER_MEASURES}, type=str)


class Meta(BaseModel):
    """Where an answer comes from."""

    api_version: str
    role: str = Field(description="role database of the API key")
    as_of: str | None = Field(description="date the curated aggregates are computed for (ISO 8601)")
    tables: dict[str, int] = Field(description="Delta version of each table the answer was built from")


class Page(BaseModel):
    total: int
    limit: int
    offset: int
    next_offset: int | None


class Error(BaseModel):
    detail: str


class Provider(BaseModel):
    npi: str
    features: dict[str, Any] = Field(description="the provider_features row")
    procedures: list[dict[str, Any]] = Field(description="provider_procedure_stats rows, by procedure code")
    scores: list[dict[str, Any]] = Field(description="latest provider_scores row per model: model_name, model_version, score, as_of, scored_at")


class ProviderAnswer(BaseModel):
    data: Provider
    meta: Meta


class RowsAnswer(BaseModel):
    data: list[dict[str, Any]]
    page: Page
    meta: Meta


class Routing(BaseModel):
    zip3: str
    specialty: str
    procedure: str | None = Field(description="procedure code the providers were ranked for, if asked")
    network: str | None = Field(description="network the providers were kept to, if asked")
    as_of: str | None = Field(description="date referral_routing is computed for (ISO 8601)")
    providers: list[dict[str, Any]] = Field(
        description="eligible providers, best first: referral_routing rows (rank, npi, measures, headroom, distance_km, "
        "reason), with procedure_volume and procedure_score when a procedure was asked")
    reason: str | None = Field(description="why no provider is listed; null otherwise")


class RoutingAnswer(BaseModel):
    data: Routing
    meta: Meta


class VersionsAnswer(BaseModel):
    data: dict[str, Any]
    meta: Meta


class Health(BaseModel):
    status: str
    tables: int


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "no API key, or an unknown one"},
    403: {"model": Error, "description": "the key's role may not see this resource"},
    503: {"model": Error, "description": "the table behind this resource is not built yet"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Error, "description": "no such provider / area"}}


class ApiJSON(JSONResponse):
    """JSON with dates as ISO text and non-finite floats as null (strict JSON, no NaN)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(json_value(content), allow_nan=False, separators=(",", ":")).encode()


class AccessLog:
    """ASGI middleware logging one line per request: method, route template, status, time, role.
    Route templates and no parameter values, so no identifier is ever logged."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            state = scope.get("state") or {}
            access_log.info(
                "%s %s %d %.1fms role=%s", scope["method"], getattr(scope.get("route"), "path", "-"), status,
                (time.perf_counter() - started) * 1000, state.get("role", "-"),
            )


def create_app(current: Callable[[], Snapshot], keys: ApiKeys) -> FastAPI:
    """The API over the snapshots ``current()`` returns (one call per request), with ``keys``."""
    app = FastAPI(
        title="carelake provider API",
        version=f"{API_VERSION}.0",
        description="Provider features, procedure statistics, model scores, routing, network demand and KPIs "
        "from the curated Delta tables. Authenticate with the X-API-Key header (docs/api.md).",
        default_response_class=ApiJSON,
    )
    key_header = APIKeyHeader(name=KEY_HEADER, auto_error=False, description="an API key (docs/api.md)")

    async def role(request: Request, key: Annotated[str | None, Security(key_header)]) -> str:
        found = keys.role_of(key)
        if found is None:
            reason = f"missing {KEY_HEADER} header" if not key else "unknown API key"
            raise HTTPException(401, reason, headers={"WWW-Authenticate": "ApiKey"})
        request.state.role = found
        return found

    async def view(role_name: Annotated[str, Depends(role)]) -> tuple[Snapshot, RoleView]:
        # The one place a request picks its snapshot: a reload during the request changes nothing.
        snap = current()
        found = snap.views.get(role_name)
        if found is None:
            raise HTTPException(403, f"role {role_name} is not one of access.roles")
        return snap, found

    Current = Annotated[tuple[Snapshot, RoleView], Depends(view)]

    app.add_middleware(AccessLog)

    def table(snap: Snapshot, view_: RoleView, name: str) -> pa.Table:
        if name not in snap.tables:
            raise HTTPException(503, f"table curated.{name} is not built yet: run make run")
        if name not in view_.tables:
            raise HTTPException(403, f"role {view_.role} may not read curated.{name}")
        return view_.tables[name]

    def answer(request: Request, snap: Snapshot, view_: RoleView, names: tuple[str, ...], build: Callable[[], dict[str, Any]]) -> Response:
        versions = snap.versions(names)
        query = sorted(request.query_params.multi_items())
        tag = hashlib.sha256(
            json.dumps([API_VERSION, view_.role, request.url.path, query, versions]).encode()
        ).hexdigest()[:32]
        etag = f'"{tag}"'
        headers = {"ETag": etag, "Cache-Control": "private, no-cache", "Vary": KEY_HEADER}
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        body = build()
        meta = {"api_version": API_VERSION, "role": view_.role, "as_of": snap.as_of, "tables": versions}
        return ApiJSON({**body, "meta": meta}, headers=headers)

    def rows_page(rows: pa.Table, limit: int, offset: int) -> dict[str, Any]:
        total = rows.num_rows
        next_offset = offset + limit if offset + limit < total else None
        return {
            "data": rows.slice(offset, limit).to_pylist() if offset < total else [],
            "page": {"total": total, "limit": limit, "offset": offset, "next_offset": next_offset},
        }

    Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"page size, 1..{MAX_LIMIT}")]
    Offset = Annotated[int, Query(ge=0, le=10_000_000, description="rows to skip")]
    Month = Query(pattern=MONTH_PATTERN, description="yyyy-MM, inclusive")
    Specialty = Annotated[str | None, Query(min_length=1, max_length=100, description="provider specialty, as in provider_features")]
    Zip3 = Annotated[str | None, Query(pattern=ZIP3_PATTERN, description="service area: first three digits of the ZIP")]

    @app.get("/health", response_model=Health, tags=["meta"])
    async def health() -> dict[str, Any]:
        """Liveness: no key needed; says how many tables are loaded."""
        return {"status": "ok", "tables": len(current().tables)}

    @app.get(f"/{API_VERSION}/versions", response_model=VersionsAnswer, responses=ERRORS, tags=["meta"])
    async def versions(request: Request, cur: Current) -> Response:
        """The tables this role is served, their Delta versions, and when they were loaded."""
        snap, view_ = cur
        names = tuple(n for n in SERVED_TABLES if n in view_.tables)
        return answer(request, snap, view_, names, lambda: {
            "data": {"loaded_at": snap.loaded_at.isoformat(), "not_built": list(snap.missing)}
        })

    @app.get(f"/{API_VERSION}/providers/{{npi}}", response_model=ProviderAnswer, responses={**ERRORS, **NOT_FOUND}, tags=["providers"])
    async def provider(request: Request, cur: Current, npi: Annotated[str, Path(pattern=NPI_PATTERN, description="10-digit NPI")]) -> Response:
        """One provider: its features, procedure statistics, and latest score per model."""
        snap, view_ = cur
        table(snap, view_, FEATURES)
        row = view_.features_by_npi.get(npi)
        if row is None:
            raise HTTPException(404, f"no provider with NPI {npi} in curated.{FEATURES}")
        return answer(request, snap, view_, (FEATURES, PROCEDURES, SCORES), lambda: {"data": {
            "npi": npi, "features": row,
            "procedures": view_.procedures_by_npi.get(npi, []),
            "scores": view_.scores_by_npi.get(npi, []),
        }})

    @app.get(f"/{API_VERSION}/providers", response_model=RowsAnswer, responses=ERRORS, tags=["providers"])
    async def providers(
        request: Request, cur: Current, specialty: Specialty = None, zip3: Zip3 = None,
        min_encounters: Annotated[int | None, Query(ge=0, le=10**9, description="at least this many encounters in 365 days")] = None,
        sort: Annotated[Measure, Query(description="measure to sort by")] = Measure.composite_score,
        order: Literal["asc", "desc"] = "desc", limit: Limit = 50, offset: Offset = 0,
    ) -> Response:
        """Providers filtered by specialty, area and volume, sorted by a measure (nulls last), one page."""
        snap, view_ = cur
        features = table(snap, view_, FEATURES)

        def build() -> dict[str, Any]:
            rows = filter_providers(features, specialty, zip3, min_encounters)
            return rows_page(sort_by_measure(rows, sort.value, order == "desc"), limit, offset)

        return answer(request, snap, view_, (FEATURES,), build)

    @app.get(f"/{API_VERSION}/routing", response_model=RoutingAnswer, responses={**ERRORS, **NOT_FOUND}, tags=["routing"])
    async def routing(
        request: Request, cur: Current,
        zip3: Annotated[str, Query(pattern=ZIP3_PATTERN, description="patient's area (zip3)")],
        specialty: Annotated[str, Query(min_length=1, max_length=100, description="specialty needed")],
        procedure: Annotated[str | None, Query(pattern=PROCEDURE_PATTERN, description="CPT / HCPCS code: providers "
                                               "with enough volume of it first, on its measures")] = None,
        network: Annotated[str | None, Query(min_length=1, max_length=100, description="keep the referral in this "
                                             "network (the referring provider's)")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"providers listed, 1..{MAX_LIMIT}")] = 10,
    ) -> Response:
        """Where to route a referral of an area's patient needing a specialty: the eligible providers
        of curated.referral_routing, best first, each with the reason for its rank (docs/routing.md)."""
        snap, view_ = cur
        table(snap, view_, ROUTING)
        names: tuple[str, ...] = (ROUTING,)
        if procedure is not None:
            table(snap, view_, PROCEDURES)
            names += (PROCEDURES,)
        routed = route_referral(view_.routing.get((zip3, specialty), []), zip3, specialty, procedure,
                                view_.procedures_by_npi, network)
        if routed is None:
            raise HTTPException(404, f"no routing for specialty {specialty!r} in area {zip3} in curated.{ROUTING}")
        return answer(request, snap, view_, names, lambda: {"data": {**routed, "providers": routed["providers"][:limit]}})

    @app.get(f"/{API_VERSION}/demand", response_model=RowsAnswer, responses=ERRORS, tags=["routing"])
    async def demand(
        request: Request, cur: Current, zip3: Zip3 = None, specialty: Specialty = None,
        from_month: Annotated[str | None, Month] = None, to_month: Annotated[str | None, Month] = None,
        expand_only: Annotated[bool, Query(description="only cells flagged expand_network")] = False,
        limit: Limit = 50, offset: Offset = 0,
    ) -> Response:
        """Network demand against capacity per area, specialty and month."""
        snap, view_ = cur
        rows_all = table(snap, view_, DEMAND)

        def build() -> dict[str, Any]:
            rows = months_between(where_equal(rows_all, {"zip3": zip3, "specialty": specialty}), from_month, to_month)
            if expand_only:
                rows = where_equal(rows, {"expand_network": True})
            rows = rows.sort_by([("zip3", "ascending"), ("specialty", "ascending"), ("service_month", "ascending")])
            return rows_page(rows, limit, offset)

        return answer(request, snap, view_, (DEMAND,), build)

    def kpi(request: Request, cur: tuple[Snapshot, RoleView], series: str, filters: dict[str, str | None],
            from_month: str | None, to_month: str | None, limit: int, offset: int) -> Response:
        snap, view_ = cur
        hospital = filters.get("hospital")
        if hospital is not None and view_.hospital is not None and hospital != view_.hospital:
            raise HTTPException(403, f"role {view_.role} sees {view_.hospital} rows only, not {hospital}")
        name = f"kpi_{series}"
        rows_all = table(snap, view_, name)
        keys_ = KPI_KEYS[series]

        def build() -> dict[str, Any]:
            rows = months_between(where_equal(rows_all, filters), from_month, to_month)
            order = [("service_month", "ascending")] + [(k, "ascending") for k in keys_ if k != "service_month"]
            return rows_page(rows.sort_by(order), limit, offset)

        return answer(request, snap, view_, (name,), build)

    FromMonth = Annotated[str | None, Month]
    Npi = Annotated[str | None, Query(pattern=NPI_PATTERN, description="one provider")]
    Hospital = Annotated[str | None, Query(min_length=1, max_length=100, description="a hospital (source system)")]

    def add_month_series(series: str) -> None:
        @app.get(f"/{API_VERSION}/kpi/{series}", response_model=RowsAnswer, responses=ERRORS, tags=["kpi"],
                 name=f"kpi_{series}", description=f"KPI series kpi_{series}, by month.")
        async def month_series(request: Request, cur: Current, from_month: FromMonth = None, to_month: FromMonth = None,
                         limit: Limit = 50, offset: Offset = 0) -> Response:
            return kpi(request, cur, series, {}, from_month, to_month, limit, offset)

    def add_hospital_series(series: str) -> None:
        @app.get(f"/{API_VERSION}/kpi/{series}", response_model=RowsAnswer, responses=ERRORS, tags=["kpi"],
                 name=f"kpi_{series}",
                 description=f"KPI series kpi_{series}, by month, hospital and department; a clinician sees its own hospital only.")
        async def hospital_series(request: Request, cur: Current, hospital: Hospital = None, from_month: FromMonth = None,
                            to_month: FromMonth = None, limit: Limit = 50, offset: Offset = 0) -> Response:
            return kpi(request, cur, series, {"hospital": hospital}, from_month, to_month, limit, offset)

    @app.get(f"/{API_VERSION}/kpi/provider", response_model=RowsAnswer, responses=ERRORS, tags=["kpi"])
    async def kpi_provider(request: Request, cur: Current, npi: Npi = None, from_month: FromMonth = None,
                     to_month: FromMonth = None, limit: Limit = 50, offset: Offset = 0) -> Response:
        """KPI series kpi_provider, by month and NPI."""
        return kpi(request, cur, "provider", {"npi": npi}, from_month, to_month, limit, offset)

    for series in ("executive", "patient"):
        add_month_series(series)
    for series in ("hospital", "finance"):
        add_hospital_series(series)

    return app
