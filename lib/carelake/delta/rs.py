"""The ``rs`` engine: Spark computes, delta-rs keeps the Delta log.

Writes and reads go through the ``carelake`` data source (executors write and read Parquet,
one Delta commit per write). Merge, delete, optimize, vacuum and restore run delta-rs in the
driver process.

Merge: up to ``delta.merge_in_spark_rows`` target rows (default 2,000,000), the source is
collected to Arrow in the driver and delta-rs merges there. Larger tables merge in Spark
(:mod:`carelake.delta.spark_merge`): the target files that can match are found from the log
(partition values, then min/max key statistics), joined with the source on executors and
rewritten; their removal and the new files are ONE commit against the snapshot read. That path
assumes unique keys in the source (as MERGE does) but does not check it.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from deltalake import CommitProperties, DeltaTable
from deltalake.exceptions import CommitFailedError
from pyspark.sql import DataFrame

from carelake.delta import spark_merge
from carelake.delta.api import CommitResult, DeltaTables, check_write_args, history_entry
from carelake.delta.datasource import FORMAT
from carelake.delta.errors import (
    DeltaConflictError,
    DeltaLayerError,
    SchemaMismatchError,
    TableNotFoundError,
)
from carelake.delta.log import METRICS_KEY, WRITE_ID_KEY, add_actions, open_table, table_exists
from carelake.delta.storage import encode_options, storage_options
from carelake.delta.types import spark_schema_from_delta
from carelake.privacy.audit import audited

FILTER_PUSHDOWN_CONF = "spark.sql.python.filterPushdown.enabled"
# How far back write() looks for its own commit (other writers may commit meanwhile).
HISTORY_SEARCH_DEPTH = 1000
# Above this many target rows (config delta.merge_in_spark_rows), merges run in Spark and
# rewrite only candidate files instead of collecting the source into the driver for delta-rs.
MERGE_IN_SPARK_ROWS = 2_000_000


class RsTables(DeltaTables):
    """Delta tables through the ``carelake`` data source and delta-rs."""

    engine = "rs"

    @property
    def _options(self) -> dict[str, str]:
        return storage_options(self.config)

    def _table(self, uri: str, version: int | None = None) -> DeltaTable:
        return open_table(uri, self._options, version)

    def exists(self, uri: str) -> bool:
        """True when a Delta log exists at ``uri``."""
        return table_exists(uri, self._options)

    def read(self, uri: str, version: int | None = None, partition_filter: dict[str, list] | None = None) -> DataFrame:
        """The table at ``version`` (latest when None); ``partition_filter`` ({column: [values]})
        skips files of other partitions. Filters on partition columns are pushed down too when
        ``spark.sql.python.filterPushdown.enabled`` is on."""
        if not self.exists(uri):
            raise TableNotFoundError(uri)
        reader = (
            self.spark.read.format(FORMAT)
            .option("uri", uri)
            .option("storage_options", encode_options(self._options))
            .option("target_file_rows", str(self.config.target_file_rows))
            .option("filter_pushdown", str(self.spark.conf.get(FILTER_PUSHDOWN_CONF, "false")).lower())
        )
        if version is not None:
            reader = reader.option("version", str(version))
        if partition_filter:
            reader = reader.option("partition_filter", json.dumps(partition_filter, default=str))
        return reader.load()

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
        keys: list[str],
        update: bool = True,
        insert: bool = True,
        partition_by: list[str] | None = None,
        commit_metadata: dict[str, str] | None = None,
        update_condition: str | None = None,
    ) -> CommitResult:
        """Upsert ``source`` by ``keys`` with delta-rs merge in the driver (see module notes)."""
        commit_metadata = audited(commit_metadata)
        missing = [k for k in keys if k not in source.columns]
        if not keys or missing:
            raise ValueError(f"merge into {uri}: keys {keys} must be non-empty columns of the source; missing {missing} (source columns {source.columns})")
        if not self.exists(uri):
            result = self.write(source, uri, "append", partition_by, commit_metadata=commit_metadata)
            return CommitResult(result.version, "MERGE", result.files_added, 0, result.rows_inserted, 0, 0)
        table = self._table(uri)
        target_rows = sum(f["num_records"] or 0 for f in add_actions(table))
        if target_rows > int(self.config.section("delta").get("merge_in_spark_rows", MERGE_IN_SPARK_ROWS)):
            return self._merge_in_spark(source, uri, table, keys, update, insert, commit_metadata, update_condition)
        predicate = " AND ".join(f"t.{k} = s.{k}" for k in keys)
        merger = table.merge(
            source.toArrow(),
            predicate,
            source_alias="s",
            target_alias="t",
            streamed_exec=False,
            commit_properties=CommitProperties(custom_metadata=dict(commit_metadata or {})),
        )
        if update:
            merger = merger.when_matched_update_all(predicate=update_condition)
        if insert:
            merger = merger.when_not_matched_insert_all()
        try:
            metrics = merger.execute()
        except CommitFailedError as exc:
            raise DeltaConflictError(uri, str(exc).splitlines()[0]) from exc
        return CommitResult(
            version=table.version(),
            operation="MERGE",
            files_added=int(metrics.get("num_target_files_added", 0)),
            files_removed=int(metrics.get("num_target_files_removed", 0)),
            rows_inserted=int(metrics.get("num_target_rows_inserted", 0)),
            rows_updated=int(metrics.get("num_target_rows_updated", 0)),
            rows_deleted=int(metrics.get("num_target_rows_deleted", 0)),
        )

    def _merge_in_spark(
        self,
        source: DataFrame,
        uri: str,
        table: DeltaTable,
        keys: list[str],
        update: bool,
        insert: bool,
        commit_metadata: dict[str, str] | None,
        update_condition: str | None,
    ) -> CommitResult:
        """Merge on executors, rewriting only candidate files (see :mod:`spark_merge`)."""
        columns = spark_schema_from_delta(table.schema()).fieldNames()
        missing = [c for c in columns if c not in source.columns]
        if missing:
            raise SchemaMismatchError(f"merge into {uri}: source lacks table columns {missing}")
        source = source.select(*columns)
        partition_columns = list(table.metadata().partition_columns)
        candidates = spark_merge.candidate_files(
            add_actions(table),
            partition_columns,
            spark_merge.source_partitions(source, partition_columns, keys),
            keys[0],
            spark_merge.key_range(source, keys[0]),
        )
        read_version = table.version()
        target = (
            self.spark.read.format(FORMAT)
            .option("uri", uri)
            .option("version", str(read_version))
            .option("storage_options", encode_options(self._options))
            .option("files", json.dumps([f["path"] for f in candidates]))
            .load()
        )
        matched, unmatched = spark_merge.match_counts(target, source, keys)
        rewritten, appended = spark_merge.merged_rows(target, source, keys, update, insert, update_condition)
        options = {"commit_metadata": json.dumps(commit_metadata or {}), "read_version": str(read_version)}
        if update and candidates:
            removes = [{k: f[k] for k in ("path", "size", "partition_values")} for f in candidates]
            options["remove_files"] = json.dumps(removes)
        result = self._save(rewritten.unionByName(appended), uri, "append", options)
        return CommitResult(
            version=result.version,
            operation="MERGE",
            files_added=result.files_added,
            files_removed=result.files_removed,
            rows_inserted=unmatched if insert else 0,
            rows_updated=matched if update else 0,
            rows_deleted=0,
        )

    def delete(self, uri: str, predicate: str) -> CommitResult:
        """Delete rows matching ``predicate`` (delta-rs SQL)."""
        table = self._table(uri)
        try:
            metrics = table.delete(predicate)
        except CommitFailedError as exc:
            raise DeltaConflictError(uri, str(exc).splitlines()[0]) from exc
        return CommitResult(
            version=table.version(),
            operation="DELETE",
            files_added=int(metrics.get("num_added_files", 0)),
            files_removed=int(metrics.get("num_removed_files", 0)),
            rows_deleted=int(metrics.get("num_deleted_rows", 0)),
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

    def optimize(self, uri: str, zorder_by: list[str] | None = None) -> dict[str, Any]:
        """Compact small files (delta-rs, in the driver), z-ordered when ``zorder_by`` is given."""
        table = self._table(uri)
        target = self.config.section("delta").get("optimize_target_size")
        if zorder_by:
            return table.optimize.z_order(zorder_by, target_size=target)
        return table.optimize.compact(target_size=target)

    def vacuum(self, uri: str, retention_hours: int) -> list[str]:
        """Delete files no version younger than ``retention_hours`` references."""
        return self._table(uri).vacuum(
            retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False
        )

    def restore(self, uri: str, version: int) -> CommitResult:
        """Restore ``version`` as a new commit."""
        table = self._table(uri)
        metrics = table.restore(version)
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
