"""Curated aggregates: the provider feature store, per-procedure stats, the patient table,
network demand by area and the KPI marts, rebuilt incrementally by the aggregates stage."""

from carelake.curated.demand import network_demand_by_zip
from carelake.curated.features import provider_features
from carelake.curated.patients import patient_summary
from carelake.curated.procedures import provider_procedure_stats
from carelake.curated.stage import run_aggregates
from carelake.curated.top_providers import top_providers_report

__all__ = [
    "network_demand_by_zip",
    "patient_summary",
    "provider_features",
    "provider_procedure_stats",
    "run_aggregates",
    "top_providers_report",
]
