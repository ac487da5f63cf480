"""Replay from raw: a FHIR entity's columns extracted again from the resources raw keeps.

Raw keeps every FHIR resource as received (``fhir_resource``), so a changed mapping (a new
column, a fixed FHIRPath, a new check) applies to resources already ingested without reading
landing again: :func:`replay_resources` evaluates the entity's current paths and checks on each
stored resource, on the executors, as the ingest would have.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from carelake.config import SourceEntity, SourceSystem
from carelake.ingest.read import CORRUPT_RECORD
from carelake.sources.canonical import RAW_METADATA_COLUMNS
from carelake.sources.fhir import ISSUES, RAW_COLUMNS, RESOURCE, ResourceMapper
from carelake.sources.naming import raw_column_name

_MINE = "_replay_mine"


def replay_resources(raw: DataFrame, system: SourceSystem, entity: SourceEntity) -> DataFrame:
    """``raw`` with the rows of ``system`` mapped again from their ``fhir_resource`` by ``entity``'s mapping.

    In: the raw table of ``entity``. Out: the same rows, with every column of ``raw`` plus any
    column the mapping adds. For ``system``'s rows that hold a resource, the mapped columns,
    ``fhir_issues`` and ``_row_hash`` are computed again (as the ingest computes them) and a
    column the mapping no longer has is null; the resource, its type and id, ``_source_file``,
    ``_batch_id`` and ``_ingested_at`` are kept. Other rows (other systems, a line that was not
    JSON) are unchanged.
    """
    if system.format != "fhir" or not entity.resource:
        raise ValueError(f"sources.{system.name}.entities.{entity.entity}: replay reads FHIR resources; "
                         f"this source's format is {system.format!r}")
    columns = list(dict.fromkeys([*raw.columns, *entity.paths]))
    kept = {*RAW_METADATA_COLUMNS, *RAW_COLUMNS, CORRUPT_RECORD}
    types = {f.name: f.dataType for f in raw.schema.fields}
    schema = StructType([StructField(c, types.get(c, StringType()), True) for c in columns])
    resource_type, paths, checks = entity.resource, dict(entity.paths), dict(entity.checks)
    width = len(paths)

    def remap(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        mapper = ResourceMapper(resource_type, paths, checks)
        for batch in batches:
            data = {name: batch.column(name).to_pylist() if name in batch.schema.names else [None] * batch.num_rows
                    for name in columns}
            for i, (mine, text) in enumerate(zip(batch.column(_MINE).to_pylist(), data[RESOURCE], strict=True)):
                if not mine or text is None:
                    continue
                row = mapper.row(json.loads(text), text)
                for name in columns:
                    if name not in kept and name not in paths:
                        data[name][i] = None
                for name, value in zip(paths, row[:width], strict=True):
                    data[name][i] = value
                data[ISSUES][i] = row[-1]
            yield pa.RecordBatch.from_arrays([pa.array(data[c], type=batch.schema.field(c).type if c in batch.schema.names
                                                        else pa.string()) for c in columns], names=columns)

    mine = (F.col("_source_system") == system.name) & F.col(RESOURCE).isNotNull()
    out = raw.withColumn(_MINE, mine).mapInArrow(remap, schema)
    # The hash the ingest gives a FHIR row: its mapped columns and the resource columns, in that order.
    hashed = [F.col(raw_column_name(c)) for c in (*paths, *RAW_COLUMNS)]
    row_hash = F.sha2(F.to_json(F.struct(*hashed, F.col(CORRUPT_RECORD))), 256)
    return out.withColumn("_row_hash", F.when((F.col("_source_system") == system.name) & F.col(RESOURCE).isNotNull(), row_hash)
                          .otherwise(F.col("_row_hash")))
