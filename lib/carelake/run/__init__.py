"""Run bookkeeping: run ids, per-stage summaries and the run summary file."""

from carelake.run.report import format_summary
from carelake.run.summary import EntityCounts, RunSummary, StageSummary, new_run_id

__all__ = ["EntityCounts", "RunSummary", "StageSummary", "format_summary", "new_run_id"]
