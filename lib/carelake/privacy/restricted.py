"""Direct identifiers kept apart: ``processed/<entity>_pii`` beside ``processed/<entity>``.

A separate table rather than column encryption: it is its own prefix in the object store, so a
bucket policy, IAM role or catalog grant can deny it whole (infra/s3/bucket-policy.json does),
while every other reader of ``processed/patients`` - the model stage, notebooks, engineers -
works with ordinary columns, Spark pruning and statistics. Column encryption would put a key in
every reader and make equality joins and de-duplication on those columns impossible without it.
The restricted table carries the business key, so whoever is allowed can join it back.
"""

from __future__ import annotations

from pyspark.sql import DataFrame

from carelake.sources import BUSINESS_KEYS, LINEAGE_COLUMNS

PII_SUFFIX = "_pii"
# Direct identifiers (HIPAA Safe Harbor) that stay in the restricted table only. Quasi-identifiers
# (birth date, zip, sex) stay in processed: the model stage generalises them on the way to curated.
DIRECT_IDENTIFIERS: dict[str, tuple[str, ...]] = {
    "patients": ("first_name", "last_name", "ssn", "phone", "email", "street_address", "mrn"),
}
# Restricted tables of patient matching (carelake.matching): no identifiers, but they say which
# records of which hospitals are one person.
MATCHING_TABLES = ("patient_links_pii", "patient_match_pairs_pii")
# Kept in both tables: the key to join on, the hospital (row filters), the version time, and the
# lineage columns (a batch rollback finds its rows by _batch_id in both).
SHARED_COLUMNS = ("source_system", "updated_at", *LINEAGE_COLUMNS)


def restricted_table(entity: str) -> str | None:
    """Name of ``entity``'s restricted table, or None when the entity has no direct identifiers."""
    return f"{entity}{PII_SUFFIX}" if entity in DIRECT_IDENTIFIERS else None


def split_identifiers(df: DataFrame, entity: str) -> tuple[DataFrame, DataFrame | None]:
    """(``df`` without direct identifiers, key + shared + direct identifier columns) of one entity;
    the second is None for entities without direct identifiers."""
    identifiers = [c for c in DIRECT_IDENTIFIERS.get(entity, ()) if c in df.columns]
    if not identifiers:
        return df, None
    keys = [c for c in BUSINESS_KEYS[entity] if c not in SHARED_COLUMNS]
    shared = [c for c in SHARED_COLUMNS if c in df.columns]
    return df.drop(*identifiers), df.select(*keys, *shared, *identifiers)
