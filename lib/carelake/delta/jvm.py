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

from carelake.delta.api import (
    CommitResult,
    DeltaTables,
    check_merge_args,
    check_write_args,
    history_entry,
)
from carelake.delta.audit import audited
from carelake.delta.errors import DeltaConflictError, TableNotFoundError
from carelake.delta.log import add_actions, open_table
from carelake.delta.spec import MergeSpec, Rows
from carelake.delta.storage import rs_uri, storage_options

USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
CONFLICT_EXCEPTIONS = (
    "ConcurrentAppendException", "ConcurrentDeleteDeleteException", "ConcurrentDeleteReadException",
    "ConcurrentTransactionException", "ConcurrentWriteException", "DeltaConcurrentModificationException",
    "MetadataChangedException", "ProtocolChangedException",
)


@contextmanager
def conflicts_raised(uri: str) -> Iterator[None]:
    """Delta's concurrent-modification exceptions as :class:`DeltaConflictError`."""
    import delta.exceptions as delta_errors

    # delta-spark's concurrent-modification errors share no Python base class.
    conflicts = tuple(getattr(delta_errors, name) for name in CONFLICT_EXCEPTIONS)
    try:
        yield
    except conflicts as exc:
        raise DeltaConflictError(uri, f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from exc


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

    def _log(self, uri: str) -> Any:
        """The table's Delta log read with delta-rs on the driver: Delta's own history runs a
        Spark job per call, and every write asks for its commit's metrics. A missing table is
        :class:`TableNotFoundError` from :func:`open_table` (no separate existence check)."""
        return open_table(rs_uri(uri), storage_options(self.config), without_files=True)

    def _last_commit(self, uri: str) -> CommitResult:
        row = self._log(uri).history(1)[0]
        metrics = row.get("operationMetrics") or {}

        def metric(*names: str) -> int | None:
            for name in names:
                if name in metrics:
                    return int(metrics[name])
            return None

        merge = row["operation"] == "MERGE"
        return CommitResult(
            version=int(row["version"]),
            operation=str(row["operation"]),
            files_added=metric("numTargetFilesAdded", "numFiles", "numAddedFiles", "numRestoredFiles") or 0,
            files_removed=metric("numTargetFilesRemoved", "numRemovedFiles") or 0,
            rows_inserted=metric("numTargetRowsInserted") if merge else metric("numOutputRows"),
            rows_updated=metric("numTargetRowsUpdated", "numUpdatedRows"),
            rows_deleted=metric("numTargetRowsDeleted", "numDeletedRows"),
        )

    def exists(self, uri: str) -> bool:
        """True when ``uri`` holds a Delta table."""
        from delta.tables import DeltaTable

        return bool(DeltaTable.isDeltaTable(self.spark, uri))

    def read(self, uri: str, version: int | None = None, timestamp: str | None = None) -> DataFrame:
        """The table at ``version`` or ``timestamp`` (latest when both are None)."""
        if not self.exists(uri):
            raise TableNotFoundError(uri)
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        elif timestamp is not None:
            reader = reader.option("timestampAsOf", timestamp)
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
            writer = writer.option("replaceWhere", Rows.where(replace_where).sql("spark"))
        if schema_mode == "merge":
            writer = writer.option("mergeSchema", "true")
        if commit_metadata:
            writer = writer.option("userMetadata", json.dumps(commit_metadata, sort_keys=True))
        with conflicts_raised(uri):
            writer.save(uri)
        return self._last_commit(uri)

    def merge(
        self,
        source: DataFrame,
        uri: str,
        spec: MergeSpec,
        partition_by: list[str] | None = None,
        commit_metadata: dict[str, str] | None = None,
    ) -> CommitResult:
        """Delta MERGE on executors as ``spec`` says; creates the table when absent."""
        check_merge_args(source, uri, spec)
        commit_metadata = audited(commit_metadata)
        if not self.exists(uri):
            result = self.write(source, uri, "append", partition_by, commit_metadata=commit_metadata)
            return CommitResult(result.version, "MERGE", result.files_added, 0, result.rows_inserted, 0, 0)
        builder = self._delta(uri).alias("t").merge(source.alias("s"), spec.on_sql("spark"))
        if spec.update:
            builder = builder.whenMatchedUpdateAll(condition=spec.update_condition_sql("spark"))
        if spec.insert:
            builder = builder.whenNotMatchedInsertAll()
        if spec.delete_unmatched is not False:
            builder = builder.whenNotMatchedBySourceDelete(condition=spec.delete_condition_sql("spark"))
        with self._user_metadata(commit_metadata), conflicts_raised(uri):
            builder.execute()
        return self._last_commit(uri)

    def delete(self, uri: str, rows: Rows) -> CommitResult:
        """Delete ``rows`` (Delta DELETE on executors)."""
        table = self._delta(uri)
        with conflicts_raised(uri):
            table.delete(rows.column())
        return self._last_commit(uri)

    def history(self, uri: str, limit: int | None = None) -> list[dict]:
        """Commits newest first, each with ``metadata`` parsed from userMetadata."""
        frame = self._delta(uri).history(limit) if limit else self._delta(uri).history()
        return [history_entry(row.asDict(recursive=True)) for row in frame.collect()]

    def version(self, uri: str) -> int:
        """The latest version."""
        return int(self._log(uri).version())

    def files(self, uri: str, version: int | None = None) -> list[dict]:
        """Live files at ``version``, read from the Delta log with delta-rs (the log is the
        standard one; delta-spark exposes no stable public file-listing API)."""
        self._delta(uri)
        table = open_table(rs_uri(uri), storage_options(self.config), version)
        return [
            {k: f[k] for k in ("path", "size", "partition_values", "num_records", "modification_time")}
            for f in add_actions(table)
        ]

    def optimize(self, uri: str, zorder_by: list[str] | None = None, where: Rows | None = None) -> dict:
        """OPTIMIZE [WHERE partitions] [ZORDER BY] through DeltaTable.optimize(); returns its
        metrics row."""
        builder = self._delta(uri).optimize()
        if where is not None:
            builder = builder.where(where.sql("spark"))
        with conflicts_raised(uri):
            frame = builder.executeZOrderBy(*zorder_by) if zorder_by else builder.executeCompaction()
        return frame.collect()[0].asDict(recursive=True)

    def vacuum(self, uri: str, retention_hours: int) -> list[str]:
        """VACUUM with ``retention_hours``; returns files that were eligible (dry run listing)."""
        table = self._delta(uri)
        # delta-spark 4.4 ignores RETAIN unless it is 0 (the table's deletedFileRetentionDuration
        # wins) and refuses short ones; carelake's configured retention is the one to apply.
        overrides = {
            "spark.databricks.delta.retentionDurationCheck.enabled": "false",
            "spark.databricks.delta.vacuum.retentionWindowIgnore.enabled": "false",
        }
        previous = {key: self.spark.conf.get(key, None) for key in overrides}
        for key, value in overrides.items():
            self.spark.conf.set(key, value)
        try:
            listed = self.spark.sql(f"VACUUM delta.`{uri}` RETAIN {int(retention_hours)} HOURS DRY RUN").collect()
            table.vacuum(retention_hours / 1.0)
        finally:
            for key, value in previous.items():
                if value is None:
                    self.spark.conf.unset(key)
                else:
                    self.spark.conf.set(key, value)
        return [r[0] for r in listed]

    def restore(self, uri: str, version: int) -> CommitResult:
        """RESTORE to ``version`` as a new commit."""
        table = self._delta(uri)
        with conflicts_raised(uri):
            table.restoreToVersion(version)
        return self._last_commit(uri)

    def set_properties(self, uri: str, properties: dict[str, str]) -> CommitResult:
        """ALTER TABLE ... SET TBLPROPERTIES (e.g. ``delta.isolationLevel``)."""
        self._delta(uri)
        pairs = ", ".join(f"'{k}' = '{v}'" for k, v in properties.items())
        with conflicts_raised(uri):
            self.spark.sql(f"ALTER TABLE delta.`{uri}` SET TBLPROPERTIES ({pairs})")
        return self._last_commit(uri)
