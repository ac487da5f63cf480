"""Schemas and partition values between Spark, Arrow and the Delta log.

Delta's schema JSON is Spark's ``StructType`` JSON, so schemas convert through JSON. Partition
values live in the log as strings; these helpers write and parse them as the Delta protocol says.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

import pyarrow as pa
from deltalake import Schema as DeltaSchema
from pyspark.sql.pandas.types import to_arrow_type
from pyspark.sql.types import StructField, StructType


def nullable(schema: StructType) -> StructType:
    """``schema`` with every top-level field nullable (tables accept rows missing a column)."""
    return StructType([StructField(f.name, f.dataType, True, f.metadata) for f in schema.fields])


def spark_schema_from_delta(schema: DeltaSchema) -> StructType:
    """The Spark schema of a Delta schema."""
    return StructType.fromJson(json.loads(schema.to_json()))


def delta_schema_from_spark(schema: StructType) -> DeltaSchema:
    """The Delta schema of a Spark schema."""
    return DeltaSchema.from_json(schema.json())


def arrow_schema_from_spark(schema: StructType) -> pa.Schema:
    """The Arrow schema Spark exchanges for ``schema`` (timestamps in UTC microseconds)."""
    return pa.schema(
        [pa.field(f.name, to_arrow_type(f.dataType, timezone="UTC"), f.nullable) for f in schema.fields]
    )


def format_partition_value(value: Any) -> str | None:
    """A Python value as a Delta partition value string (None stays None)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    return str(value)


def parse_partition_value(text: str | None, arrow_type: pa.DataType) -> Any:
    """A Delta partition value string as a Python value of ``arrow_type``."""
    if text is None:
        return None
    if pa.types.is_timestamp(arrow_type):
        naive = dt.datetime.fromisoformat(text.replace("Z", ""))
        return naive.replace(tzinfo=dt.timezone.utc) if arrow_type.tz else naive
    if pa.types.is_boolean(arrow_type):
        return text.lower() == "true"
    return pa.array([text], pa.string()).cast(arrow_type)[0].as_py()


def stats_value(value: Any) -> Any:
    """A column min/max as a JSON value of Delta file statistics."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value
