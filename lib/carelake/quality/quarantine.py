"""Split checked rows into valid and quarantined, de-duplicate the valid ones, apply thresholds.

Counting promise per entity and run: ``rows_in = rows_valid + rows_quarantined +
duplicates_dropped``. Rows failing any rule are quarantined (duplicates among them too: each
bad row is evidence). Among valid rows, a second row with the same business key is dropped
and counted in ``duplicates_dropped`` whether it is an exact copy or a conflicting version
that lost to a later one; conflicts are also reported separately in the stage notes.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType, StructField, StructType, TimestampType

from carelake.quality.rules import FAILED_RULES
from carelake.sources.canonical import BUSINESS_KEYS, LINEAGE_COLUMNS, canonical_schema
from carelake.sources.conform import CORRUPT_RECORD, RAW_PAYLOAD

DUPLICATE = "_duplicate"  # null: kept; "exact": same key and content; "conflict": same key, lost to a later version
DEFAULT_MAX_QUARANTINE_RATE = 0.25
SOURCE_NOT_CONFIGURED = "source_not_configured"  # a raw row whose source system has no mapping for the entity

QUARANTINE_SCHEMA = StructType(
    [
        StructField("entity", StringType(), False),
        StructField("source_system", StringType(), True),
        StructField("source_file", StringType(), True),
        StructField("batch_id", StringType(), True),
        StructField("ingested_at", TimestampType(), True),
        StructField("reasons", ArrayType(StringType(), True), True),
        StructField("raw_payload", StringType(), True),
        StructField("quarantined_at", TimestampType(), True),
        StructField("run_id", StringType(), False),
    ]
)


def valid_rows(checked: DataFrame) -> DataFrame:
    """Rows whose ``_failed_rules`` is empty."""
    return checked.where(F.size(F.col(FAILED_RULES)) == 0)


def failed_rows(checked: DataFrame) -> DataFrame:
    """Rows that failed at least one rule."""
    return checked.where(F.size(F.col(FAILED_RULES)) > 0)


def unconfigured_rows(raw: DataFrame, systems: list[str]) -> DataFrame:
    """Raw rows of a source system with no mapping for this entity, as failed rows.

    In: raw rows (source columns plus raw metadata). Out: lineage, ``_failed_rules`` =
    ``["source_not_configured"]`` and ``_raw_payload`` (every non-metadata column), ready for
    :func:`quarantine_records`, so that such rows are counted rather than silently dropped.
    """
    payload = [F.col(c) for c in raw.columns if not c.startswith("_") or c == CORRUPT_RECORD]
    configured = F.coalesce(F.col("_source_system").isin(systems), F.lit(False))
    return raw.where(~configured).select(
        *(F.col(c) for c in LINEAGE_COLUMNS),
        F.array(F.lit(SOURCE_NOT_CONFIGURED)).alias(FAILED_RULES),
        F.to_json(F.struct(*payload), {"ignoreNullFields": "false"}).alias(RAW_PAYLOAD),
    )


def quarantine_records(failed: DataFrame, entity: str, run_id: str) -> DataFrame:
    """In: failed rows (with lineage, ``_failed_rules``, ``_raw_payload``). Out: ``QUARANTINE_SCHEMA`` rows."""
    return failed.select(
        F.lit(entity).alias("entity"),
        F.col("_source_system").alias("source_system"),
        F.col("_source_file").alias("source_file"),
        F.col("_batch_id").alias("batch_id"),
        F.col("_ingested_at").cast(TimestampType()).alias("ingested_at"),
        F.col(FAILED_RULES).alias("reasons"),
        F.col(RAW_PAYLOAD).alias("raw_payload"),
        F.current_timestamp().alias("quarantined_at"),
        F.lit(run_id).alias("run_id"),
    )


def mark_duplicates(valid: DataFrame, entity: str) -> DataFrame:
    """Add ``_duplicate``: null on the row kept per business key, else ``exact`` or ``conflict``.

    The kept row is the latest by ``updated_at`` (the source's own change time; absent for
    procedures), then ``_ingested_at``, then ``_source_file``. ``exact``: same business key and
    same canonical content as a row ranked before it. ``conflict``: same key, different content,
    and not the latest.
    """
    keys = list(BUSINESS_KEYS[entity])
    content = [f.name for f in canonical_schema(entity).fields if f.name not in LINEAGE_COLUMNS]
    latest = [F.col(c).desc_nulls_last() for c in ("updated_at", "_ingested_at", "_source_file") if c in valid.columns]
    by_content = Window.partitionBy(*content).orderBy(*latest)
    first_of_content = "_first_of_content"
    by_key = Window.partitionBy(*keys).orderBy(F.col(first_of_content).desc(), *latest)
    return (
        valid.withColumn(first_of_content, F.row_number().over(by_content) == 1)
        .withColumn(
            DUPLICATE,
            F.when(~F.col(first_of_content), F.lit("exact")).when(F.row_number().over(by_key) > 1, F.lit("conflict")),
        )
        .drop(first_of_content)
    )


def max_quarantine_rate(quality: dict[str, Any], entity: str) -> float:
    """The quarantine-rate limit of ``entity`` from the ``quality`` config section.

    Reads ``quality.entities.<entity>.max_quarantine_rate``, else ``quality.max_quarantine_rate``,
    else ``DEFAULT_MAX_QUARANTINE_RATE``.
    """
    per_entity = ((quality.get("entities") or {}).get(entity) or {}).get("max_quarantine_rate")
    value = per_entity if per_entity is not None else quality.get("max_quarantine_rate", DEFAULT_MAX_QUARANTINE_RATE)
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"config quality max_quarantine_rate for {entity!r}: expected a number in 0..1, found {value!r}") from None
    if not 0 <= rate <= 1:
        raise ValueError(f"config quality max_quarantine_rate for {entity!r}: expected a number in 0..1, found {rate}")
    return rate
