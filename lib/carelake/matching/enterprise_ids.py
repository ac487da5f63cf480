"""Stable enterprise patient ids: clusters of this run -> the id each record keeps.

A cluster takes the earliest issued id any of its members already holds, so a patient keeps
their id when new records of them arrive, and two clusters that merge keep the older id. When a
cluster splits, the part holding more records of the old id keeps it (ties: the part with the
smallest ``patient_key``) and the other parts get new ids. A new id is derived from the smallest
``patient_key`` of its cluster, so the same records clustered the same way get the same id.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

ENTERPRISE_ID = "enterprise_patient_id"
ID_PREFIX = "EP"
LINK_COLUMNS = ("patient_key", ENTERPRISE_ID, "id_issued_at", "cluster_size", "previous_enterprise_patient_id")


def new_enterprise_id(first_key: Column) -> Column:
    """``EP`` + 16 hex digits of SHA-256 of the cluster's smallest ``patient_key``."""
    return F.concat(F.lit(ID_PREFIX), F.upper(F.substring(F.sha2(first_key, 256), 1, 16)))


def assign_enterprise_ids(clusters: DataFrame, existing: DataFrame, issued_at: datetime) -> DataFrame:
    """``clusters`` (``patient_key``, ``cluster_id``) and the ``existing`` links (``patient_key``,
    ``enterprise_patient_id``, ``id_issued_at``) -> :data:`LINK_COLUMNS` for every clustered record:
    its id, when that id was first issued (``issued_at`` for a new one), its cluster's size, and
    the id it held before when that differs (null otherwise)."""
    old = existing.select("patient_key", F.col(ENTERPRISE_ID).alias("_old_id"), F.col("id_issued_at").alias("_old_at"))
    members = clusters.select("patient_key", "cluster_id").join(old, "patient_key", "left")
    by_cluster = Window.partitionBy("cluster_id")
    # earliest issued id among the members (ties: the smaller id)
    candidate = F.min(F.when(F.col("_old_id").isNotNull(), F.struct("_old_at", "_old_id"))).over(by_cluster)
    members = members.select(
        "*",
        candidate["_old_id"].alias("_cand_id"), candidate["_old_at"].alias("_cand_at"),
        F.min("patient_key").over(by_cluster).alias("_first_key"),
        F.count(F.lit(1)).over(by_cluster).alias("cluster_size"),
    )
    holders = members.groupBy("cluster_id", "_cand_id", "_first_key").agg(
        F.sum(F.when(F.col("_old_id") == F.col("_cand_id"), 1).otherwise(0)).alias("_holders"))
    # clusters claiming the same old id: the one with most holders keeps it
    rank = F.row_number().over(Window.partitionBy("_cand_id").orderBy(F.desc("_holders"), "_first_key"))
    keeps = holders.where(F.col("_cand_id").isNotNull()).select("cluster_id", (rank == 1).alias("_keeps"))
    decided = members.join(keeps, "cluster_id", "left")
    keep = F.coalesce(F.col("_keeps"), F.lit(False))
    enterprise_id = F.when(keep, F.col("_cand_id")).otherwise(new_enterprise_id(F.col("_first_key")))
    return decided.select(
        "patient_key",
        enterprise_id.alias(ENTERPRISE_ID),
        F.when(keep, F.col("_cand_at")).otherwise(F.lit(issued_at).cast("timestamp")).alias("id_issued_at"),
        F.col("cluster_size").cast("int").alias("cluster_size"),
        F.when(F.col("_old_id") != enterprise_id, F.col("_old_id")).alias("previous_enterprise_patient_id"),
    )
