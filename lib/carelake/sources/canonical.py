"""The canonical (processed-zone) schema of each entity, shared by every stage.

Source columns are mapped onto the *source-level* canonical names in ``conf/`` (``npi``,
``patient_id``, ``admit_date`` ...). Conformance then types them and adds surrogate keys
(``patient_key`` = source system + local patient id, since ids collide across hospitals);
NPI stays the provider's natural key everywhere.
"""

from __future__ import annotations

from pyspark.sql.types import (
    BooleanType,
    DateType,
    DecimalType,
    IntegerType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

ENTITIES = ("providers", "patients", "encounters", "procedures", "claims", "referrals", "crm_activity")

# Columns every raw table carries besides the source's own (all strings).
RAW_METADATA_COLUMNS = ("_source_system", "_source_file", "_ingested_at", "_batch_id", "_row_hash")

# Lineage kept on every processed row.
LINEAGE_COLUMNS = ("_source_system", "_source_file", "_batch_id", "_ingested_at")

AMOUNT = DecimalType(14, 2)

_S, _D, _TS, _B, _I = StringType(), DateType(), TimestampType(), BooleanType(), IntegerType()


def _schema(*fields: tuple[str, object]) -> StructType:
    lineage = [
        ("_source_system", _S),
        ("_source_file", _S),
        ("_batch_id", _S),
        ("_ingested_at", _TS),
    ]
    return StructType([StructField(name, dtype, True) for name, dtype in (*fields, *lineage)])


CANONICAL_SCHEMAS: dict[str, StructType] = {
    "providers": _schema(
        ("npi", _S), ("first_name", _S), ("last_name", _S), ("specialty", _S),
        ("taxonomy_code", _S), ("organization", _S), ("zip", _S), ("network_id", _S),
        ("employer_id", _S), ("active", _B), ("updated_at", _TS),
    ),
    "patients": _schema(
        ("patient_key", _S), ("source_system", _S), ("patient_id", _S), ("first_name", _S),
        ("last_name", _S), ("ssn", _S), ("phone", _S), ("email", _S), ("street_address", _S),
        ("birth_date", _D), ("sex", _S), ("zip", _S), ("mrn", _S), ("updated_at", _TS),
    ),
    "encounters": _schema(
        ("encounter_key", _S), ("source_system", _S), ("encounter_id", _S), ("patient_key", _S),
        ("npi", _S), ("department", _S), ("encounter_type", _S), ("admit_date", _D),
        ("discharge_date", _D), ("diagnosis_code", _S), ("readmitted_30d", _B),
        ("complication", _B), ("satisfaction_score", _I), ("updated_at", _TS),
    ),
    "procedures": _schema(
        ("procedure_key", _S), ("source_system", _S), ("procedure_id", _S), ("encounter_key", _S),
        ("npi", _S), ("procedure_code", _S), ("code_system", _S), ("procedure_date", _D),
        ("units", _I), ("charge_amount", AMOUNT),
    ),
    "claims": _schema(
        ("claim_id", _S), ("patient_source_system", _S), ("encounter_key", _S), ("patient_key", _S),
        ("npi", _S), ("payer", _S), ("billed_amount", AMOUNT), ("allowed_amount", AMOUNT),
        ("paid_amount", AMOUNT), ("status", _S), ("service_date", _D), ("submitted_date", _D),
        ("paid_date", _D), ("updated_at", _TS),
    ),
    "referrals": _schema(
        ("referral_id", _S), ("referring_npi", _S), ("referred_to_npi", _S),
        ("patient_source_system", _S), ("patient_key", _S), ("employer_id", _S),
        ("referral_date", _D), ("status", _S), ("specialty_requested", _S), ("updated_at", _TS),
    ),
    "crm_activity": _schema(
        ("activity_id", _S), ("npi", _S), ("activity_date", _D), ("activity_type", _S),
        ("marketing_spend", AMOUNT), ("contacts", _I), ("opportunity_value", AMOUNT),
        ("updated_at", _TS),
    ),
}

# Business key of each processed table (what merges and de-duplication key on).
BUSINESS_KEYS: dict[str, tuple[str, ...]] = {
    "providers": ("npi",),
    "patients": ("patient_key",),
    "encounters": ("encounter_key",),
    "procedures": ("procedure_key",),
    "claims": ("claim_id",),
    "referrals": ("referral_id",),
    "crm_activity": ("activity_id",),
}


def canonical_schema(entity: str) -> StructType:
    """The processed-zone schema of ``entity``; a clear error for an unknown one."""
    try:
        return CANONICAL_SCHEMAS[entity]
    except KeyError:
        raise KeyError(f"unknown entity {entity!r}: expected one of {', '.join(ENTITIES)}") from None
