"""Read landing files of one source layout, every column as a string, on local disk or S3.

Spark's own CSV/JSON readers cannot open ``s3://`` here (no hadoop-aws connector), so landing
files are read by the ``carelake_landing`` Python data source (registered in every session by
``pyspark_carelake_landing``): one input partition per 128 MB split of a file (a line belongs to
the split it starts in, as in Hadoop); executors read their split through pyarrow (local or
``S3FileSystem``) and parse it line by line into all-string Arrow batches. It follows Spark's
PERMISSIVE, single-line semantics: the first line of a CSV file is its header, blank lines are
skipped, an empty field is null, a line with too few or too many fields (or bad JSON) keeps
what parsed and its text in ``_corrupt_record``.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.types import StringType, StructField, StructType

from carelake.config import Config, SourceSystem
from carelake.sources import raw_column_name
from carelake.storage.objectstore import (
    arrow_filesystem,
    decode_options,
    encode_options,
    public_options,
)

CORRUPT_RECORD = "_corrupt_record"
SOURCE_FILE = "_source_file"
LANDING_FORMAT = "carelake_landing"
BATCH_ROWS = 10_000
SPLIT_BYTES = 128 * 1024 * 1024  # as Spark's spark.sql.files.maxPartitionBytes
_CHUNK = 4 * 1024 * 1024
_LINE_END = re.compile(rb"\r\n|\r|\n")
_BOM = b"\xef\xbb\xbf"


def read_source_files(
    spark: SparkSession, config: Config, system: SourceSystem, columns: Sequence[str], uris: Sequence[str]
) -> DataFrame:
    """Read ``uris`` (all with the header/keys ``columns``) as strings, keeping malformed lines.

    Returns the source columns, ``_corrupt_record`` (the text of a line that did not parse into
    the header's columns, else null) and ``_source_file`` (the file's URI as listed).
    """
    return (
        spark.read.format(LANDING_FORMAT)
        .option("files", json.dumps(list(uris)))
        .option("columns", json.dumps(list(columns)))
        .option("format", system.format)
        .option("delimiter", system.options.get("delimiter", ","))
        .option("encoding", system.options.get("encoding", "UTF-8"))
        .option("storage_options", encode_options(public_options(config)))
        .load()
    )


class LandingFileSource(DataSource):
    """Landing CSV / JSON-lines files as all-string rows; options: ``files``, ``columns`` (JSON
    lists), ``format`` (csv | json), ``delimiter``, ``encoding``, ``storage_options`` (no secrets)."""

    @classmethod
    def name(cls) -> str:
        """The format name, ``carelake_landing``."""
        return LANDING_FORMAT

    def schema(self) -> StructType:
        columns = json.loads(self.options["columns"])
        return StructType(
            [StructField(c, StringType(), True) for c in columns]
            + [StructField(CORRUPT_RECORD, StringType(), True), StructField(SOURCE_FILE, StringType(), True)]
        )

    def reader(self, schema: StructType) -> DataSourceReader:
        return LandingFileReader(self.options)


class _FileSplit(InputPartition):
    """Bytes ``[start, end)`` of one file: its lines are those that start in that range."""

    def __init__(self, uri: str, start: int, end: int) -> None:
        super().__init__((uri, start))
        self.uri, self.start, self.end = uri, start, end


class LandingFileReader(DataSourceReader):
    """Reads landing files in splits of at most ``split_bytes`` (default ``SPLIT_BYTES``), each into
    Arrow batches of at most ``BATCH_ROWS`` rows."""

    def __init__(self, options: Any) -> None:
        self.files: list[str] = json.loads(options["files"])
        self.columns: list[str] = json.loads(options["columns"])
        self.format = options.get("format", "csv")
        self.delimiter = options.get("delimiter", ",")
        self.encoding = options.get("encoding", "UTF-8")
        self.split_bytes = int(options.get("split_bytes") or SPLIT_BYTES)
        self.storage_options_text = options.get("storage_options")
        if codecs.lookup(self.encoding).name.startswith(("utf-16", "utf-32")):
            raise ValueError(f"landing files: encoding {self.encoding!r} is not supported: expected an ASCII-compatible one such as UTF-8")

    def partitions(self) -> Sequence[InputPartition]:
        splits: list[InputPartition] = []
        options = decode_options(self.storage_options_text)
        for uri in self.files:
            fs, path = arrow_filesystem(uri, options)
            size = fs.get_file_info(path).size or 0
            splits.extend(_FileSplit(uri, at, min(at + self.split_bytes, size)) for at in range(0, max(size, 1), self.split_bytes))
        return splits

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        split: _FileSplit = partition  # type: ignore[assignment]
        fs, path = arrow_filesystem(split.uri, decode_options(self.storage_options_text))
        parse = self._parse_csv if self.format == "csv" else self._parse_json
        names = [*self.columns, CORRUPT_RECORD, SOURCE_FILE]
        rows: list[list[str | None]] = []
        with fs.open_input_file(path) as handle:
            lines = _lines(handle, split.start, split.end, self.encoding)
            if self.format == "csv" and split.start == 0:
                next(lines, None)  # the header: columns were taken from it when the file was sniffed
            for line in lines:
                if isinstance(line, _Undecodable):
                    rows.append([*([None] * len(self.columns)), line.reason, split.uri])
                else:
                    rows.append([*parse(line), split.uri])
                if len(rows) == BATCH_ROWS:
                    yield _batch(rows, names)
                    rows = []
        if rows:
            yield _batch(rows, names)

    def _parse_csv(self, line: str) -> list[str | None]:
        # A line is already in memory whole, so the csv module's 128 KiB field cap protects nothing.
        csv.field_size_limit(max(csv.field_size_limit(), len(line) + 1))
        fields = next(csv.reader((line,), delimiter=self.delimiter, quotechar='"', doublequote=True, strict=False))
        width = len(self.columns)
        values: list[str | None] = [v or None for v in fields[:width]]
        values += [None] * (width - len(values))
        return [*values, None if len(fields) == width else line]

    def _parse_json(self, line: str) -> list[str | None]:
        try:
            record = json.loads(line, parse_float=_Number, parse_int=_Number, parse_constant=_Number)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            return [*([None] * len(self.columns)), line]
        return [*(_json_text(record.get(c)) for c in self.columns), None]


class _Number(str):
    """A JSON number kept as its source text (``1.50`` stays ``1.50``, as Spark reads it)."""


def _json_text(value: Any) -> str | None:
    """A top-level JSON value as Spark reads it into a string column: text as is, the rest as JSON."""
    if value is None or isinstance(value, str):
        return value
    return _json_dump(value)


def _json_dump(value: Any) -> str:
    # Spark keeps a nested value's source text; json.dumps' default ", " / ": " spacing matches
    # the usual layout, and numbers keep their text through _Number.
    if isinstance(value, _Number):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {_json_dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_json_dump(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


class _Undecodable(str):
    """A line that is not text in the source's encoding; ``reason`` names the bad byte, the text is
    decoded with replacement characters and kept only for the quarantine payload."""

    reason: str


def _decode(part: bytes, encoding: str) -> str:
    try:
        return part.decode(encoding)
    except UnicodeDecodeError as exc:
        # Replacement characters would pass as data: the line goes to _corrupt_record instead.
        text = part.decode(encoding, errors="replace")
        line = _Undecodable(text)
        line.reason = f"not decodable as {encoding} (byte 0x{part[exc.start]:02x} at offset {exc.start} of the line): {text}"
        return line


def _lines(handle: Any, start: int, end: int, encoding: str) -> Iterator[str]:
    """Non-blank, decoded lines of a seekable file that start at a byte offset in ``[start, end]``;
    a line that does not decode is an :class:`_Undecodable`.

    As Hadoop's line reader: a split not at the file's start skips its first (partial) line,
    which the previous split read to its end; any of \\n, \\r\\n, \\r ends a line.
    """
    handle.seek(start)
    position, buffer, skip = start, b"", start > 0
    while True:
        chunk = handle.read(_CHUNK)
        if position == 0 and not buffer and chunk.startswith(_BOM):
            chunk, position = chunk[len(_BOM):], len(_BOM)
        buffer += chunk
        offset = 0
        for match in _LINE_END.finditer(buffer):
            if chunk and match.end() == len(buffer) and buffer.endswith(b"\r"):
                break  # the \r may be the first half of a \r\n cut by the chunk
            if position + offset > end:
                return
            line, offset = buffer[offset:match.start()], match.end()
            if skip:
                skip = False
            elif line.strip():
                yield _decode(line, encoding)
        buffer, position = buffer[offset:], position + offset
        if not chunk:
            break
    if buffer.strip() and not skip and position <= end:
        yield _decode(buffer, encoding)


def _batch(rows: list[list[str | None]], names: list[str]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array(column, pa.string()) for column in zip(*rows, strict=True)], names=names)


def with_raw_metadata(frame: DataFrame, system_name: str, batch_id: str, ingested_at: datetime) -> DataFrame:
    """Name columns by the raw rule and add ``_source_system``, ``_ingested_at``, ``_batch_id``, ``_row_hash``.

    Input: source columns (strings), ``_corrupt_record`` and ``_source_file``. The row hash covers
    the source values (nulls included, in column order) so identical rows hash alike.
    """
    source_columns = [c for c in frame.columns if c not in (CORRUPT_RECORD, SOURCE_FILE)]
    renamed = frame.select(
        *[F.col(f"`{c}`").alias(raw_column_name(c)) for c in source_columns],
        F.col(CORRUPT_RECORD),
        F.col(SOURCE_FILE),
    )
    raw_names = [raw_column_name(c) for c in source_columns]
    return renamed.select(
        *raw_names,
        CORRUPT_RECORD,
        F.lit(system_name).alias("_source_system"),
        SOURCE_FILE,
        F.lit(ingested_at).cast("timestamp").alias("_ingested_at"),
        F.lit(batch_id).alias("_batch_id"),
        F.sha2(F.to_json(F.struct(*raw_names, CORRUPT_RECORD)), 256).alias("_row_hash"),
    )
