"""The top-provider report ``carelake top`` prints: providers ranked within their specialty on
risk-adjusted outcomes, from ``curated.provider_outcomes``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from carelake.config import Config
from carelake.storage import table_uri

if TYPE_CHECKING:
    from carelake.delta import DeltaTables

TOP_MIN_CASES = 5  # fewer cases of the ranked measure: too few to call a provider top
# (title, measure ranked, measure shown beside it)
TOP_RANKINGS = (
    ("most cost-effective: allowed amount per case against the case mix", "cost_per_case", "length_of_stay"),
    ("best outcomes: 30-day unplanned readmissions against the case mix", "readmission_30d", "complication"),
)


def top_providers_report(spark: SparkSession, config: Config, tables: DeltaTables, n: int = 5) -> str:
    """A short text of the top ``n`` providers by cost-effectiveness and by outcome, from
    ``curated.provider_outcomes``: per ranking, the providers ranked best *within their
    specialty* on the risk-adjusted, shrunk observed/expected ratio (lower is better;
    docs/measures.md), specialty leaders first, then by the ratio itself, among providers with
    at least :data:`TOP_MIN_CASES` cases of that measure whose shrunk ratio is below 1. Provider-level only: no patient data."""
    uri = table_uri(config, "curated", "provider_outcomes")
    if not tables.exists(uri):
        return "table curated.provider_outcomes not built yet — run make run"
    outcomes = tables.read(uri).localCheckpoint(eager=True)
    as_of = outcomes.agg(F.max("as_of")).collect()[0][0]
    lines = [f"Top {n} providers as of {as_of}, ranked within specialty on risk-adjusted "
             f"observed/expected (shrunk; 1.00 = as the case mix predicts, lower is better)"]
    for title, ranked, beside in TOP_RANKINGS:
        eligible = outcomes.where(F.col("as_of") == F.lit(as_of)).where(
            (F.col(f"{ranked}_cases") >= TOP_MIN_CASES) & F.col(f"{ranked}_rank_in_specialty").isNotNull()
            # Better than the case mix predicts: the only provider of a specialty is its rank 1
            # whatever its ratio, and a ratio above 1 is no "top".
            & (F.col(f"{ranked}_oe_ratio_shrunk") < 1))
        lines.append(f"  {title}")
        top = eligible.orderBy(F.col(f"{ranked}_rank_in_specialty"), F.col(f"{ranked}_oe_ratio_shrunk"), "npi").limit(n).collect()
        if not top:
            lines.append(f"    no provider with {TOP_MIN_CASES} cases of {ranked} does better than its case mix yet")
            continue
        lines.append(f"    {'npi':<12}{'specialty':<26}{'rank':>8}{'cases':>7}{'O/E':>7}{'shrunk':>8}{beside + ' shrunk':>22}")
        for r in top:
            rank = f"{r[f'{ranked}_rank_in_specialty']}/{r[f'{ranked}_providers_in_specialty']}"
            other = r[f"{beside}_oe_ratio_shrunk"]
            lines.append(
                f"    {r['npi']:<12}{(r['specialty'] or '?')[:25]:<26}{rank:>8}{r[f'{ranked}_cases']:>7}"
                f"{r[f'{ranked}_oe_ratio']:>7.2f}{r[f'{ranked}_oe_ratio_shrunk']:>8.2f}{'-' if other is None else f'{other:.2f}':>22}"
            )
    return "\n".join(lines)
