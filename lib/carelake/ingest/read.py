"""Read landing files of one source layout, every column as a string, on local disk or S3.

Spark's own CSV/JSON readers cannot open ``s3://`` here (no hadoop-aws connector), so landing
files are read by the ``carelake_landing`` Python data source: one input partition per file,
executors stream the file through pyarrow (local or ``S3FileSystem``) and parse it line by line
into all-string Arrow batches (the source is registered in every session by
``pyspark_carelake_landing``). It follows Spark's PERMISSIVE, single-line semantics: the first
line of a CSV file is its header, blank lines are skipped, an empty field is null, a line with
too few or too many fields (or bad JSON) keeps what parsed and its text in ``_corrupt_record``.
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


class _FilePartition(InputPartition):
    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.uri = uri


class LandingFileReader(DataSourceReader):
    """Reads one landing file per partition into Arrow batches of at most ``BATCH_ROWS`` rows."""

    def __init__(self, options: Any) -> None:
        self.files: list[str] = json.loads(options["files"])
        self.columns: list[str] = json.loads(options["columns"])
        self.format = options.get("format", "csv")
        self.delimiter = options.get("delimiter", ",")
        self.encoding = options.get("encoding", "UTF-8")
        self.storage_options_text = options.get("storage_options")
        if codecs.lookup(self.encoding).name.startswith(("utf-16", "utf-32")):
            raise ValueError(f"landing files: encoding {self.encoding!r} is not supported: expected an ASCII-compatible one such as UTF-8")

    def partitions(self) -> Sequence[InputPartition]:
        return [_FilePartition(uri) for uri in self.files]

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        uri = partition.uri  # type: ignore[attr-defined]
        fs, path = arrow_filesystem(uri, decode_options(self.storage_options_text))
        parse = self._parse_csv if self.format == "csv" else self._parse_json
        names = [*self.columns, CORRUPT_RECORD, SOURCE_FILE]
        rows: list[list[str | None]] = []
        with fs.open_input_stream(path) as stream:
            lines = _lines(stream, self.encoding)
            if self.format == "csv":
                next(lines, None)  # the header: columns were taken from it when the file was sniffed
            for line in lines:
                rows.append([*parse(line), uri])
                if len(rows) == BATCH_ROWS:
                    yield _batch(rows, names)
                    rows = []
        if rows:
            yield _batch(rows, names)

    def _parse_csv(self, line: str) -> list[str | None]:
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


def _lines(stream: Any, encoding: str) -> Iterator[str]:
    """Non-blank lines of a byte stream (any of \\n, \\r\\n, \\r ends a line), decoded, in chunks."""
    pending = b""
    first = True
    while chunk := stream.read(_CHUNK):
        if first:
            chunk, first = chunk.removeprefix(_BOM), False
        parts = _LINE_END.split(pending + chunk)
        # A chunk ending in \r may be cut inside \r\n: keep that \r with the pending tail.
        pending = parts.pop()
        if chunk.endswith(b"\r") and parts:
            pending = parts.pop() + b"\r"
        for part in parts:
            if part.strip():
                yield part.decode(encoding, errors="replace")
    tail = pending.rstrip(b"\r")
    if tail.strip():
        yield tail.decode(encoding, errors="replace")


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
