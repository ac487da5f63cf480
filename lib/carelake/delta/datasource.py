"""The ``carelake`` Spark data source: Delta tables read and written through delta-rs.

Writes: executors write Parquet with pyarrow (Arrow batches), the driver-side ``commit`` makes
ONE Delta transaction of all the files; ``abort`` deletes them. Reads: one input partition per
file (small files grouped), planned from the Delta log at a version; executors read with pyarrow.

Options (all strings): ``uri`` (required; ``path`` is reserved by Spark), ``version``,
``storage_options`` (JSON, no secrets: executors take credentials from their environment),
``partition_filter`` (JSON ``{"column": [values]}``, prunes files by partition values),
``files`` (JSON list of log paths: read only these), ``filter_pushdown`` ("true" when ``spark.sql.python.filterPushdown.enabled`` is on: then
pushed-down filters on partition columns prune files too). Write only: ``partition_by`` (JSON
list), ``replace_where`` (JSON ``{"column": [values]}``), ``schema_mode`` ("merge"),
``commit_metadata`` (JSON object), ``write_id``, ``read_version``, ``target_file_rows``,
``remove_files`` (JSON list of log entries removed in the same commit: a file rewrite),
``read_scope`` (JSON :class:`~carelake.delta.conflicts.ReadScope`: what the writer read, for
conflict checks).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    EqualNullSafe,
    EqualTo,
    Filter,
    In,
    InputPartition,
    IsNotNull,
    IsNull,
    WriterCommitMessage,
)
from pyspark.sql.types import StructType

from carelake.delta.conflicts import ReadScope
from carelake.delta.errors import DeltaLayerError
from carelake.delta.files import DataFile, PartitionedFileWriter, delete_files, read_file
from carelake.delta.log import WriteRequest, add_actions, commit_write, file_uri, open_table
from carelake.delta.storage import decode_options, filesystem
from carelake.delta.types import (
    arrow_schema_from_spark,
    format_partition_value,
    parse_partition_value,
    spark_schema_from_delta,
)

FORMAT = "carelake"
DEFAULT_TARGET_FILE_ROWS = 1_000_000
UNSUPPORTED_READER_FEATURES = ("columnMapping", "deletionVectors")


def _required(options: Any, name: str) -> str:
    value = options.get(name)
    if not value:
        raise ValueError(f"data source '{FORMAT}': option '{name}' is required (a table URI)")
    return str(value)


def _json_option(options: Any, name: str, default: Any) -> Any:
    text = options.get(name)
    if not text:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"data source '{FORMAT}': option '{name}' must be JSON, found {text!r}") from exc


class CarelakeDataSource(DataSource):
    """Delta tables through delta-rs: ``spark.read.format("carelake").option("uri", u).load()``."""

    @classmethod
    def name(cls) -> str:
        """The format name, ``carelake``."""
        return FORMAT

    def schema(self) -> StructType:
        """The table's schema at the requested version, from its Delta log."""
        table = open_table(_required(self.options, "uri"), decode_options(self.options.get("storage_options")), _version(self.options))
        return spark_schema_from_delta(table.schema())

    def reader(self, schema: StructType) -> DataSourceReader:
        """A reader of the files of the requested version; prunes on partition filters."""
        if self.options.get("filter_pushdown") == "true":
            return PushdownDeltaReader(self.options, schema)
        return DeltaReader(self.options, schema)

    def writer(self, schema: StructType, overwrite: bool) -> DeltaArrowWriter:
        """A writer committing all tasks' files in one Delta transaction."""
        options = self.options
        replace_where = _json_option(options, "replace_where", None)
        if replace_where is not None and not overwrite:
            raise ValueError(f"data source '{FORMAT}': replace_where needs mode overwrite, found append")
        read_version = options.get("read_version")
        request = WriteRequest(
            uri=_required(options, "uri"),
            mode="overwrite" if overwrite else "append",
            schema=schema,
            partition_by=_json_option(options, "partition_by", None),
            replace_where=(
                {c: [format_partition_value(v) for v in vs] for c, vs in replace_where.items()}
                if replace_where
                else None
            ),
            schema_mode=options.get("schema_mode") or None,
            commit_metadata={str(k): str(v) for k, v in _json_option(options, "commit_metadata", {}).items()},
            write_id=options.get("write_id") or "",
            read_version=int(read_version) if read_version not in (None, "") else None,
            storage_options=decode_options(options.get("storage_options")),
            remove_files=_json_option(options, "remove_files", []),
            read_scope=ReadScope.from_json(options.get("read_scope")) if options.get("read_scope") else None,
        )
        target = int(options.get("target_file_rows") or DEFAULT_TARGET_FILE_ROWS)
        return DeltaArrowWriter(request, target, _file_partitioning(request))


def _file_partitioning(request: WriteRequest) -> list[str]:
    """The partition columns files are split by: as asked, else the existing table's."""
    if request.partition_by is not None:
        return list(request.partition_by)
    try:
        table = open_table(request.uri, request.storage_options)
    except DeltaLayerError:
        return []
    return list(table.metadata().partition_columns)


def _version(options: Any) -> int | None:
    text = options.get("version")
    return int(text) if text not in (None, "") else None


@dataclass
class FilesWritten(WriterCommitMessage):
    """The files one write task produced."""

    files: list[DataFile] = field(default_factory=list)


