"""Slowly-changing dimensions, type 2: plan the rows to write, then apply them in one merge.

A dimension table holds one row per version of a natural key:

``<surrogate_col>`` (bigint, ``xxhash64`` of natural key + ``valid_from``: stable, so re-planning
the same version yields the same key), the natural key columns, the tracked attributes,
``valid_from`` (the update's effective time), ``valid_to`` (the next version's ``valid_from``;
**open versions carry 9999-12-31 00:00:00, never null**, so "valid at t" is always
``valid_from <= t < valid_to``), ``is_current`` and ``change_hash`` (sha2-256 over the tracked
attributes).

Planning rebuilds the history of the affected keys only (keys in the batch, plus every current
key for a full snapshot) from points in time: the existing versions, the batch's updates and
end-dates ("tombstones"). Sorted by time, a point whose attributes equal the previous point's
adds nothing; each remaining version ends where the next point starts. The rows that differ from
the table are the plan. Existing versions are never dropped, so the plan is written with one
merge on (natural key, ``valid_from``) that updates and inserts, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from carelake.delta.spec import MergeSpec

if TYPE_CHECKING:
    from carelake.delta import CommitResult, DeltaTables

OPEN_END = "9999-12-31 00:00:00"
VALID_FROM, VALID_TO, IS_CURRENT, CHANGE_HASH = "valid_from", "valid_to", "is_current", "change_hash"

# Point kinds, in the order they sort at the same instant: a version before the end-date that
# closes it (a snapshot may end a version the instant it starts).
_VERSION, _TOMBSTONE = 0, 1
# Marks a tombstone's hash so it never equals a version's and two end-dates in a row collapse.
_TOMBSTONE_HASH = "<end-dated>"
_NULL_MARK = "\u0000"


@dataclass(frozen=True)
class Scd2Spec:
    """What makes a dimension type 2: its keys, tracked attributes and effective-time column."""

    natural_key: tuple[str, ...]
    tracked: tuple[str, ...]
    effective_col: str
    surrogate_col: str
    snapshot: bool = False

    @classmethod
    def from_config(cls, block: Mapping[str, Any], where: str = "model.dimensions") -> Scd2Spec:
        """A spec from a config block with keys ``natural_key``, ``tracked`` (lists or a single
        name), ``effective_col``, ``surrogate_col`` and optional ``snapshot`` (default false).
        ``where`` names the block in errors."""
        missing = [k for k in ("natural_key", "tracked", "effective_col", "surrogate_col") if not block.get(k)]
        if missing:
            raise ValueError(f"{where}: required key(s) {', '.join(missing)} missing, found {sorted(block)}")

        def names(key: str) -> tuple[str, ...]:
            value = block[key]
            return (value,) if isinstance(value, str) else tuple(str(v) for v in value)

        return cls(
            natural_key=names("natural_key"),
            tracked=names("tracked"),
            effective_col=str(block["effective_col"]),
            surrogate_col=str(block["surrogate_col"]),
            snapshot=bool(block.get("snapshot", False)),
        )

    def dimension_schema(self, updates_schema: StructType) -> StructType:
        """The dimension table's schema, taking key and attribute types from the updates."""
        types = {f.name: f.dataType for f in updates_schema.fields}
        return StructType(
            [StructField(self.surrogate_col, LongType())]
            + [StructField(c, types[c]) for c in (*self.natural_key, *self.tracked)]
            + [
                StructField(VALID_FROM, TimestampType()),
                StructField(VALID_TO, TimestampType()),
                StructField(IS_CURRENT, BooleanType()),
                StructField(CHANGE_HASH, StringType()),
            ]
        )


def open_end() -> Column:
    """The ``valid_to`` of open versions, as a timestamp in the session time zone."""
    return F.lit(OPEN_END).cast("timestamp")


def change_hash(tracked: list[str]) -> Column:
    """sha2-256 over the tracked attributes as text; null and '' hash differently."""
    parts = [F.coalesce(F.col(c).cast("string"), F.lit(_NULL_MARK)) for c in tracked]
    return F.sha2(F.concat_ws("\u0001", *parts), 256)


