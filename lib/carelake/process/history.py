"""Every version the sources stated: ``processed/<entity>_history`` beside ``processed/<entity>``.

``processed/<entity>`` keeps the latest row per business key, which is what most readers want,
but the SCD2 dimensions need each state a key went through: a batch holding four quarterly
provider snapshots keeps only October's row there, so a January encounter could only be keyed
to October's attributes. The history table keeps, per business key and source file, the row that
file states (the latest by source time when one file repeats a key, as de-duplication does for
the latest table), merged on (business key, ``_source_file``). A file is ingested into one batch
only, so the rows kept do not depend on how files were grouped into batches: loading a year in
one batch leaves the same history as loading it file by file, and the model stage builds the
same SCD2 versions from it, in the order of the source's own effective time (``updated_at``).
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from carelake.sources.canonical import BUSINESS_KEYS

HISTORY_SUFFIX = "_history"
# The entities behind an SCD2 dimension (carelake.model.dimensions): dim_provider, dim_patient.
HISTORY_ENTITIES = ("providers", "patients")
SOURCE_FILE = "_source_file"


def history_table(entity: str) -> str | None:
    """Name of ``entity``'s history table, or None when no dimension is built from the entity."""
    return f"{entity}{HISTORY_SUFFIX}" if entity in HISTORY_ENTITIES else None


def history_keys(entity: str) -> tuple[str, ...]:
    """The columns a history row is unique on: the business key and the source file."""
    return (*BUSINESS_KEYS[entity], SOURCE_FILE)


def file_versions(valid: DataFrame, entity: str) -> DataFrame:
    """Valid rows of ``entity`` -> one row per business key and ``_source_file``: the latest by
    ``updated_at``, then ``_ingested_at`` (the same order de-duplication uses), columns unchanged.

    Rows whose key or file is null are kept apart by nothing and dropped: the row rules already
    quarantine null business keys, and raw rows always carry their file.
    """
    keys = list(history_keys(entity))
    order = [F.col(c).desc_nulls_last() for c in ("updated_at", "_ingested_at") if c in valid.columns]
    # The content as a last tie-break, so equal times in one file pick the same row on every run.
    content = [F.col(c).asc_nulls_last() for c in valid.columns if c not in keys and not c.startswith("_")]
    rank = F.row_number().over(Window.partitionBy(*keys).orderBy(*order, *content))
    complete = F.lit(True)
    for key in keys:
        complete &= F.col(key).isNotNull()
    return valid.where(complete).withColumn("_file_rank", rank).where(F.col("_file_rank") == 1).drop("_file_rank")
