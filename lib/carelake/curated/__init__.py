"""Curated aggregates: the provider feature store, per-procedure stats, the patient table,
network demand by area and the KPI marts, rebuilt incrementally by the aggregates stage."""
