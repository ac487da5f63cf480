"""The API's questions as small pure functions over Arrow tables (``pa.Table -> pa.Table``), and
rows as JSON values. No I/O here: :mod:`carelake.serve.api.app` passes in a role's tables."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

# provider_features columns a product may sort and filter providers by (numeric measures).
PROVIDER_MEASURES = (
    "composite_score", "cost_index", "risk_adjusted_cost_per_case", "cost_per_case",
    "readmission_rate_shrunk", "complication_rate_shrunk", "avg_satisfaction",
    "encounters_365d", "patients_365d", "procedures_365d", "referral_leakage_rate", "marketing_roi",
)
# service_month of events without a date; it sorts after every 'yyyy-MM', so it is never "latest".
UNKNOWN_MONTH = "unknown"


def where_equal(table: pa.Table, values: Mapping[str, Any]) -> pa.Table:
    """Rows of ``table`` whose columns equal ``values`` (None values: no condition), in one filter."""
    conditions = [pc.equal(table[c], pa.scalar(v, table.schema.field(c).type)) for c, v in values.items() if v is not None]
    if not conditions:
        return table
    mask = conditions[0]
    for condition in conditions[1:]:
        mask = pc.and_kleene(mask, condition)
    return table.filter(mask)


def months_between(table: pa.Table, from_month: str | None, to_month: str | None) -> pa.Table:
    """Rows whose ``service_month`` ('yyyy-MM') lies in [from_month, to_month]; bounds optional."""
    if from_month is not None:
        table = table.filter(pc.greater_equal(table["service_month"], from_month))
    if to_month is not None:
        table = table.filter(pc.less_equal(table["service_month"], to_month))
    return table


def filter_providers(
    features: pa.Table, specialty: str | None = None, zip3: str | None = None, min_encounters: int | None = None
) -> pa.Table:
    """Providers of ``specialty`` practising in ``zip3`` with at least ``min_encounters``
    encounters in the 365 days to as_of (each condition optional)."""
    table = where_equal(features, {"specialty": specialty, "zip3": zip3})
    if min_encounters is not None:
        table = table.filter(pc.greater_equal(pc.fill_null(table["encounters_365d"], 0), min_encounters))
    return table


def sort_by_measure(table: pa.Table, measure: str, descending: bool) -> pa.Table:
    """``table`` ordered by ``measure`` (nulls last), then by NPI so pages are stable."""
    order = pc.sort_indices(
        table, sort_keys=[(measure, "descending" if descending else "ascending", "at_end"), ("npi", "ascending", "at_end")]
    )
    return table.take(order)


def routing_cells(routing: pa.Table) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """``referral_routing`` rows by (zip3, specialty), each cell's rows by rank: what
    :func:`carelake.curated.routing.route_referral` reads for one referral."""
    cells: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in routing.sort_by([("zip3", "ascending"), ("specialty", "ascending"), ("rank", "ascending")]).to_pylist():
        cells.setdefault((row["zip3"], row["specialty"]), []).append(row)
    return cells


def json_value(value: Any) -> Any:
    """An Arrow / Python value as JSON: dates in ISO 8601, decimals as numbers, NaN and
    infinities as null (JSON has neither), lists and mappings element by element."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return json_value(float(value))
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return value
