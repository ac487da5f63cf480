"""The curated model: SCD2 dimensions, ``dim_date``, partitioned facts, and their upkeep."""

from carelake.model.maintenance import run_maintain
from carelake.model.stage import run_model, upsert_fact

__all__ = ["run_maintain", "run_model", "upsert_fact"]
