"""Errors raised by the Delta layer; each names the table URI it is about."""

from __future__ import annotations


class DeltaLayerError(RuntimeError):
    """Base class for errors of ``carelake.delta``."""


class TableNotFoundError(DeltaLayerError):
    """No Delta table at ``uri`` (no ``_delta_log`` there)."""

    def __init__(self, uri: str, detail: str = "") -> None:
        self.uri = uri
        super().__init__(f"no Delta table at {uri}" + (f": {detail}" if detail else ""))


class DeltaConflictError(DeltaLayerError):
    """A concurrent commit to ``uri`` conflicts with this one; the operation must be rerun."""

    def __init__(self, uri: str, detail: str = "") -> None:
        self.uri = uri
        super().__init__(
            f"DeltaConflictError: a concurrent commit to {uri} conflicts with this write"
            + (f": {detail}" if detail else "")
        )


class EngineUnavailableError(DeltaLayerError):
    """The configured Delta engine cannot run in this Spark session."""


class SchemaMismatchError(DeltaLayerError):
    """Incoming columns do not fit the table's schema."""
