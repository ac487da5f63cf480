"""The names the aggregates' column lineage is declared in, beside the code of each aggregate.

Every curated aggregate module has a ``SOURCES`` (kpi: one per table) next to its ``COLUMNS``:
output column -> the input columns whose values it is computed from, as (``<zone>/<table>``,
column). carelake.lineage sends them with the aggregates stage (its localCheckpoint cuts the
query plans OpenLineage's Spark listener reads, so the listener cannot say it). The rules:

- a value computed from input values (a sum, mean, ratio, flag, the value itself) lists them;
- a count of rows (encounters, cases, providers) and the ``as_of`` literal list none: no input
  column's value flows into them;
- join keys, filters, group-by and sort columns that only chose which rows count are not listed
  (OpenLineage calls them INDIRECT; the listener records them, "where did this number come
  from" does not follow them).

tests/test_lineage_graph.py checks every declared column is a column of its table, and
tests/test_lineage_run.py that every declared input column exists in the input written by a run.
"""

from __future__ import annotations

ColumnSources = dict[str, tuple[tuple[str, str], ...]]

ENCOUNTERS = "curated/fact_encounter"
PROCEDURES = "curated/fact_procedure"
CLAIMS = "curated/fact_claim"
REFERRALS = "curated/fact_referral"
PROVIDERS = "curated/dim_provider"
PATIENTS = "curated/dim_patient"
PERSONS = "curated/patient_enterprise_tokens"
CRM = "processed/crm_activity"
# Aggregates read by later aggregates of the same stage.
PATIENT_SUMMARY = "curated/patient_summary"
PROVIDER_FEATURES = "curated/provider_features"
PROVIDER_OUTCOMES = "curated/provider_outcomes"
NETWORK_ADEQUACY = "curated/network_adequacy"
KPI_PATIENT = "curated/kpi_patient"
KPI_FINANCE = "curated/kpi_finance"
# The landed reference file of residents per area (``curated.area_population``, under landing):
# not a table; carelake.lineage names it by the landing folder that holds it.
AREA_POPULATION = "landing:area_population"


def union(*parts: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The input columns of several parts, each once, in first-seen order."""
    return tuple(dict.fromkeys(column for part in parts for column in part))
