"""Read landing files of one source layout with Spark, every column as a string."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from carelake.config import SourceSystem
from carelake.sources import raw_column_name

CORRUPT_RECORD = "_corrupt_record"


def read_source_files(
    spark: SparkSession, system: SourceSystem, columns: Sequence[str], uris: Sequence[str]
) -> DataFrame:
    """Read ``uris`` (all with the header/keys ``columns``) as strings, keeping malformed lines.

    A line Spark cannot split into the header's columns (truncated, unterminated quote) is
    kept with its text in ``_corrupt_record`` so processing can quarantine it with a reason.
    """
    schema = StructType(
        [StructField(c, StringType(), True) for c in columns]
        + [StructField(CORRUPT_RECORD, StringType(), True)]
    )
    reader = spark.read.schema(schema).option("mode", "PERMISSIVE").option(
        "columnNameOfCorruptRecord", CORRUPT_RECORD
    )
    if system.format == "csv":
        frame = reader.csv(
            list(uris),
            header=True,
            sep=system.options.get("delimiter", ","),
            encoding=system.options.get("encoding", "UTF-8"),
            quote='"',
            escape='"',
            multiLine=False,
            enforceSchema=True,
        )
    else:
        frame = reader.option("encoding", system.options.get("encoding", "UTF-8")).json(list(uris))
    return frame.withColumn("_source_file", F.col("_metadata.file_path"))


def with_raw_metadata(frame: DataFrame, system_name: str, batch_id: str, ingested_at: datetime) -> DataFrame:
    """Name columns by the raw rule and add ``_source_system``, ``_ingested_at``, ``_batch_id``, ``_row_hash``.

    Input: source columns (strings), ``_corrupt_record`` and ``_source_file``. The row hash covers
    the source values (nulls included, in column order) so identical rows hash alike.
    """
    source_columns = [c for c in frame.columns if c not in (CORRUPT_RECORD, "_source_file")]
    renamed = frame.select(
        *[F.col(f"`{c}`").alias(raw_column_name(c)) for c in source_columns],
        F.col(CORRUPT_RECORD),
        F.col("_source_file"),
    )
    raw_names = [raw_column_name(c) for c in source_columns]
    return renamed.select(
        *raw_names,
        CORRUPT_RECORD,
        F.lit(system_name).alias("_source_system"),
        "_source_file",
        F.lit(ingested_at).cast("timestamp").alias("_ingested_at"),
        F.lit(batch_id).alias("_batch_id"),
        F.sha2(F.to_json(F.struct(*raw_names, CORRUPT_RECORD)), 256).alias("_row_hash"),
    )
