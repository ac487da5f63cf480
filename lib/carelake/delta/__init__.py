"""Delta table I/O: one API (``open_tables``), two engines (delta-spark ``jvm``, delta-rs ``rs``)."""

from carelake.delta.api import CommitResult, DeltaTables, open_tables
from carelake.delta.errors import (
    DeltaConflictError,
    DeltaLayerError,
    EngineUnavailableError,
    SchemaMismatchError,
    TableNotFoundError,
)
from carelake.delta.spec import MergeSpec, Rows
from carelake.delta.storage import storage_options

__all__ = [
    "CommitResult",
    "DeltaConflictError",
    "DeltaLayerError",
    "DeltaTables",
    "EngineUnavailableError",
    "MergeSpec",
    "Rows",
    "SchemaMismatchError",
    "TableNotFoundError",
    "open_tables",
    "storage_options",
]
