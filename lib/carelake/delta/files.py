"""Parquet data files of a Delta table: written and read by executors with pyarrow.

A writer task splits its Arrow batches by partition values into hive-style folders, rolls a new
file every ``target_file_rows`` rows and describes each file (path, size, partition values, row
count, min/max/null-count statistics) so the driver can commit it to the Delta log.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from carelake.delta.types import format_partition_value, parse_partition_value, stats_value

# Flush a partition's buffered rows as a row group at this size: larger row groups read faster,
# smaller ones bound a task's memory when it writes to many partitions at once.
ROW_GROUP_ROWS = 131_072
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
_SAFE_FOLDER = "-_.~"


@dataclass
class DataFile:
    """One written Parquet file, as the Delta log needs it; ``path`` is relative to the table
    and not URI-encoded (delta-rs encodes it in the log and decodes it when listing files)."""

    path: str
    size: int
    partition_values: dict[str, str | None]
    num_records: int
    stats: str
    modification_time: int


def folder_name(column: str, value: str | None) -> str:
    """The hive-style folder ``column=value`` (value percent-escaped; null as Hive writes it)."""
    text = HIVE_NULL if value is None else quote(value, safe=_SAFE_FOLDER)
    return f"{column}={text}"


@dataclass
class _ColumnStats:
    minimum: Any = None
    maximum: Any = None
    null_count: int = 0
    comparable: bool = True

    def update(self, column: pa.ChunkedArray) -> None:
        self.null_count += column.null_count
        if not self.comparable or column.null_count == len(column):
            return
        extremes = pc.min_max(column)
        low, high = extremes["min"].as_py(), extremes["max"].as_py()
        if isinstance(low, float) and (math.isnan(low) or math.isnan(high)):
            self.comparable = False
            return
        self.minimum = low if self.minimum is None else min(self.minimum, low)
        self.maximum = high if self.maximum is None else max(self.maximum, high)


def _has_min_max(arrow_type: pa.DataType) -> bool:
    return (
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_decimal(arrow_type)
        or pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_date(arrow_type)
        or pa.types.is_timestamp(arrow_type)
    )


def stats_json(num_records: int, stats: dict[str, _ColumnStats]) -> str:
    """Delta file statistics JSON: numRecords, minValues, maxValues, nullCount."""
    mins = {n: stats_value(s.minimum) for n, s in stats.items() if s.comparable and s.minimum is not None}
    maxs = {n: stats_value(s.maximum) for n, s in stats.items() if s.comparable and s.maximum is not None}
    nulls = {n: s.null_count for n, s in stats.items()}
    return json.dumps(
        {"numRecords": num_records, "minValues": mins, "maxValues": maxs, "nullCount": nulls}
    )


@dataclass
class _OpenFile:
    relative: str
    writer: pq.ParquetWriter
    stream: Any
    rows: int = 0
    stats: dict[str, _ColumnStats] = field(default_factory=dict)


class PartitionedFileWriter:
    """Writes one task's rows into Parquet files under ``base`` (the table's path in ``fs``).

    ``add(batch)`` any number of times, then ``close()`` for the written files; on failure call
    ``discard()`` to delete what was written.
    """

    def __init__(
        self,
        fs: pafs.FileSystem,
        base: str,
        partition_by: list[str],
        target_file_rows: int,
        allowed_partitions: dict[str, set[str | None]] | None = None,
    ) -> None:
        self.fs = fs
        self.base = base
        self.partition_by = partition_by
        self.target_file_rows = max(1, target_file_rows)
        self.allowed = allowed_partitions
        self.task_id = uuid.uuid4().hex
        self.buffers: dict[tuple[str | None, ...], list[pa.Table]] = {}
        self.buffered_rows: dict[tuple[str | None, ...], int] = {}
        self.open_files: dict[tuple[str | None, ...], _OpenFile] = {}
        self.done: list[DataFile] = []
        self.created: list[str] = []
        self.file_seq = 0

    def add(self, batch: pa.RecordBatch) -> None:
        """Buffer ``batch``'s rows by partition; flush partitions with a full row group."""
        table = pa.Table.from_batches([batch])
        for key, part in self._split(table):
            self._check_allowed(key)
            self.buffers.setdefault(key, []).append(part)
            self.buffered_rows[key] = self.buffered_rows.get(key, 0) + part.num_rows
            if self.buffered_rows[key] >= min(ROW_GROUP_ROWS, self.target_file_rows):
                self._flush(key)

    def close(self) -> list[DataFile]:
        """Flush everything, close the files and describe them."""
        for key in list(self.buffers):
            self._flush(key)
        for key in list(self.open_files):
            self._finish(key)
        return self.done

    def discard(self) -> None:
        """Delete every file this writer created (after a failure)."""
        for open_file in self.open_files.values():
            open_file.stream.close()
        self.open_files.clear()
        delete_files(self.fs, self.base, self.created)

    def _split(self, table: pa.Table) -> Iterator[tuple[tuple[str | None, ...], pa.Table]]:
        if not self.partition_by:
            yield (), table
            return
        missing = [c for c in self.partition_by if c not in table.column_names]
        if missing:
            raise ValueError(f"partition columns {missing} not in the written columns {table.column_names}")
        indexed = table.select(self.partition_by).append_column("__row", pa.array(range(table.num_rows), pa.int64()))
        groups = indexed.group_by(self.partition_by, use_threads=False).aggregate([("__row", "list")])
        data = table.drop_columns(self.partition_by)
        for row in groups.to_pylist():
            key = tuple(format_partition_value(row[c]) for c in self.partition_by)
            yield key, data.take(row["__row_list"])

    def _check_allowed(self, key: tuple[str | None, ...]) -> None:
        if self.allowed is None:
            return
        for column, value in zip(self.partition_by, key, strict=True):
            if column in self.allowed and value not in self.allowed[column]:
                raise ValueError(
                    f"replace_where expected {column} in {sorted(map(str, self.allowed[column]))}, "
                    f"found a row with {column}={value!r} (writing {self.base})"
                )

    def _flush(self, key: tuple[str | None, ...]) -> None:
        chunks = self.buffers.pop(key, [])
        self.buffered_rows.pop(key, None)
        if not chunks:
            return
        table = pa.concat_tables(chunks)
        offset = 0
        while offset < table.num_rows:
            open_file = self.open_files.get(key) or self._open(key, table.schema)
            take = min(table.num_rows - offset, self.target_file_rows - open_file.rows)
            piece = table.slice(offset, take)
            open_file.writer.write_table(piece, row_group_size=ROW_GROUP_ROWS)
            for name in piece.column_names:
                if _has_min_max(piece.schema.field(name).type):
                    open_file.stats.setdefault(name, _ColumnStats()).update(piece.column(name))
                else:
                    open_file.stats.setdefault(name, _ColumnStats(comparable=False)).update(piece.column(name))
            open_file.rows += take
            offset += take
            if open_file.rows >= self.target_file_rows:
                self._finish(key)

    def _open(self, key: tuple[str | None, ...], schema: pa.Schema) -> _OpenFile:
        folders = [folder_name(c, v) for c, v in zip(self.partition_by, key, strict=True)]
        self.file_seq += 1
        name = f"part-{self.file_seq:05d}-{self.task_id}.c000.snappy.parquet"
        relative = "/".join([*folders, name])
        full = f"{self.base}/{relative}"
        if isinstance(self.fs, pafs.LocalFileSystem):
            self.fs.create_dir(full.rsplit("/", 1)[0], recursive=True)
        stream = self.fs.open_output_stream(full)
        self.created.append(relative)
        open_file = _OpenFile(relative, pq.ParquetWriter(stream, schema, compression="snappy"), stream)
        self.open_files[key] = open_file
        return open_file

    def _finish(self, key: tuple[str | None, ...]) -> None:
        open_file = self.open_files.pop(key)
        open_file.writer.close()
        open_file.stream.close()
        size = self.fs.get_file_info(f"{self.base}/{open_file.relative}").size
        self.done.append(
            DataFile(
                path=open_file.relative,
                size=int(size),
                partition_values=dict(zip(self.partition_by, key, strict=True)),
                num_records=open_file.rows,
                stats=stats_json(open_file.rows, open_file.stats),
                modification_time=int(time.time() * 1000),
            )
        )


def delete_files(fs: pafs.FileSystem, base: str, relative_paths: list[str]) -> None:
    """Delete files under ``base``, ignoring ones already gone."""
    for relative in relative_paths:
        try:
            fs.delete_file(f"{base}/{relative}")
        except FileNotFoundError:
            continue


def read_file(
    fs: pafs.FileSystem,
    path: str,
    schema: pa.Schema,
    partition_values: dict[str, str | None],
) -> pa.Table:
    """One data file as a table of exactly ``schema``: partition columns added from
    ``partition_values``, columns absent from the file (added later) filled with nulls."""
    file_schema = pq.read_schema(path, filesystem=fs)
    wanted = [f.name for f in schema if f.name in file_schema.names and f.name not in partition_values]
    data = pq.read_table(path, filesystem=fs, columns=wanted)
    columns = []
    for target in schema:
        if target.name in partition_values:
            value = parse_partition_value(partition_values[target.name], target.type)
            columns.append(pa.array([value] * data.num_rows, target.type))
        elif target.name in data.column_names:
            columns.append(data.column(target.name).cast(target.type))
        else:
            columns.append(pa.nulls(data.num_rows, target.type))
    return pa.Table.from_arrays(columns, schema=schema)
