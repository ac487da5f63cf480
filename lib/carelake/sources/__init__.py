"""Source systems and the canonical schema every source is conformed to."""

from carelake.sources.canonical import (
    BUSINESS_KEYS,
    CANONICAL_SCHEMAS,
    ENTITIES,
    LINEAGE_COLUMNS,
    RAW_METADATA_COLUMNS,
    canonical_schema,
)
from carelake.sources.naming import raw_column_name

__all__ = [
    "BUSINESS_KEYS",
    "CANONICAL_SCHEMAS",
    "ENTITIES",
    "LINEAGE_COLUMNS",
    "RAW_METADATA_COLUMNS",
    "canonical_schema",
    "raw_column_name",
]
