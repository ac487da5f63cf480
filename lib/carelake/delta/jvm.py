"""The ``jvm`` engine: delta-spark's ``DeltaTable`` and SQL, for sessions with the Delta jars.

Custom commit metadata travels as JSON in Delta's ``userMetadata`` (set per commit through
``spark.databricks.delta.commitInfo.userMetadata``); :meth:`history` parses it back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyspark.sql import DataFrame

from carelake.delta.api import CommitResult, DeltaTables, check_write_args, history_entry
from carelake.delta.errors import DeltaConflictError, TableNotFoundError
from carelake.delta.log import add_actions, open_table
from carelake.delta.storage import storage_options
from carelake.privacy.audit import audited

USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"


def _sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def replace_where_sql(replace_where: dict[str, list]) -> str:
    """``{"m": ["2024-01"], "b": [3, 5]}`` as ``m IN ('2024-01') AND b IN (3, 5)``."""
    parts = []
    for column, values in replace_where.items():
        present = [v for v in values if v is not None]
        terms = []
        if present:
            terms.append(f"`{column}` IN ({', '.join(_sql_literal(v) for v in present)})")
        if len(present) < len(values):
            terms.append(f"`{column}` IS NULL")
        parts.append("(" + " OR ".join(terms) + ")")
    return " AND ".join(parts)


class JvmTables(DeltaTables):
    """Delta tables through delta-spark (``delta.tables.DeltaTable``)."""

    engine = "jvm"

    def _delta(self, uri: str) -> Any:
        from delta.tables import DeltaTable

        if not self.exists(uri):
            raise TableNotFoundError(uri)
        return DeltaTable.forPath(self.spark, uri)

    @contextmanager
    def _user_metadata(self, metadata: dict[str, str] | None) -> Iterator[None]:
        previous = self.spark.conf.get(USER_METADATA_CONF, None)
        if metadata:
            self.spark.conf.set(USER_METADATA_CONF, json.dumps(metadata, sort_keys=True))
        try:
            yield
        finally:
            if previous is None:
                self.spark.conf.unset(USER_METADATA_CONF)
            else:
                self.spark.conf.set(USER_METADATA_CONF, previous)

    def _last_commit(self, uri: str) -> CommitResult:
        row = self._delta(uri).history(1).collect()[0]
        metrics = row["operationMetrics"] or {}

        def metric(*names: str) -> int | None:
            for name in names:
                if name in metrics:
                    return int(metrics[name])
            return None

        return CommitResult(
            version=int(row["version"]),
            operation=str(row["operation"]),
            files_added=metric("numFiles", "numAddedFiles", "numTargetFilesAdded", "numRestoredFiles") or 0,
            files_removed=metric("numRemovedFiles", "numTargetFilesRemoved") or 0,
            rows_inserted=metric("numOutputRows", "numTargetRowsInserted"),
            rows_updated=metric("numTargetRowsUpdated", "numUpdatedRows"),
            rows_deleted=metric("numTargetRowsDeleted", "numDeletedRows"),
        )

    def exists(self, uri: str) -> bool:
        """True when ``uri`` holds a Delta table."""
        from delta.tables import DeltaTable

        return bool(DeltaTable.isDeltaTable(self.spark, uri))

    def read(self, uri: str, version: int | None = None) -> DataFrame:
        """The table at ``version`` (latest when None)."""
        if not self.exists(uri):
            raise TableNotFoundError(uri)
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(uri)

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
        """Write ``df`` with ``format("delta")``; replace_where becomes Delta's replaceWhere."""
        check_write_args(uri, mode, replace_where, schema_mode)
        commit_metadata = audited(commit_metadata)
        writer = df.write.format("delta").mode(mode)
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        if replace_where:
            writer = writer.option("replaceWhere", replace_where_sql(replace_where))
        if schema_mode == "merge":
            writer = writer.option("mergeSchema", "true")
        if commit_metadata:
            writer = writer.option("userMetadata", json.dumps(commit_metadata, sort_keys=True))
        writer.save(uri)
        return self._last_commit(uri)

    def merge(
        self,
        source: DataFrame,
        uri: str,
        keys: list[str],
        update: bool = True,
        insert: bool = True,
        partition_by: list[str] | None = None,
        commit_metadata: dict[str, str] | None = None,
    ) -> CommitResult:
        """Upsert by ``keys`` with Delta MERGE on executors; creates the table when absent."""
        commit_metadata = audited(commit_metadata)
        if not self.exists(uri):
            result = self.write(source, uri, "append", partition_by, commit_metadata=commit_metadata)
            return CommitResult(result.version, "MERGE", result.files_added, 0, result.rows_inserted, 0, 0)
        condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
        builder = self._delta(uri).alias("t").merge(source.alias("s"), condition)
        if update:
            builder = builder.whenMatchedUpdateAll()
        if insert:
            builder = builder.whenNotMatchedInsertAll()
        with self._user_metadata(commit_metadata):
            try:
                builder.execute()
            except Exception as exc:
                if "Concurrent" in type(exc).__name__ or "ConcurrentModification" in str(exc):
                    raise DeltaConflictError(uri, str(exc).splitlines()[0]) from exc
                raise
        return self._last_commit(uri)

    def delete(self, uri: str, predicate: str) -> CommitResult:
        """Delete rows matching ``predicate`` (Spark SQL)."""
        self._delta(uri).delete(predicate)
        return self._last_commit(uri)

    def history(self, uri: str, limit: int | None = None) -> list[dict]:
        """Commits newest first, each with ``metadata`` parsed from userMetadata."""
        frame = self._delta(uri).history(limit) if limit else self._delta(uri).history()
        return [history_entry(row.asDict(recursive=True)) for row in frame.collect()]

    def version(self, uri: str) -> int:
        """The latest version."""
        return int(self._delta(uri).history(1).collect()[0]["version"])

    def files(self, uri: str, version: int | None = None) -> list[dict]:
        """Live files at ``version``, read from the Delta log with delta-rs (the log is the
        standard one; delta-spark exposes no stable public file-listing API)."""
        self._delta(uri)
        rs_uri = "s3://" + uri[len("s3a://"):] if uri.startswith("s3a://") else uri
        table = open_table(rs_uri, storage_options(self.config), version)
        return [
            {k: f[k] for k in ("path", "size", "partition_values", "num_records", "modification_time")}
            for f in add_actions(table)
        ]

    def optimize(self, uri: str, zorder_by: list[str] | None = None) -> dict:
        """OPTIMIZE (ZORDER BY) through DeltaTable.optimize(); returns its metrics row."""
        builder = self._delta(uri).optimize()
        frame = builder.executeZOrderBy(*zorder_by) if zorder_by else builder.executeCompaction()
        return frame.collect()[0].asDict(recursive=True)

    def vacuum(self, uri: str, retention_hours: int) -> list[str]:
        """VACUUM with ``retention_hours``; returns files that were eligible (dry run listing)."""
        table = self._delta(uri)
        check = "spark.databricks.delta.retentionDurationCheck.enabled"
        previous = self.spark.conf.get(check, "true")
        self.spark.conf.set(check, "false")
        try:
            listed = self.spark.sql(f"VACUUM delta.`{uri}` RETAIN {int(retention_hours)} HOURS DRY RUN").collect()
            table.vacuum(retention_hours / 1.0)
        finally:
            self.spark.conf.set(check, previous)
        return [r[0] for r in listed]

    def restore(self, uri: str, version: int) -> CommitResult:
        """RESTORE to ``version`` as a new commit."""
        self._delta(uri).restoreToVersion(version)
        return self._last_commit(uri)
