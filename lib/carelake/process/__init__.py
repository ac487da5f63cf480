"""The process stage: raw zone -> processed zone (conform, validate, quarantine, merge)."""

from carelake.process.stage import BATCHES_TABLE, QUARANTINE_TABLE, run_process

__all__ = ["BATCHES_TABLE", "QUARANTINE_TABLE", "run_process"]
