"""Raw zone ingest: landing files -> ``raw/<entity>`` Delta tables, every column a string."""

from carelake.ingest.sniff import SniffResult, sniff_file
from carelake.ingest.stage import INGEST_LOG_TABLE, run_ingest

__all__ = ["INGEST_LOG_TABLE", "SniffResult", "run_ingest", "sniff_file"]
