"""Conform one source system's raw rows of one entity onto the canonical processed schema.

Everything a source does differently lives in its config block (column names, value codes,
date and timestamp patterns, amount unit), so a new hospital is YAML and no code. The output
is the canonical schema of the entity (lineage included) plus the columns the quality rules
need and that are dropped before writing: ``_raw_<col>`` (the trimmed source text of every
typed column, so a value that failed to parse is told apart from one that was absent),
``_raw_payload`` (JSON of the source's own columns, for quarantine), ``_corrupt_record`` and
``_source_issues`` (a FHIR source's validation issues, else empty).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    BooleanType,
    DataType,
    DateType,
    DecimalType,
    IntegerType,
    StringType,
    TimestampType,
)

from carelake.config import SourceSystem
from carelake.sources import fhir
from carelake.sources.canonical import LINEAGE_COLUMNS, canonical_schema
from carelake.sources.naming import raw_column_name

RAW_PREFIX = "_raw_"
RAW_PAYLOAD = "_raw_payload"
CORRUPT_RECORD = "_corrupt_record"
SOURCE_ISSUES = "_source_issues"  # what the source's own validation found (FHIR), as rule names

# NPI-valued columns: whitespace and dashes are formatting, not content.
NPI_COLUMNS = ("npi", "referring_npi", "referred_to_npi")
# Code columns compared against code-system shapes, so case is normalised.
CODE_COLUMNS = ("diagnosis_code", "procedure_code", "taxonomy_code")

# Commas are accepted only as thousands separators: "1,234.50" is 1234.50, while "1,50" (a
# decimal comma) is unparseable rather than silently read as 150.
GROUPED_NUMBER = r"^[-+]?\$?[-+]?\d{1,3}(,\d{3})+(\.\d*)?$"

CPT_PATTERN = r"^\d{5}$"
HCPCS_PATTERN = r"^[A-Z]\d{4}$"

# Surrogate key -> the local id it is built from. Ids collide across hospitals, so each key
# is namespaced by the hospital that issued the id: the row's own source system, or the
# referenced one for feeds that carry ``patient_source_system`` (claims, referrals).
SURROGATE_KEYS = {
    "patient_key": "patient_id",
    "encounter_key": "encounter_id",
    "procedure_key": "procedure_id",
}
NAMESPACE_COLUMN = "patient_source_system"


def raw_text_column(column: str) -> str:
    """Name of the column holding the source text behind typed column ``column``."""
    return f"{RAW_PREFIX}{column}"


def surrogate_key(namespace: Column, local_id: Column) -> Column:
    """``sha2(namespace || ':' || local_id, 256)``; null when either part is null."""
    return F.sha2(F.concat(namespace, F.lit(":"), local_id), 256)


def code_system(code: Column) -> Column:
    """``CPT`` for five digits, ``HCPCS`` for a letter and four digits, else null."""
    return F.when(code.rlike(CPT_PATTERN), F.lit("CPT")).when(code.rlike(HCPCS_PATTERN), F.lit("HCPCS"))


def normalise_icd10(code: Column) -> Column:
    """Upper-case and put the dot after the category (``e119`` -> ``E11.9``) when it is missing."""
    upper = F.upper(code)
    return F.when(
        upper.rlike(r"^[A-Z][0-9][0-9A-Z][0-9A-Z]{1,4}$"),
        F.concat(F.substring(upper, 1, 3), F.lit("."), F.substring(upper, 4, 4)),
    ).otherwise(upper)


def _parse(text: Column, dtype: DataType, system: SourceSystem) -> Column:
    """Type ``text`` per the canonical ``dtype``; unparseable text becomes null, never an error."""
    date_fmt, ts_fmt = F.lit(system.date_format), F.lit(system.timestamp_format)
    if isinstance(dtype, DateType):
        # Some sources send dates as timestamps (admitTs): accept either of the source's patterns.
        return F.to_date(F.coalesce(F.try_to_timestamp(text, date_fmt), F.try_to_timestamp(text, ts_fmt)))
    if isinstance(dtype, TimestampType):
        return F.coalesce(F.try_to_timestamp(text, ts_fmt), F.try_to_timestamp(text, date_fmt))
    if isinstance(dtype, DecimalType):
        number = _number_text(text).try_cast(DecimalType(22, 4))
        if system.amount_unit == "cents":
            number = number / F.lit(100)
        return number.try_cast(dtype)
    if isinstance(dtype, IntegerType):
        return _number_text(text).try_cast(dtype)
    if isinstance(dtype, BooleanType):
        return F.lower(text).try_cast(dtype)
    return text


def _number_text(text: Column) -> Column:
    """``text`` without a dollar sign and thousands separators; null when a comma is anywhere else."""
    return F.when(text.contains(",") & ~text.rlike(GROUPED_NUMBER), F.lit(None)).otherwise(F.regexp_replace(text, r"[$,]", ""))


def _clean_string(name: str, text: Column) -> Column:
    if name in NPI_COLUMNS:
        return F.regexp_replace(text, r"[\s-]", "")
    if name == "diagnosis_code":
        return normalise_icd10(text)
    if name in CODE_COLUMNS:
        return F.upper(text)
    return text


def conform(raw: DataFrame, system: SourceSystem, entity: str) -> DataFrame:
    """Conform ``system``'s rows of ``entity`` in the raw table ``raw``.

    In: the raw table of ``entity`` (all source columns as strings, ``_source_system``,
    ``_source_file``, ``_ingested_at``, ``_batch_id``, optionally ``_corrupt_record``).
    Source columns absent from ``raw`` (never sent by any file yet) read as null.
    Out: only the rows of ``system``, as the canonical schema of ``entity`` (lineage last)
    followed by ``_raw_<col>`` for every typed column, ``_raw_payload``, ``_corrupt_record`` and
    ``_source_issues``. FHIR rows must have had their references resolved
    (:func:`carelake.sources.fhir.resolve_references`).
    Strings are trimmed (empty -> null), value codes mapped, NPIs stripped of spaces and
    dashes, codes upper-cased, dates/timestamps parsed with the source's patterns, cents
    turned into dollars, surrogate keys and ``code_system`` computed.
    """
    where = f"sources.{system.name}.entities.{entity}"
    if entity not in system.entities:
        raise KeyError(f"{where}: source system {system.name!r} has no entity {entity!r}; it has {sorted(system.entities)}")
    mapping = system.entities[entity]
    schema = canonical_schema(entity)
    source_of = {canonical: raw_column_name(source) for canonical, source in mapping.columns.items()}
    # A column no file of this source has carried yet is absent from the raw table: null.
    present = set(raw.columns)
    source_col = {c: F.col(r) if r in present else F.lit(None).cast(StringType()) for c, r in source_of.items()}

    rows = raw.where(F.col("_source_system") == F.lit(system.name))

    # Pass 1: trimmed, value-mapped, cleaned source text under canonical names.
    string_columns = {f.name for f in schema.fields if isinstance(f.dataType, StringType)}
    text: dict[str, Column] = {}
    for canonical, column in source_col.items():
        value = F.nullif(F.trim(column), F.lit(""))
        codes = mapping.values.get(canonical)
        if codes:
            lookup = F.create_map(*(F.lit(part) for pair in codes.items() for part in pair))
            value = F.coalesce(F.try_element_at(lookup, value), value)
        text[canonical] = _clean_string(canonical, value) if canonical in string_columns else value
    corrupt = F.col(CORRUPT_RECORD) if CORRUPT_RECORD in raw.columns else F.lit(None).cast(StringType())
    # A FHIR row's payload also carries the resource (type, id, JSON) and its validation issues.
    resource = [F.col(c) for c in fhir.RAW_COLUMNS if c in present] if system.format == "fhir" else []
    # Nulls kept in the payload: an empty field is part of what was received.
    payload = F.to_json(
        F.struct(*(source_col[c].alias(r) for r, c in {r: c for c, r in source_of.items()}.items()), *resource, corrupt.alias(CORRUPT_RECORD)),
        {"ignoreNullFields": "false"},
    )
    issues = fhir.source_issues(F.col(fhir.ISSUES)) if fhir.ISSUES in present and system.format == "fhir" else F.array().cast("array<string>")
    staged = rows.select(
        *(value.alias(name) for name, value in text.items()),
        *(F.col(c) for c in LINEAGE_COLUMNS),
        payload.alias(RAW_PAYLOAD),
        corrupt.alias(CORRUPT_RECORD),
        issues.alias(SOURCE_ISSUES),
    )

    # Pass 2: typed canonical columns, computed keys, and the raw text of typed columns.
    namespace = F.col(NAMESPACE_COLUMN) if NAMESPACE_COLUMN in text else F.lit(system.name)
    out: list[Column] = []
    raw_texts: list[Column] = []
    for field in schema.fields:
        name, dtype = field.name, field.dataType
        if name in LINEAGE_COLUMNS:
            value = F.col(name)
        elif name in SURROGATE_KEYS:
            local = SURROGATE_KEYS[name]
            value = surrogate_key(namespace, F.col(local)) if local in text else F.lit(None)
        elif name == "source_system":
            value = F.lit(system.name)
        elif name == "code_system":
            value = code_system(F.col("procedure_code")) if "procedure_code" in text else F.lit(None)
        elif name in text:
            value = _parse(F.col(name), dtype, system)
            if not isinstance(dtype, StringType):
                raw_texts.append(F.col(name).alias(raw_text_column(name)))
        else:
            value = F.lit(None)  # canonical column this source does not send
        out.append(value.cast(dtype).alias(name))
    return staged.select(*out, *raw_texts, F.col(RAW_PAYLOAD), F.col(CORRUPT_RECORD), F.col(SOURCE_ISSUES))


def canonical_columns(conformed: DataFrame, entity: str) -> DataFrame:
    """Drop the rule-support columns: ``conformed`` projected onto the canonical schema of ``entity``."""
    return conformed.select(*(F.col(f.name) for f in canonical_schema(entity).fields))
