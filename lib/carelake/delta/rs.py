"""The ``rs`` engine: Spark computes, delta-rs keeps the Delta log.

Writes and reads go through the ``carelake`` data source (executors write and read Parquet,
one Delta commit per write). Merge and delete run in Spark (:mod:`carelake.delta.spark_merge`):
the target files that can match are found from the log (partition values, then min/max key
statistics), read and rewritten on executors; their removal and the new files are ONE commit
against the snapshot read, checked against concurrent commits as Delta's own engine checks them
(:mod:`carelake.delta.conflicts`). Optimize, vacuum and restore run delta-rs in the driver.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any

from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from carelake.delta import spark_merge
from carelake.delta.api import (
    CommitResult,
    DeltaTables,
    check_merge_args,
    check_write_args,
    history_entry,
)
from carelake.delta.audit import audited
from carelake.delta.conflicts import ReadScope
from carelake.delta.datasource import FORMAT
from carelake.delta.errors import (
    DeltaConflictError,
    DeltaLayerError,
    SchemaMismatchError,
    TableNotFoundError,
)
from carelake.delta.log import METRICS_KEY, WRITE_ID_KEY, add_actions, open_table, table_exists
from carelake.delta.spec import MergeSpec, Rows
from carelake.delta.storage import encode_options, storage_options
from carelake.delta.types import format_partition_value, spark_schema_from_delta

FILTER_PUSHDOWN_CONF = "spark.sql.python.filterPushdown.enabled"
# How far back write() looks for its own commit (other writers may commit meanwhile).
HISTORY_SEARCH_DEPTH = 1000


class RsTables(DeltaTables):
    """Delta tables through the ``carelake`` data source and delta-rs."""

    engine = "rs"

    def _activate(self) -> None:
        """Make this session the JVM thread's active one: Spark looks Python data sources up in
        the active session, and a thread other than the one that built it has none."""
        jvm = getattr(self.spark, "_jvm", None)
        if jvm is not None:
            jvm.org.apache.spark.sql.SparkSession.setActiveSession(self.spark._jsparkSession)

    @property
    def _options(self) -> dict[str, str]:
        return storage_options(self.config)

    def _table(self, uri: str, version: int | None = None) -> DeltaTable:
        return open_table(uri, self._options, version)

    def exists(self, uri: str) -> bool:
        """True when a Delta log exists at ``uri``."""
        return table_exists(uri, self._options)

    def read(self, uri: str, version: int | None = None, timestamp: str | None = None) -> DataFrame:
        """The table at ``version`` or ``timestamp`` (latest when both are None). Filters on
        partition columns are pushed down when ``spark.sql.python.filterPushdown.enabled`` is on."""
        if not self.exists(uri):
            raise TableNotFoundError(uri)
        if version is None and timestamp is not None:
            version = self._version_at(uri, timestamp)
        self._activate()
        reader = (
            self.spark.read.format(FORMAT)
            .option("uri", uri)
            .option("storage_options", encode_options(self._options))
            .option("target_file_rows", str(self.config.target_file_rows))
            .option("filter_pushdown", str(self.spark.conf.get(FILTER_PUSHDOWN_CONF, "false")).lower())
        )
        if version is not None:
            reader = reader.option("version", str(version))
        return reader.load()

    def _version_at(self, uri: str, timestamp: str) -> int:
        """The last version committed at or before ``timestamp`` (ISO text, UTC when naive)."""
        moment = dt.datetime.fromisoformat(timestamp)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        table = self._table(uri)
        try:
            table.load_as_version(moment)
        except Exception as exc:
            raise DeltaLayerError(f"read {uri} as of {timestamp}: {str(exc).splitlines()[0]}") from exc
        return table.version()

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
        """Write ``df`` through the data source: executors write files, one commit."""
        check_write_args(uri, mode, replace_where, schema_mode)
        commit_metadata = audited(commit_metadata)
        options = {"commit_metadata": json.dumps(commit_metadata or {})}
        if self.exists(uri):
            # Commit against the snapshot the write started from, so conflicting commits made
            # while executors write are detected.
            options["read_version"] = str(self.version(uri))
        if partition_by is not None:
            options["partition_by"] = json.dumps(partition_by)
        if replace_where is not None:
            options["replace_where"] = json.dumps(replace_where, default=str)
        if schema_mode:
            options["schema_mode"] = schema_mode
        return self._save(df, uri, mode, options)

    def _save(self, df: DataFrame, uri: str, mode: str, options: dict[str, str]) -> CommitResult:
        """Write ``df`` through the data source with ``options``; the commit it made."""
        write_id = uuid.uuid4().hex
        self._activate()
        writer = (
            df.write.format(FORMAT)
            .mode(mode)
            .option("uri", uri)
            .option("storage_options", encode_options(self._options))
            .option("target_file_rows", str(self.config.target_file_rows))
            .option("write_id", write_id)
        )
        for key, value in options.items():
            writer = writer.option(key, value)
        try:
            writer.save()
        except Exception as exc:
            known = _known_error(exc, uri)
            if known is None:
                raise
            raise known from exc
        return self._write_result(uri, write_id)

    def _write_result(self, uri: str, write_id: str) -> CommitResult:
        table = self._table(uri)
        depth = 10
        while True:
            entries = table.history(depth)
            for entry in entries:
                if entry.get(WRITE_ID_KEY) == write_id:
                    metrics = json.loads(entry.get(METRICS_KEY) or "{}")
                    return CommitResult(
                        version=int(entry["version"]),
                        operation=str(entry.get("operation")),
                        files_added=int(metrics.get("files_added", 0)),
                        files_removed=int(metrics.get("files_removed", 0)),
                        rows_inserted=metrics.get("rows_inserted"),
                    )
            if len(entries) < depth or depth >= HISTORY_SEARCH_DEPTH:
                break
            depth *= 10
        raise DeltaLayerError(
            f"write to {uri} finished but its commit ({WRITE_ID_KEY}={write_id}) is not among "
            f"the last {depth} commits"
        )

    def merge(
        self,
        source: DataFrame,
        uri: str,
        spec: MergeSpec,
        partition_by: list[str] | None = None,
        commit_metadata: dict[str, str] | None = None,
    ) -> CommitResult:
        """Merge on executors, rewriting only the target files that can match (see
        :mod:`spark_merge`); one commit, checked against concurrent ones as Delta checks."""
        check_merge_args(source, uri, spec)
        commit_metadata = audited(commit_metadata)
        if not self.exists(uri):
            result = self.write(source, uri, "append", partition_by, commit_metadata=commit_metadata)
            return CommitResult(result.version, "MERGE", result.files_added, 0, result.rows_inserted, 0, 0)
        table = self._table(uri)
        columns = spark_schema_from_delta(table.schema()).fieldNames()
        missing = [c for c in columns if c not in source.columns]
        if missing:
            raise SchemaMismatchError(f"merge into {uri}: source lacks table columns {missing}")
        source = source.select(*columns)
        keys = list(spec.keys)
        partition_columns = list(table.metadata().partition_columns)
        files = add_actions(table)
        if spec.delete_unmatched is not False:
            candidates = files  # any target row may be deleted
        else:
            candidates = spark_merge.candidate_files(
                files,
                partition_columns,
                spark_merge.source_partitions(source, partition_columns, keys),
                keys[0],
                spark_merge.key_range(source, keys[0]),
            )
        # What a MERGE read is the whole table, as delta-spark counts it (a concurrent append
        # anywhere conflicts), however few files it rewrites.
        scope = ReadScope(whole=True, files=frozenset(f["path"] for f in files))
        read_version = table.version()
        target = self._read_files(uri, read_version, [f["path"] for f in candidates])
        matched, unmatched = spark_merge.match_counts(target, source, keys)
        rewritten, appended, deleted = spark_merge.merged_rows(target, source, spec)
        options = {
            "commit_metadata": json.dumps(commit_metadata or {}),
            "read_version": str(read_version),
            "read_scope": scope.to_json(),
        }
        rewrites = spec.update or spec.delete_unmatched is not False
        if rewrites and candidates:
            options["remove_files"] = json.dumps([{k: f[k] for k in ("path", "size", "partition_values")} for f in candidates])
        result = self._save(rewritten.unionByName(appended), uri, "append", options)
        return CommitResult(
            version=result.version,
            operation="MERGE",
            files_added=result.files_added,
            files_removed=result.files_removed,
            rows_inserted=unmatched if spec.insert else 0,
            rows_updated=matched if spec.update else 0,
            rows_deleted=deleted,
        )

    def _read_files(self, uri: str, version: int, paths: list[str]) -> DataFrame:
        """Only the files ``paths`` of the table at ``version``."""
        self._activate()
        return (
            self.spark.read.format(FORMAT)
            .option("uri", uri)
            .option("version", str(version))
            .option("storage_options", encode_options(self._options))
            .option("files", json.dumps(paths))
            .load()
        )

    def delete(self, uri: str, rows: Rows) -> CommitResult:
        """Delete ``rows`` on executors: the files that can hold them (by partition values when
        ``rows`` names only partition columns) are rewritten without them, in one commit."""
        table = self._table(uri)
        read_version = table.version()
        partition_columns = list(table.metadata().partition_columns)
        files = add_actions(table)
        by_partition = set(rows.columns) <= set(partition_columns)
        candidates = [f for f in files if not by_partition or rows.matches(f["partition_values"])]
        target = self._read_files(uri, read_version, [f["path"] for f in candidates])
        doomed = F.coalesce(rows.column(), F.lit(False))
        deleted = target.where(doomed).count() if candidates else 0
        if not deleted:
            return CommitResult(version=read_version, operation="DELETE", files_added=0, files_removed=0, rows_deleted=0)
        paths = [f["path"] for f in candidates]
        scope = (
            ReadScope.of_partitions([dict(f["partition_values"]) for f in candidates], paths)
            if by_partition
            else ReadScope(whole=True, files=frozenset(paths))
        )
        options = {
            "commit_metadata": json.dumps(audited(None)),
            "read_version": str(read_version),
            "read_scope": scope.to_json(),
            "remove_files": json.dumps([{k: f[k] for k in ("path", "size", "partition_values")} for f in candidates]),
        }
        result = self._save(target.where(~doomed), uri, "append", options)
        return CommitResult(
            version=result.version,
            operation="DELETE",
            files_added=result.files_added,
            files_removed=result.files_removed,
            rows_deleted=deleted,
        )

    def history(self, uri: str, limit: int | None = None) -> list[dict]:
        """Commits newest first, each with ``metadata`` (custom commit metadata)."""
        return [history_entry(e) for e in self._table(uri).history(limit)]

    def version(self, uri: str) -> int:
        """The latest version."""
        return self._table(uri).version()

    def files(self, uri: str, version: int | None = None) -> list[dict]:
        """Live files at ``version``: path, size, partition_values, num_records."""
        return [
            {k: f[k] for k in ("path", "size", "partition_values", "num_records", "modification_time")}
            for f in add_actions(self._table(uri, version))
        ]

    def optimize(self, uri: str, zorder_by: list[str] | None = None, where: Rows | None = None) -> dict[str, Any]:
        """Compact small files (delta-rs, in the driver), z-ordered when ``zorder_by`` is given;
        with ``where``, one optimize commit per term (delta-rs takes one conjunction of
        partition filters at a time)."""
        table = self._table(uri)
        target = self.config.section("delta").get("optimize_target_size")

        def run(filters: list[tuple[str, str, Any]] | None) -> dict[str, Any]:
            if zorder_by:
                return table.optimize.z_order(zorder_by, partition_filters=filters, target_size=target)
            return table.optimize.compact(partition_filters=filters, target_size=target)

        if where is None:
            return run(None)
        metrics: dict[str, Any] = {}
        for term in where.terms:
            filters = [(column, "in", [format_partition_value(v) for v in values]) for column, values in term]
            for key, value in run(filters).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and "Size" not in key:
                    metrics[key] = metrics.get(key, 0) + value
                else:
                    metrics[key] = value
        return metrics

    def vacuum(self, uri: str, retention_hours: int) -> list[str]:
        """Delete files no version younger than ``retention_hours`` references."""
        return self._table(uri).vacuum(
            retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False
        )

    def set_properties(self, uri: str, properties: dict[str, str]) -> CommitResult:
        """Set table properties (a metadata commit)."""
        table = self._table(uri)
        table.alter.set_table_properties(dict(properties), raise_if_not_exists=False)
        return CommitResult(version=table.version(), operation="SET TBLPROPERTIES", files_added=0, files_removed=0)

    def restore(self, uri: str, version: int) -> CommitResult:
        """Restore ``version`` as a new commit."""
        table = self._table(uri)
        try:
            metrics = table.restore(version)
        except CommitFailedError as exc:
            raise DeltaConflictError(uri, str(exc).splitlines()[0]) from exc
        return CommitResult(
            version=table.version(),
            operation="RESTORE",
            files_added=int(metrics.get("num_restored_file", 0)),
            files_removed=int(metrics.get("num_removed_file", 0)),
        )


_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(DeltaConflictError|SchemaMismatchError|ValueError): (.*)$")


def _known_error(exc: Exception, uri: str) -> Exception | None:
    """The Delta layer's own error inside a Spark-wrapped data source failure, if any: the
    last ``<ErrorClass>: message`` line of the Python traceback Spark carries."""
    found = [m for m in map(_ERROR_LINE.match, str(exc).splitlines()) if m]
    if not found:
        return None
    name, message = found[-1].group(1), found[-1].group(2)
    if name == "DeltaConflictError":
        return DeltaConflictError(uri, message.split(": ", 2)[-1])
    return SchemaMismatchError(message) if name == "SchemaMismatchError" else ValueError(message)
