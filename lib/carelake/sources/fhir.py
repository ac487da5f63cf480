"""FHIR R4 resources as raw rows: element extraction by FHIRPath, R4 validation, reference joins.

A FHIR source (``format: fhir`` in conf) maps canonical columns to FHIRPath expressions
evaluated by ``fhirpathpy`` on each resource; the resource is validated against the R4 models
of ``fhirclient`` (types, required elements, unknown elements), its resourceType checked, and
the entity's configured FHIRPath ``checks`` (e.g. "the code is from the declared system")
evaluated. Raw keeps the resource's JSON text next to the extracted columns, so nothing sent is
lost. :class:`ResourceMapper` runs in the executors' Python workers, one resource at a time;
the Column functions at the end (references, issues) run in Spark.

Issue names (they become quarantine reasons):

``fhir_invalid:<element>: <message>``  the resource is not valid R4 (fhirclient's message)
``resource_type_unexpected:<type>``    an NDJSON line of another resourceType than the entity's
``fhir_id_missing``                     no ``id``: nothing can reference the resource
``fhir_check:<name>``                   a configured FHIRPath check is not true
``reference_unresolved:<column>``       a reference names no resource of its type in this source
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType

from carelake.config import SourceEntity, SourceSystem

RESOURCE_TYPE = "fhir_resource_type"
RESOURCE_ID = "fhir_resource_id"
RESOURCE = "fhir_resource"
ISSUES = "fhir_issues"  # JSON array of issue names, null when none
RAW_COLUMNS = (RESOURCE_TYPE, RESOURCE_ID, RESOURCE, ISSUES)

# "Practitioner/123", "urn:uuid:123", "https://host/fhir/Practitioner/123/_history/2" -> "123"
_REFERENCE_ID = r"^(?:.*/)?(?:urn:uuid:)?([^/:]+?)(?:/_history/[^/]+)?$"
_OBJECT_REPR = re.compile(r" (?:on|for) <[^<>]+ object at 0x[0-9a-f]+>")
_CLASS_REPR = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")


@lru_cache(maxsize=256)
def compile_path(expression: str) -> Any:
    """The compiled FHIRPath ``expression`` (a callable on a resource dict); raises on bad syntax."""
    import fhirpathpy
    from fhirpathpy.models import models

    # The R4 model lets ``value`` and ``performed`` find their choice-type forms (valueString ...).
    return fhirpathpy.compile(expression, models["r4"])


def resources_in(document: Any, resource_type: str) -> Iterator[Any]:
    """The resources of one parsed JSON document that belong to an entity of ``resource_type``.

    A Bundle gives its ``entry[].resource`` of that type (others belong to other entities);
    any other document is itself the resource (validation reports a wrong type).
    """
    if isinstance(document, dict) and document.get("resourceType") == "Bundle" and resource_type != "Bundle":
        for entry in document.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict) and resource.get("resourceType") == resource_type:
                yield resource
    else:
        yield document


def as_text(value: Any) -> str | None:
    """A FHIRPath result as raw text: strings as they are, booleans ``true``/``false``, elements as JSON."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), default=str)
    return str(value)  # numbers, and the Decimal / date types the R4 model gives


def _flatten(error: Exception, path: str) -> Iterator[str]:
    from fhirclient.models.fhirabstractbase import FHIRValidationError

    if isinstance(error, FHIRValidationError):
        here = ".".join(p for p in (path, error.path) if p)
        for inner in error.errors:
            yield from _flatten(inner, here)
        return
    message = _CLASS_REPR.sub(r"\1", _OBJECT_REPR.sub("", str(error).strip("'\""))).strip()
    yield f"fhir_invalid:{path or '(resource)'}: {message}"


