"""The one table I/O API of carelake, with two engines behind it.

``open_tables(spark, config)`` returns a :class:`DeltaTables`: ``jvm`` (delta-spark) when the
Delta session extension is on the JVM classpath and configured, else ``rs`` (Spark computes,
delta-rs keeps the log). Tables written by either engine are standard Delta tables.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from carelake.config import Config
from carelake.delta.errors import EngineUnavailableError
from carelake.delta.spec import MergeSpec, Rows

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
log = logging.getLogger(__name__)
WRITE_MODES = ("append", "overwrite")

# Commit-info keys every engine writes itself; anything else in a history entry is the
# custom metadata a writer attached (run id, batch id, ...).
STANDARD_COMMIT_KEYS = frozenset(
    {
        "version", "timestamp", "operation", "operationParameters", "operationMetrics",
        "engineInfo", "clientVersion", "readVersion", "isolationLevel", "isBlindAppend",
        "userId", "userName", "userMetadata", "job", "notebook", "clusterId", "txnId",
        "inCommitTimestamp",
    }
)


@dataclass
class CommitResult:
    """What one commit did: the table version it made and its file and row counts."""

    version: int
    operation: str
    files_added: int
    files_removed: int
    rows_inserted: int | None = None
    rows_updated: int | None = None
    rows_deleted: int | None = None


class DeltaTables(ABC):
    """Read, write, merge and maintain Delta tables addressed by URI."""

    engine: str

    def __init__(self, spark: SparkSession, config: Config) -> None:
        self.spark = spark
        self.config = config

    @abstractmethod
    def exists(self, uri: str) -> bool:
        """True when a Delta table exists at ``uri``."""

    @abstractmethod
    def read(self, uri: str, version: int | None = None, timestamp: str | None = None) -> DataFrame:
        """The table as a DataFrame: latest, at ``version``, or as of ``timestamp`` (ISO text:
        the last version committed at or before it); TableNotFoundError when absent."""

    @abstractmethod
    def write(
        self,
        df: DataFrame,
        uri: str,
        mode: str = "append",
        partition_by: list[str] | None = None,
        replace_where: dict[str, list] | None = None,
        schema_mode: str | None = None,
        commit_metadata: dict[str, str] | None = None,
    ) -> CommitResult:
        """Append or overwrite ``df`` into ``uri`` (created when absent) in one commit.

        ``replace_where`` ({column: [values]}, mode overwrite) replaces only those partition
        values; every row written must fall in them. ``schema_mode="merge"`` adds new columns.
        """

    @abstractmethod
    def merge(
        self,
        source: DataFrame,
        uri: str,
        spec: MergeSpec,
        partition_by: list[str] | None = None,
        commit_metadata: dict[str, str] | None = None,
    ) -> CommitResult:
        """Merge ``source`` into ``uri`` as ``spec`` says (see :class:`MergeSpec`), in one commit;
        creates the table from ``source`` when absent. The source must hold each key once."""

    @abstractmethod
    def delete(self, uri: str, rows: Rows) -> CommitResult:
        """Delete the rows ``rows`` selects, in one commit."""

    @abstractmethod
    def history(self, uri: str, limit: int | None = None) -> list[dict]:
        """Commits newest first: version, timestamp, operation, operationParameters and
        ``metadata`` (the custom commit metadata as a dict)."""

    @abstractmethod
    def version(self, uri: str) -> int:
        """The latest version of the table."""

    @abstractmethod
    def files(self, uri: str, version: int | None = None) -> list[dict]:
        """Live data files: path, size, partition_values, num_records."""

    @abstractmethod
    def optimize(self, uri: str, zorder_by: list[str] | None = None, where: Rows | None = None) -> dict:
        """Compact small files (z-ordered by ``zorder_by`` when given), only in the partitions
        ``where`` names (over partition columns) when given; returns metrics."""

    @abstractmethod
    def vacuum(self, uri: str, retention_hours: int) -> list[str]:
        """Delete unreferenced files older than ``retention_hours``; returns them."""

    @abstractmethod
    def restore(self, uri: str, version: int) -> CommitResult:
        """Make ``version``'s contents the latest version."""

    @abstractmethod
    def set_properties(self, uri: str, properties: dict[str, str]) -> CommitResult:
        """Set table properties, e.g. ``{"delta.isolationLevel": "Serializable"}``."""


