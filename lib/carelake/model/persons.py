"""The person behind each patient record, de-identified: ``curated/patient_enterprise_tokens``.

One row per patient record (``patient_token``) with ``enterprise_patient_token``, the keyed token
(HMAC-SHA256, the same key as ``patient_token``) of the record's enterprise patient id from the
restricted ``processed/patient_links_pii`` (docs/matching.md). A record without a link (matching
off or not run yet, or a record newer than the last match) gets the token of its own
``patient_key``: it is a person of its own, and nothing is lost.

A table of its own, type 1 (one row per record, overwritten in place), rather than a tracked
attribute of ``dim_patient`` or a column of the facts: a link is a correction of who a record
always was, not a change at a point in the record's history, and when two clusters merge only
the relinked records' rows here change, while their facts, spread over every month partition,
stay as they are. The curated stage resolves facts to people through this table and recomputes
the people whose rows changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from carelake.delta import MergeSpec, Rows
from carelake.privacy import hmac_sha256_hex

if TYPE_CHECKING:
    from carelake.delta import CommitResult, DeltaTables

ENTERPRISE_TOKENS_TABLE = "patient_enterprise_tokens"
ENTERPRISE_TOKEN = "enterprise_patient_token"
COLUMNS: dict[str, str] = {
    "patient_token": "Keyed token of the patient record (as in dim_patient and the facts)",
    ENTERPRISE_TOKEN: "Keyed token of the person's enterprise patient id (patient matching); "
                      "of the record's own key when the record has no link",
    "source_system": "Hospital system the patient record comes from",
    "linked": "True when the token comes from patient matching, false when from the record's own key",
}


def enterprise_tokens(patients: DataFrame, links: DataFrame | None, key: bytes) -> DataFrame:
    """Processed ``patients`` (``patient_key``, ``source_system``; one or more rows per key) and the
    restricted links (``patient_key``, ``enterprise_patient_id``; None when matching is off) ->
    one row per patient record with the columns of :data:`COLUMNS`. Only tokens leave: never the
    key, the enterprise id or an identifier."""
    records = patients.select("patient_key", "source_system").dropDuplicates(["patient_key"])
    if links is None:
        linked = records.select("*", F.lit(None).cast("string").alias("enterprise_patient_id"))
    else:
        linked = records.join(links.select("patient_key", "enterprise_patient_id"), "patient_key", "left")
    return linked.select(
        hmac_sha256_hex(F.col("patient_key"), key).alias("patient_token"),
        hmac_sha256_hex(F.coalesce("enterprise_patient_id", "patient_key"), key).alias(ENTERPRISE_TOKEN),
        "source_system",
        F.col("enterprise_patient_id").isNotNull().alias("linked"),
    )


def sync_enterprise_tokens(
    tables: DeltaTables, uri: str, fresh: DataFrame, commit_metadata: dict[str, str] | None = None,
) -> tuple[int, CommitResult | None]:
    """Bring the table at ``uri`` in line with ``fresh`` (:func:`enterprise_tokens`): merge the rows
    that are new or differ, delete the records no longer there. Returns (rows written, the last
    commit or None when nothing changed)."""
    fresh = fresh.localCheckpoint(eager=True)
    if not tables.exists(uri):
        if fresh.isEmpty():
            return 0, None
        result = tables.write(fresh, uri, mode="overwrite", commit_metadata=commit_metadata)
        return fresh.count(), result
    stored = tables.read(uri, version=tables.version(uri))
    changed = fresh.subtract(stored.select(*fresh.columns)).localCheckpoint(eager=True)
    vanished = stored.select("patient_token").subtract(fresh.select("patient_token")).collect()
    written, result = 0, None
    if not changed.isEmpty():
        result = tables.merge(changed, uri, MergeSpec(("patient_token",)), commit_metadata=commit_metadata)
        written += (result.rows_inserted or 0) + (result.rows_updated or 0)
    if vanished:
        result = tables.delete(uri, Rows.keys(("patient_token",), vanished))
        written += result.rows_deleted or 0
    return written, result
