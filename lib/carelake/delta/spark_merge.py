"""Merge computed in Spark for large tables: rewrite only the target files that can match.

The driver holds only file lists: candidate files are found from the Delta log (partition values
when every partition column is a merge key, then the first key's min/max file statistics), read
and joined with the source on executors, written back as new files, and the candidates' removal
plus the new files are committed as ONE Delta transaction against the snapshot the merge read.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from carelake.delta.spec import MergeSpec, Rows
from carelake.delta.types import format_partition_value


def candidate_files(
    files: list[dict[str, Any]],
    partition_columns: list[str],
    source_partitions: set[tuple[str | None, ...]] | None,
    key_column: str,
    key_range: tuple[Any, Any] | None,
) -> list[dict[str, Any]]:
    """The files of ``files`` (log entries) that may hold rows matching the source.

    ``source_partitions``: the source's partition value tuples (None: do not prune on them);
    ``key_range``: the source's (min, max) of ``key_column`` (None: do not prune on it).
    """
    kept = []
    for f in files:
        if source_partitions is not None:
            values = tuple(f["partition_values"].get(c) for c in partition_columns)
            if values not in source_partitions:
                continue
        if key_range is not None and _outside(f, key_column, key_range):
            continue
        kept.append(f)
    return kept


def _outside(file: dict[str, Any], column: str, key_range: tuple[Any, Any]) -> bool:
    low, high = file["min"].get(column), file["max"].get(column)
    if low is None or high is None or key_range[0] is None:
        return False
    try:
        return bool(high < key_range[0] or low > key_range[1])
    except TypeError:
        return False


def source_partitions(source: DataFrame, partition_columns: list[str], keys: list[str]) -> set[tuple] | None:
    """Distinct partition tuples of ``source`` (as log strings) when every partition column is a
    key, so a key's rows cannot sit in another partition; else None."""
    if not partition_columns or not set(partition_columns) <= set(keys):
        return None
    rows = source.select(*partition_columns).distinct().collect()
    return {tuple(format_partition_value(r[c]) for c in partition_columns) for r in rows}


def key_range(source: DataFrame, key: str) -> tuple[Any, Any]:
    """(min, max) of ``key`` in ``source``."""
    row = source.agg(F.min(key).alias("low"), F.max(key).alias("high")).collect()[0]
    return row["low"], row["high"]


def merged_rows(target: DataFrame, source: DataFrame, spec: MergeSpec) -> tuple[DataFrame, DataFrame, int]:
    """(new content of the candidate files, rows to add without touching files, rows deleted).

    When the merge updates or deletes, the candidates are rewritten: their rows neither replaced
    nor deleted, the matched source rows that meet the update condition and (with insert) the
    unmatched source rows. Otherwise nothing is rewritten and unmatched source rows are appended.
    """
    keys = list(spec.keys)
    nothing = source.limit(0)
    target_keys = target.select(*keys).distinct()
    inserts = source.join(target_keys, keys, "left_anti")
    deletes = spec.delete_unmatched is not False
    if not spec.update and not deletes:
        return nothing, inserts if spec.insert else nothing, 0
    condition = spec.update_condition_column()
    if not spec.update:
        replaced = nothing.select(*keys)
    elif condition is None:
        replaced = source.join(target_keys, keys, "left_semi").select(*keys)
    else:
        on = [F.col(f"s.`{k}`") == F.col(f"t.`{k}`") for k in keys]
        replaced = (
            source.alias("s").join(target.alias("t"), on).where(condition)
            .select(*[F.col(f"s.`{k}`").alias(k) for k in keys]).distinct()
        )
    kept = target.join(replaced, keys, "left_anti")
    deleted = 0
    if deletes:
        hit = "_carelake_matched"
        flagged = kept.join(source.select(*keys).distinct().withColumn(hit, F.lit(True)), keys, "left")
        doomed = F.col(hit).isNull()
        if isinstance(spec.delete_unmatched, Rows):
            doomed = doomed & F.coalesce(spec.delete_unmatched.column(), F.lit(False))
        flagged = flagged.withColumn(hit, doomed).localCheckpoint(eager=True)
        deleted = flagged.where(F.col(hit)).count()
        kept = flagged.where(~F.col(hit)).drop(hit)
    rewritten = kept.unionByName(source.join(replaced, keys, "left_semi"))
    if spec.insert:
        rewritten = rewritten.unionByName(inserts)
    return rewritten, nothing, deleted


def match_counts(target: DataFrame, source: DataFrame, keys: list[str]) -> tuple[int, int]:
    """(source rows matching a target row, source rows matching none) in one Spark job."""
    hits = target.select(*keys).distinct().withColumn("_carelake_hit", F.lit(True))
    row = (
        source.join(hits, keys, "left")
        .agg(
            F.count_if(F.col("_carelake_hit").isNotNull()).alias("matched"),
            F.count_if(F.col("_carelake_hit").isNull()).alias("unmatched"),
        )
        .collect()[0]
    )
    return int(row["matched"]), int(row["unmatched"])