def check_merge_args(source: DataFrame, uri: str, spec: MergeSpec) -> None:
    """Fail fast when the merge keys are not columns of the source."""
    missing = [k for k in spec.keys if k not in source.columns]
    if missing:
        raise ValueError(f"merge into {uri}: keys {list(spec.keys)} must be columns of the source; missing {missing} (source columns {source.columns})")


def check_write_args(uri: str, mode: str, replace_where: dict[str, list] | None, schema_mode: str | None) -> None:
    """Fail fast on a write mode, replace_where or schema_mode the API does not support."""
    if mode not in WRITE_MODES:
        raise ValueError(f"write to {uri}: mode must be one of {', '.join(WRITE_MODES)}, found {mode!r}")
    if replace_where is not None and mode != "overwrite":
        raise ValueError(f"write to {uri}: replace_where needs mode='overwrite', found mode={mode!r}")
    if replace_where is not None and (not replace_where or not all(replace_where.values())):
        raise ValueError(f"write to {uri}: replace_where needs at least one value per column, found {replace_where!r}")
    if schema_mode not in (None, "merge"):
        raise ValueError(f"write to {uri}: schema_mode must be None or 'merge', found {schema_mode!r}")


def history_entry(raw: dict[str, Any]) -> dict[str, Any]:
    """A commit-info dict with ``metadata``: custom keys plus userMetadata when it is JSON."""
    metadata = {k: v for k, v in raw.items() if k not in STANDARD_COMMIT_KEYS}
    user = raw.get("userMetadata")
    if isinstance(user, str) and user:
        try:
            parsed = json.loads(user)
        except json.JSONDecodeError:
            parsed = {"userMetadata": user}
        if isinstance(parsed, dict):
            metadata.update(parsed)
    return {**raw, "metadata": metadata}


def jvm_delta_available(spark: SparkSession) -> tuple[bool, str]:
    """Whether the Delta extension is usable in ``spark``, and why not when it is not."""
    jvm = getattr(spark, "_jvm", None)
    if jvm is None:
        return False, "the session has no JVM gateway (Spark Connect)"
    try:
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        jvm.java.lang.Class.forName(DELTA_EXTENSION, False, loader)
    except Exception:
        return False, f"class {DELTA_EXTENSION} is not on the JVM classpath (Delta jars absent)"
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    if DELTA_EXTENSION not in extensions:
        return False, f"spark.sql.extensions does not include {DELTA_EXTENSION} (found {extensions!r})"
    return True, ""


def choose_engine(spark: SparkSession, configured: str) -> str:
    """The engine to use: ``configured`` unless ``auto``; ``jvm`` when unavailable is an error."""
    if configured == "rs":
        return "rs"
    available, reason = jvm_delta_available(spark)
    if configured == "jvm" and not available:
        raise EngineUnavailableError(
            f"config key 'delta.engine' is 'jvm' but {reason}; start Spark with the Delta jars "
            "(`make setup` fetches them into .jvm/jars; elsewhere --packages io.delta:delta-spark_2.13:4.4.0 "
            "and the Delta session extension) "
            "or set delta.engine to 'rs' or 'auto'"
        )
    if not available:
        log.warning("delta.engine auto: using the rs engine because %s (`make setup` fetches the Delta jars)", reason)
    return "jvm" if available else "rs"


def open_tables(spark: SparkSession, config: Config) -> DeltaTables:
    """The table API for ``spark`` with the engine ``config.delta_engine`` resolves to."""
    engine = choose_engine(spark, config.delta_engine)
    # Imported here: the engine modules import this one.
    if engine == "jvm":
        from carelake.delta.jvm import JvmTables

        return JvmTables(spark, config)
    from carelake.delta.rs import RsTables

    return RsTables(spark, config)