def validation_issues(resource: Any, resource_type: str) -> list[str]:
    """Why ``resource`` is not a valid R4 ``resource_type`` (empty when it is), per fhirclient's R4 models."""
    from fhirclient.models.fhirabstractbase import FHIRValidationError

    if not isinstance(resource, dict):
        return [f"fhir_invalid:(resource): expected a JSON object, found {type(resource).__name__}"]
    found = resource.get("resourceType")
    if found != resource_type:
        return [f"resource_type_unexpected:{found}"]
    model = getattr(importlib.import_module(f"fhirclient.models.{resource_type.lower()}"), resource_type)
    issues = []
    try:
        model(resource, strict=True)
    except FHIRValidationError as exc:
        issues.extend(_flatten(exc, resource_type))
    if not resource.get("id"):
        issues.append("fhir_id_missing")
    return issues


class ResourceMapper:
    """Turns resources of one entity into raw rows: extracted columns then :data:`RAW_COLUMNS`."""

    def __init__(self, resource_type: str, paths: dict[str, str], checks: dict[str, str]) -> None:
        self.resource_type = resource_type
        self.columns = list(paths)
        self.paths = [compile_path(paths[c]) for c in self.columns]
        self.checks = [(name, compile_path(expression)) for name, expression in checks.items()]

    def row(self, resource: Any, text: str | None = None) -> list[str | None]:
        """One raw row; ``text`` is the resource's JSON as received (re-serialised when None)."""
        issues = validation_issues(resource, self.resource_type)
        valid_type = isinstance(resource, dict) and resource.get("resourceType") == self.resource_type
        values: list[str | None] = [None] * len(self.columns)
        if valid_type:
            for i, path in enumerate(self.paths):
                found = _evaluate(path, resource)
                values[i] = as_text(found[0]) if found else None
            for name, check in self.checks:
                if _evaluate(check, resource) != [True]:
                    issues.append(f"fhir_check:{name}")
        document = resource if isinstance(resource, dict) else {}
        return [
            *values,
            as_text(document.get("resourceType")),
            as_text(document.get("id")),
            text if text is not None else json.dumps(resource, separators=(",", ":"), ensure_ascii=False),
            json.dumps(issues) if issues else None,
        ]


def _evaluate(path: Any, resource: dict) -> list[Any]:
    try:
        return list(path(resource))
    except Exception as exc:  # an element of an unexpected shape makes fhirpathpy raise
        return [f"<not evaluable: {exc}>"]


def reference_id(reference: Column) -> Column:
    """The id a FHIR reference names (``Practitioner/1``, ``urn:uuid:1``, a full URL): ``1``."""
    return F.nullif(F.regexp_extract(reference, _REFERENCE_ID, 1), F.lit(""))


def resolve_references(raw: DataFrame, system: SourceSystem, entity: SourceEntity, targets: dict[str, DataFrame]) -> DataFrame:
    """Replace each configured reference column of ``system``'s rows with the referenced value.

    In: the raw table of ``entity`` (``raw``) and, per referenced entity, its raw table
    (``targets``). A column configured as ``npi: providers.npi`` holds a reference such as
    ``Practitioner/p1``; it becomes the ``npi`` of the resource ``p1`` among ``system``'s
    provider rows (their latest value when it changed). A reference that finds nothing is
    null and adds ``reference_unresolved:<column>`` to ``fhir_issues``. Rows of other
    systems pass through unchanged.
    """
    out = raw
    for i, (column, target) in enumerate(sorted(entity.references.items())):
        target_entity, target_column = target.split(".")
        if target_entity not in targets:
            raise KeyError(f"resolve_references({entity.entity}): expected the raw rows of {target_entity!r} for {column!r}")
        key, value = f"_ref_id_{i}", f"_ref_value_{i}"
        ids = (
            targets[target_entity]
            .where((F.col("_source_system") == system.name) & F.col(RESOURCE_ID).isNotNull())
            .groupBy(F.col(RESOURCE_ID).alias(key))
            .agg(F.max_by(F.col(target_column), F.col("_ingested_at")).alias(value))
        )
        mine = F.col("_source_system") == system.name
        out = out.withColumn(key, F.when(mine, reference_id(F.col(column)))).join(ids, key, "left")
        unresolved = mine & F.col(column).isNotNull() & F.col(value).isNull()
        out = out.withColumn(f"_unresolved_{i}", unresolved).withColumn(column, F.when(mine, F.col(value)).otherwise(F.col(column)))
        out = out.drop(key, value)
    if not entity.references:
        return out
    flags = [F.when(F.col(f"_unresolved_{i}"), F.lit(f"reference_unresolved:{c}")) for i, c in enumerate(sorted(entity.references))]
    issues = F.array_compact(F.concat(source_issues(F.col(ISSUES)), F.array(*flags)))
    out = out.withColumn(ISSUES, F.when(F.size(issues) > 0, F.to_json(issues)).otherwise(F.col(ISSUES)))
    return out.drop(*(f"_unresolved_{i}" for i in range(len(flags))))