class DeltaArrowWriter(DataSourceArrowWriter):
    """Executors: Arrow batches to Parquet files. Driver: one Delta commit of all files."""

    def __init__(self, request: WriteRequest, target_file_rows: int, partition_by: list[str]) -> None:
        self.request = request
        self.target_file_rows = target_file_rows
        self.partition_by = partition_by

    def write(self, iterator: Iterator[pa.RecordBatch]) -> FilesWritten:
        """Write this task's batches; returns the files written."""
        fs, base = filesystem(self.request.uri, self.request.storage_options)
        allowed = (
            {c: set(v) for c, v in self.request.replace_where.items()}
            if self.request.replace_where
            else None
        )
        writer = PartitionedFileWriter(fs, base, self.partition_by, self.target_file_rows, allowed)
        try:
            for batch in iterator:
                writer.add(batch)
            return FilesWritten(writer.close())
        except BaseException:
            writer.discard()
            raise

    def commit(self, messages: list[WriterCommitMessage | None]) -> None:
        """Commit every task's files in one transaction."""
        files = [f for m in messages if isinstance(m, FilesWritten) for f in m.files]
        try:
            commit_write(self.request, files)
        except BaseException:
            self.abort(messages)
            raise

    def abort(self, messages: list[WriterCommitMessage | None]) -> None:
        """Delete the files of the tasks that finished."""
        fs, base = filesystem(self.request.uri, self.request.storage_options)
        paths = [f.path for m in messages if isinstance(m, FilesWritten) for f in m.files]
        delete_files(fs, base, paths)


class FileGroup(InputPartition):
    """Files read by one task: (uri, partition values) pairs."""

    def __init__(self, files: list[tuple[str, dict[str, str | None]]]) -> None:
        super().__init__(files)
        self.files = files


class DeltaReader(DataSourceReader):
    """Plans one task per file (small files grouped) from the Delta log."""

    def __init__(self, options: Any, schema: StructType) -> None:
        self.uri = _required(options, "uri")
        self.version = _version(options)
        self.storage_options_text = options.get("storage_options")
        self.schema = schema
        self.target_rows = int(options.get("target_file_rows") or DEFAULT_TARGET_FILE_ROWS)
        self.partition_filter: dict[str, list[Any]] = _json_option(options, "partition_filter", {})
        self.pushed: list[Filter] = []
        only = _json_option(options, "files", None)
        self.only_files: set[str] | None = set(only) if only is not None else None

    def partitions(self) -> Sequence[InputPartition]:
        """File groups of about ``target_file_rows`` rows; one empty group for an empty table."""
        table = open_table(self.uri, decode_options(self.storage_options_text), self.version)
        _check_readable(self.uri, table)
        arrow_schema = arrow_schema_from_spark(self.schema)
        groups: list[FileGroup] = []
        current: list[tuple[str, dict[str, str | None]]] = []
        rows = 0
        for f in add_actions(table):
            if self.only_files is not None and f["path"] not in self.only_files:
                continue
            if not self._keep(f["partition_values"], arrow_schema):
                continue
            current.append((file_uri(self.uri, f["path"]), f["partition_values"]))
            rows += f["num_records"] or self.target_rows
            if rows >= self.target_rows:
                groups.append(FileGroup(current))
                current, rows = [], 0
        if current or not groups:
            groups.append(FileGroup(current))
        return groups

    def _keep(self, values: dict[str, str | None], arrow_schema: pa.Schema) -> bool:
        for column, allowed in self.partition_filter.items():
            if column not in values:
                raise ValueError(
                    f"partition_filter column {column!r} is not a partition column of {self.uri} "
                    f"(partition columns: {sorted(values)})"
                )
            if values[column] not in {format_partition_value(v) for v in allowed}:
                return False
        for flt in self.pushed:
            column = flt.attribute[0]
            value = parse_partition_value(values[column], arrow_schema.field(column).type)
            if not _matches(flt, value):
                return False
        return True

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        """The rows of the group's files as Arrow batches of the table schema."""
        assert isinstance(partition, FileGroup)
        arrow_schema = arrow_schema_from_spark(self.schema)
        options = decode_options(self.storage_options_text)
        for uri, values in partition.files:
            fs, path = filesystem(uri, options)
            yield from read_file(fs, path, arrow_schema, values).to_batches()


def _check_readable(uri: str, table: Any) -> None:
    features = set(table.protocol().reader_features or [])
    unsupported = sorted(features & set(UNSUPPORTED_READER_FEATURES))
    if unsupported:
        raise DeltaLayerError(
            f"table {uri} uses reader features {unsupported} that the rs engine does not read; "
            "read it with the jvm engine"
        )


def _matches(flt: Filter, value: Any) -> bool:
    if isinstance(flt, EqualTo):
        return value is not None and value == flt.value
    if isinstance(flt, EqualNullSafe):
        return value == flt.value
    if isinstance(flt, In):
        return value is not None and value in flt.value
    if isinstance(flt, IsNull):
        return value is None
    if isinstance(flt, IsNotNull):
        return value is not None
    return True


class PushdownDeltaReader(DeltaReader):
    """A reader that also prunes files with filters Spark pushes down on partition columns.

    Only used when ``spark.sql.python.filterPushdown.enabled`` is on (Spark refuses readers
    overriding ``pushFilters`` otherwise). Every filter is still handed back to Spark, which
    re-applies it: pruning here only skips files that cannot match.
    """

    def pushFilters(self, filters: list[Filter]) -> Iterator[Filter]:
        """Keep filters on partition columns for pruning; return all for Spark to apply."""
        partition_columns = set(self._partition_columns())
        for flt in filters:
            if (
                isinstance(flt, (EqualTo, EqualNullSafe, In, IsNull, IsNotNull))
                and len(flt.attribute) == 1
                and flt.attribute[0] in partition_columns
            ):
                self.pushed.append(flt)
            yield flt

    def _partition_columns(self) -> list[str]:
        table = open_table(self.uri, decode_options(self.storage_options_text), self.version)
        return list(table.metadata().partition_columns)
