"""Read FHIR R4 landing files of one entity on the executors: bulk NDJSON and Bundles.

The ``carelake_fhir`` Python data source gives one input partition per 128 MB split of an
NDJSON file (one resource, or a Bundle, per line; as the landing reader does) and one per
Bundle file (a JSON document, read whole). Each executor parses its resources, keeps those of
the entity's resource type (every line of an NDJSON file is a row: a line of another type is
reported, not dropped), evaluates the mapping's FHIRPath expressions and validates the
resource (:class:`carelake.sources.fhir.ResourceMapper`). A line or file that is not JSON is
one row with its text in ``_corrupt_record``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.datasource import DataSource, DataSourceReader, InputPartition
from pyspark.sql.types import StringType, StructField, StructType

from carelake.config import Config, SourceEntity, SourceSystem
from carelake.ingest.read import (
    BATCH_ROWS,
    CORRUPT_RECORD,
    SOURCE_FILE,
    SPLIT_BYTES,
    _batch,
    _lines,
    _Undecodable,
)
from carelake.sources.fhir import RAW_COLUMNS, ResourceMapper, resources_in
from carelake.storage.objectstore import (
    arrow_filesystem,
    decode_options,
    encode_options,
    public_options,
)

FHIR_FORMAT = "carelake_fhir"
NDJSON, BUNDLE = "ndjson", "bundle"
_REGISTERED: set[int] = set()


def fhir_columns(entity: SourceEntity) -> list[str]:
    """The raw columns a FHIR entity's files give: its canonical columns, then the resource's own."""
    return [*entity.paths, *RAW_COLUMNS]


def read_fhir_files(
    spark: SparkSession, config: Config, system: SourceSystem, entity: SourceEntity, files: Sequence[tuple[str, str]]
) -> DataFrame:
    """Read ``files`` (URI, ``ndjson`` | ``bundle``) of ``system``'s ``entity`` as raw string rows.

    Out: :func:`fhir_columns`, ``_corrupt_record`` and ``_source_file``.
    """
    if id(spark) not in _REGISTERED:  # registering again in a session only logs a warning
        spark.dataSource.register(FhirFileSource)
        _REGISTERED.add(id(spark))
    return (
        spark.read.format(FHIR_FORMAT)
        .option("files", json.dumps([list(f) for f in files]))
        .option("resource", entity.resource or "")
        .option("paths", json.dumps(entity.paths))
        .option("checks", json.dumps(entity.checks))
        .option("encoding", system.options.get("encoding", "UTF-8"))
        .option("storage_options", encode_options(public_options(config)))
        .load()
    )


class FhirFileSource(DataSource):
    """FHIR NDJSON / Bundle files as raw rows; options: ``files`` (JSON list of [uri, kind]),
    ``resource``, ``paths`` and ``checks`` (JSON objects), ``encoding``, ``storage_options``."""

    @classmethod
    def name(cls) -> str:
        """The format name, ``carelake_fhir``."""
        return FHIR_FORMAT

    def schema(self) -> StructType:
        columns = [*json.loads(self.options["paths"]), *RAW_COLUMNS, CORRUPT_RECORD, SOURCE_FILE]
        return StructType([StructField(c, StringType(), True) for c in columns])

    def reader(self, schema: StructType) -> DataSourceReader:
        return FhirFileReader(self.options)


class _Part(InputPartition):
    """Bytes ``[start, end)`` of an NDJSON file, or a whole Bundle file (``kind`` bundle)."""

    def __init__(self, uri: str, kind: str, start: int, end: int) -> None:
        super().__init__((uri, start))
        self.uri, self.kind, self.start, self.end = uri, kind, start, end


class FhirFileReader(DataSourceReader):
    """Reads the parts of FHIR files into Arrow batches of at most ``BATCH_ROWS`` rows."""

    def __init__(self, options: Any) -> None:
        self.files: list[list[str]] = json.loads(options["files"])
        self.resource = options["resource"]
        self.paths: dict[str, str] = json.loads(options["paths"])
        self.checks: dict[str, str] = json.loads(options["checks"])
        self.encoding = options.get("encoding", "UTF-8")
        self.storage_options_text = options.get("storage_options")

    def partitions(self) -> Sequence[InputPartition]:
        parts: list[InputPartition] = []
        options = decode_options(self.storage_options_text)
        for uri, kind in self.files:
            fs, path = arrow_filesystem(uri, options)
            size = fs.get_file_info(path).size or 0
            if kind == BUNDLE:
                parts.append(_Part(uri, kind, 0, size))
            else:
                parts.extend(_Part(uri, kind, at, min(at + SPLIT_BYTES, size)) for at in range(0, max(size, 1), SPLIT_BYTES))
        return parts

    def read(self, partition: InputPartition) -> Iterator[pa.RecordBatch]:
        part: _Part = partition  # type: ignore[assignment]
        mapper = ResourceMapper(self.resource, self.paths, self.checks)
        names = [*self.paths, *RAW_COLUMNS, CORRUPT_RECORD, SOURCE_FILE]
        width = len(self.paths) + len(RAW_COLUMNS)
        fs, path = arrow_filesystem(part.uri, decode_options(self.storage_options_text))
        rows: list[list[str | None]] = []
        with fs.open_input_file(path) as handle:
            if part.kind == BUNDLE:
                documents = [_whole_document(handle.read(), self.encoding)]
            else:
                documents = (_line_document(line) for line in _lines(handle, part.start, part.end, self.encoding))
            for document, text in documents:
                if document is None:
                    rows.append([*([None] * width), text, part.uri])
                else:
                    single = not (isinstance(document, dict) and document.get("resourceType") == "Bundle")
                    for resource in resources_in(document, self.resource):
                        rows.append([*mapper.row(resource, text if single and part.kind == NDJSON else None), None, part.uri])
                if len(rows) >= BATCH_ROWS:
                    yield _batch(rows, names)
                    rows = []
        if rows:
            yield _batch(rows, names)


def _line_document(line: str) -> tuple[Any, str]:
    """(parsed JSON, line); parsed is None for a line that is not JSON (text: why, for quarantine)."""
    if isinstance(line, _Undecodable):
        return None, line.reason
    try:
        return json.loads(line), line
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg} at column {exc.colno}): {line}"


def _whole_document(data: bytes, encoding: str) -> tuple[Any, str]:
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode(encoding)
    except UnicodeDecodeError as exc:
        return None, f"not decodable as {encoding} (byte offset {exc.start})"
    try:
        return json.loads(text), text
    except json.JSONDecodeError as exc:
        return None, f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): {text[:200]}"