def join_referencing(raw: DataFrame, system: SourceSystem, entity: SourceEntity, sources: dict[str, DataFrame]) -> DataFrame:
    """Add each ``joined`` column of ``entity`` to ``system``'s rows, from the resources that point at them.

    In: the raw table of ``entity`` (``raw``) and, per joined entity, its raw table
    (``sources``). ``diagnosis_code: {from: diagnoses.diagnosis_code, by: encounter}`` gives an
    Encounter row the ``diagnosis_code`` of the Condition whose ``encounter`` reference names
    it (the latest version when several do: by ``updated_at`` when mapped, then arrival). That resource's own issues follow it into
    ``fhir_issues`` as ``<entity>:<issue>`` (a joined value is no better than its resource).
    Rows of other systems keep theirs.
    """
    out = raw
    flags = []
    for i, (column, join) in enumerate(sorted(entity.joined.items())):
        if join.entity not in sources:
            raise KeyError(f"join_referencing({entity.entity}): expected the raw rows of {join.entity!r} for {column!r}")
        key, value, issues = f"_join_id_{i}", f"_join_value_{i}", f"_join_issues_{i}"
        found = sources[join.entity]
        source_issues_text = F.col(ISSUES) if ISSUES in found.columns else F.lit(None).cast(StringType())
        # the latest version: by the producer's meta.lastUpdated when mapped, then by arrival
        latest = F.struct(*([F.col("updated_at")] if "updated_at" in found.columns else []), F.col("_ingested_at"))
        by_target = (
            found.where((F.col("_source_system") == system.name) & F.col(join.by).isNotNull())
            .groupBy(reference_id(F.col(join.by)).alias(key))
            .agg(F.max_by(F.col(join.column), latest).alias(value), F.max_by(source_issues_text, latest).alias(issues))
        )
        mine = F.col("_source_system") == system.name
        kept = F.col(column) if column in out.columns else F.lit(None).cast(StringType())
        out = (out.withColumn(key, F.when(mine, F.col(RESOURCE_ID))).join(by_target, key, "left")
               .withColumn(column, F.when(mine, F.col(value)).otherwise(kept)).drop(key, value))
        prefix = F.lit(f"{join.entity}:")
        flags.append(F.transform(source_issues(F.col(issues)), lambda issue: F.concat(prefix, issue)))  # noqa: B023 (applied now)
    if not flags:
        return out
    all_issues = F.concat(source_issues(F.col(ISSUES)), *flags)
    out = out.withColumn(ISSUES, F.when(F.size(all_issues) > 0, F.to_json(all_issues)).otherwise(F.col(ISSUES)))
    return out.drop(*(f"_join_issues_{i}" for i in range(len(flags))))


def source_issues(raw_issues: Column) -> Column:
    """The ``fhir_issues`` text of a raw row as ``array<string>`` (empty when none)."""
    return F.coalesce(F.from_json(raw_issues, ArrayType(StringType())), F.array().cast(ArrayType(StringType())))