def _require_columns(df: DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {', '.join(missing)}; found {', '.join(df.columns)}")


def plan_scd2(
    current: DataFrame,
    updates: DataFrame,
    natural_key: list[str],
    tracked: list[str],
    effective_col: str,
    snapshot: bool = False,
    surrogate_col: str = "sk",
) -> DataFrame:
    """The dimension rows to write so that ``current`` reflects ``updates``.

    In: ``current``, the dimension (surrogate, natural key, tracked, ``valid_from``, ``valid_to``,
    ``is_current``, ``change_hash``; empty for a new dimension); ``updates``, rows with the
    natural key, tracked attributes and ``effective_col`` (rows with a null effective time cannot
    be placed in history and are left out). With ``snapshot`` the updates are the full set of
    keys: a current key missing from them is end-dated at the latest effective time of the batch
    (or its own ``valid_from`` if later), never deleted.

    Out: rows in the dimension's columns, one per (natural key, ``valid_from``) to insert or
    update — new versions and versions whose ``valid_to`` / ``is_current`` / attributes change.
    Unchanged versions are not in it, so re-planning an applied batch yields no rows. Several
    updates of one key keep each change as history in effective order; at the same effective
    time the one with the greatest ``change_hash`` wins (deterministic, order-independent). A
    late update that matches the next version's attributes still starts its own version, so
    point-in-time lookups stay exact without deleting the later row.
    """
    key, attrs = list(natural_key), list(tracked)
    _require_columns(updates, [*key, *attrs, effective_col], "plan_scd2 updates")
    _require_columns(current, [*key, *attrs, VALID_FROM, VALID_TO, IS_CURRENT, CHANGE_HASH], "plan_scd2 current")
    point_cols = [*key, *attrs, "ts", "kind", "from_update", CHANGE_HASH]

    new_points = (
        updates.where(F.col(effective_col).isNotNull())
        .select(*key, *attrs, F.col(effective_col).cast("timestamp").alias("ts"))
        .withColumn(CHANGE_HASH, change_hash(attrs))
        .dropDuplicates([*key, "ts", CHANGE_HASH])
        .withColumn("kind", F.lit(_VERSION))
        .withColumn("from_update", F.lit(True))
        .select(*point_cols)
    )
    batch_keys = new_points.select(*key).distinct()
    if snapshot:
        # Every current key absent from the snapshot gets an end-date point.
        as_of = updates.agg(F.max(F.col(effective_col).cast("timestamp")).alias("as_of"))
        ended = (
            current.where(F.col(IS_CURRENT))
            .join(batch_keys, key, "left_anti")
            .crossJoin(as_of)
            .select(
                *key,
                *[F.lit(None).cast(current.schema[c].dataType).alias(c) for c in attrs],
                F.greatest(F.col(VALID_FROM), F.coalesce(F.col("as_of"), F.col(VALID_FROM))).alias("ts"),
                F.lit(_TOMBSTONE).alias("kind"),
                F.lit(True).alias("from_update"),
                F.lit(_TOMBSTONE_HASH).alias(CHANGE_HASH),
            )
        )
        affected_keys = batch_keys.unionByName(ended.select(*key))
    else:
        ended = None
        affected_keys = batch_keys

    existing = current.join(affected_keys, key, "left_semi")
    old_versions = existing.select(
        *key, *attrs, F.col(VALID_FROM).alias("ts"), F.lit(_VERSION).alias("kind"),
        F.lit(False).alias("from_update"), CHANGE_HASH,
    )
    # A closed version with no successor starting at its end was end-dated: keep that gap.
    starts = existing.select(*key, F.col(VALID_FROM).alias(VALID_TO))
    old_tombstones = (
        existing.where(F.col(VALID_TO) != open_end())
        .join(starts, [*key, VALID_TO], "left_anti")
        .select(
            *key, *[F.lit(None).cast(current.schema[c].dataType).alias(c) for c in attrs],
            F.col(VALID_TO).alias("ts"), F.lit(_TOMBSTONE).alias("kind"),
            F.lit(False).alias("from_update"), F.lit(_TOMBSTONE_HASH).alias(CHANGE_HASH),
        )
    )
    points = old_versions.unionByName(old_tombstones).unionByName(new_points)
    if ended is not None:
        points = points.unionByName(ended)

    # At one instant an update replaces the existing version (a correction) and cancels an
    # end-date there; among updates the greatest hash wins.
    at_instant = Window.partitionBy(*key, "ts")
    same_slot = Window.partitionBy(*key, "ts", "kind").orderBy(F.col("from_update").desc(), F.col(CHANGE_HASH).desc())
    points = (
        points.withColumn("update_here", F.max(F.col("from_update") & (F.col("kind") == _VERSION)).over(at_instant))
        .withColumn("replaces_existing", F.max(~F.col("from_update") & (F.col("kind") == _VERSION)).over(at_instant))
        .where(~((F.col("kind") == _TOMBSTONE) & F.col("update_here") & ~F.col("from_update")))
        .withColumn("slot_rank", F.row_number().over(same_slot))
        .where(F.col("slot_rank") == 1)
    )

    in_time = Window.partitionBy(*key).orderBy("ts", "kind")
    previous_hash = F.lag(CHANGE_HASH).over(in_time)
    redundant = (
        # A new point equal to the one before adds nothing (unless it rewrites an existing row).
        (F.col("from_update") & ~F.col("replaces_existing") & previous_hash.eqNullSafe(F.col(CHANGE_HASH)))
        # An end-date with nothing open before it ends nothing.
        | ((F.col("kind") == _TOMBSTONE) & (previous_hash.isNull() | (previous_hash == _TOMBSTONE_HASH)))
    )
    kept = points.withColumn("redundant", redundant).where(~F.col("redundant"))
    next_ts = F.lead("ts").over(in_time)
    rebuilt = (
        kept.withColumn(VALID_TO, F.coalesce(next_ts, open_end()))
        .withColumn(IS_CURRENT, next_ts.isNull())
        .where(F.col("kind") == _VERSION)
        .select(*key, *attrs, F.col("ts").alias(VALID_FROM), VALID_TO, IS_CURRENT, CHANGE_HASH)
    )

    before = existing.select(
        *key, VALID_FROM, F.col(VALID_TO).alias("_old_to"), F.col(IS_CURRENT).alias("_old_current"),
        F.col(CHANGE_HASH).alias("_old_hash"),
    )
    changed = (
        rebuilt.join(before, [*key, VALID_FROM], "left")
        .where(
            F.col("_old_hash").isNull()
            | (F.col("_old_to") != F.col(VALID_TO))
            | (F.col("_old_current") != F.col(IS_CURRENT))
            | (F.col("_old_hash") != F.col(CHANGE_HASH))
        )
    )
    return changed.select(
        F.xxhash64(*key, VALID_FROM).alias(surrogate_col),
        *key, *attrs, VALID_FROM, VALID_TO, IS_CURRENT, CHANGE_HASH,
    )


def apply_scd2(
    tables: DeltaTables,
    uri: str,
    updates: DataFrame,
    spec: Scd2Spec,
    commit_metadata: dict[str, str] | None = None,
) -> CommitResult | None:
    """Plan ``updates`` against the dimension at ``uri`` and write the plan.

    In: the table layer, the dimension's URI, update rows (see :func:`plan_scd2`), the spec.
    Out: the commit — one merge on (natural key, ``valid_from``) that updates closed versions and
    inserts new ones (an append when the table does not exist yet) — or ``None`` when the plan is
    empty: nothing changes, so nothing is committed and no Delta version is added.
    """
    key = list(spec.natural_key)
    schema = spec.dimension_schema(updates.schema)
    spark = updates.sparkSession
    if tables.exists(uri):
        # Pin the version read so the plan is computed from the table as it was.
        current = tables.read(uri, version=tables.version(uri))
    else:
        current = spark.createDataFrame([], schema)
    plan = plan_scd2(
        current, updates, key, list(spec.tracked), spec.effective_col, spec.snapshot, spec.surrogate_col
    ).localCheckpoint(eager=True)
    if plan.isEmpty():
        return None
    if not tables.exists(uri):
        return tables.write(plan, uri, mode="append", commit_metadata=commit_metadata)
    return tables.merge(plan, uri, MergeSpec((*key, VALID_FROM)), commit_metadata=commit_metadata)
