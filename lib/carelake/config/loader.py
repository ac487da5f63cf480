"""Load YAML configuration with overlays and environment overrides.

A file may say ``extends: other.yaml`` (relative to itself); keys of the extending file win,
mappings merge recursively. Then every ``CARELAKE_<SECTION>__<KEY>[__<KEY>...]`` environment
variable overrides the key it names; its value is parsed as a YAML scalar.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "CARELAKE_"
ENGINES = ("auto", "jvm", "rs")
FORMATS = ("csv", "json", "fhir")
AMOUNT_UNITS = ("dollars", "cents")


class ConfigError(ValueError):
    """A configuration file or override is missing, unreadable or wrong; says key and file."""


@dataclass(frozen=True)
class SourceEntity:
    """How one entity of one source system is found and mapped onto the canonical schema."""

    entity: str
    path: str
    columns: dict[str, str]
    values: dict[str, dict[str, str]] = field(default_factory=dict)
    # FHIR sources only (format: fhir): the resource type, canonical column -> FHIRPath,
    # canonical column -> "<entity>.<column>" its reference resolves to, rule name -> FHIRPath
    # that must be true. ``columns`` then names the raw columns, which are the canonical names.
    resource: str | None = None
    paths: dict[str, str] = field(default_factory=dict)
    references: dict[str, str] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)
    # canonical column -> the column of another entity of this source whose resources point
    # at this one (Condition.encounter -> Encounter): joined on that reference
    joined: dict[str, JoinedColumn] = field(default_factory=dict)


@dataclass(frozen=True)
class JoinedColumn:
    """A FHIR column taken from the resources of ``entity`` whose ``by`` reference names this row's resource."""

    entity: str
    column: str
    by: str


@dataclass(frozen=True)
class SourceSystem:
    """One sending system: its file format, parsing conventions and entities."""

    name: str
    display_name: str
    format: str
    options: dict[str, str]
    date_format: str
    timestamp_format: str
    amount_unit: str
    entities: dict[str, SourceEntity]
    bundles: str | None = None  # FHIR: glob of Bundle files, read by every entity for its resource type


@dataclass(frozen=True)
class Config:
    """The validated configuration. ``raw`` keeps the merged mapping for optional sections."""

    source_file: str
    root: str
    landing: str
    spark_master: str
    spark_app_name: str
    spark_log_level: str
    spark_conf: dict[str, str]
    delta_engine: str
    vacuum_retention_hours: int
    target_file_rows: int
    npi_buckets: int
    sources: dict[str, SourceSystem]
    raw: dict[str, Any]

    def section(self, name: str) -> dict[str, Any]:
        """An optional top-level section as a dict ({} when absent)."""
        value = self.raw.get(name) or {}
        if not isinstance(value, dict):
            raise ConfigError(f"{self.source_file}: '{name}' must be a mapping, found {type(value).__name__}")
        return value

    def settings(self, dotted: str, known: Iterable[str]) -> tuple[dict[str, Any], str]:
        """The optional mapping at a dotted path (e.g. ``curated.adequacy``; {} when absent) and
        its location for error messages; a key outside ``known`` is an error naming them all."""
        where = f"{self.source_file}: {dotted}"
        block: Any = self.raw
        for part in dotted.split("."):
            block = (block.get(part) if isinstance(block, dict) else None) or {}
        if not isinstance(block, dict):
            raise ConfigError(f"{where}: expected a mapping, found {type(block).__name__}")
        names = sorted(known)
        unknown = set(block) - set(names)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; expected {', '.join(names)}")
        return block, where

    def with_overrides(self, **dotted: Any) -> Config:
        """A copy with keys replaced, e.g. ``with_overrides(**{"lakehouse.root": "/tmp/x"})``."""
        merged = copy.deepcopy(self.raw)
        for key, value in dotted.items():
            _set_dotted(merged, key.split("."), value)
        return _build(merged, self.source_file)


def default_config_path() -> Path:
    """``$CARELAKE_CONFIG``, else ``conf/local.yaml`` in the working directory, else the repo's."""
    env = os.environ.get("CARELAKE_CONFIG")
    if env:
        return Path(env)
    cwd = Path.cwd() / "conf" / "local.yaml"
    if cwd.exists():
        return cwd
    return Path(__file__).resolve().parents[3] / "conf" / "local.yaml"


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Load ``path`` (default: :func:`default_config_path`), apply overlays and env overrides."""
    file = Path(path) if path else default_config_path()
    merged = _load_with_extends(file, seen=())
    _apply_env(merged, os.environ if env is None else env, str(file))
    return _build(merged, str(file))


def _load_with_extends(file: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    file = file.resolve()
    if file in seen:
        raise ConfigError(f"{file}: 'extends' loops back to itself")
    if not file.exists():
        raise ConfigError(f"{file}: configuration file not found")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: top level must be a mapping, found {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    base = _load_with_extends(file.parent / parent, seen + (file,))
    return _deep_merge(base, data)


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _set_dotted(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    node = tree
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def _apply_env(tree: dict[str, Any], env: dict[str, str] | os._Environ[str], file: str) -> None:
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        keys = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if keys[0] == "spark" and len(keys) > 2 and keys[1] == "conf":
            # Spark keys are dotted and case-sensitive: CARELAKE_SPARK__CONF__spark.sql.x=1
            keys = ["spark", "conf", name.split("__", 2)[2]]
        try:
            value = yaml.safe_load(text) if text != "" else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"environment {name}: not a valid value: {exc}") from exc
        _set_dotted(tree, keys, value)


def _require(tree: dict[str, Any], dotted: str, file: str, kind: type | tuple[type, ...]) -> Any:
    node: Any = tree
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node or node[key] is None:
            raise ConfigError(f"{file}: required key '{dotted}' is missing")
        node = node[key]
    if not isinstance(node, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{file}: key '{dotted}' must be {names}, found {node!r}")
    return node


def _choice(value: str, allowed: tuple[str, ...], dotted: str, file: str) -> str:
    if value not in allowed:
        raise ConfigError(f"{file}: key '{dotted}' must be one of {', '.join(allowed)}, found {value!r}")
    return value


def _build_sources(tree: dict[str, Any], file: str) -> dict[str, SourceSystem]:
    sources = _require(tree, "sources", file, dict)
    systems: dict[str, SourceSystem] = {}
    for name, spec in sources.items():
        prefix = f"sources.{name}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{file}: key '{prefix}' must be a mapping")
        entities = {}
        for entity, espec in _require(tree, f"{prefix}.entities", file, dict).items():
            eprefix = f"{prefix}.entities.{entity}"
            columns = _require(tree, f"{eprefix}.columns", file, dict)
            values = (espec or {}).get("values") or {}
            for canonical in values:
                if canonical not in columns:
                    raise ConfigError(f"{file}: key '{eprefix}.values.{canonical}' maps values of a column not in '{eprefix}.columns'")
            entities[entity] = SourceEntity(
                entity=entity,
                path=_require(tree, f"{eprefix}.path", file, str),
                columns={str(k): str(v) for k, v in columns.items()},
                values={str(k): {str(a): str(b) for a, b in v.items()} for k, v in values.items()},
            )
            if spec.get("format") == "fhir":
                entities[entity] = _fhir_entity(tree, entities[entity], espec or {}, eprefix, file)
        if spec.get("format") == "fhir":
            _check_fhir_references(entities, prefix, file)
        elif spec.get("bundles") is not None:
            raise ConfigError(f"{file}: key '{prefix}.bundles' is for format fhir only")
        systems[name] = SourceSystem(
            name=name,
            display_name=str(spec.get("display_name") or name),
            format=_choice(_require(tree, f"{prefix}.format", file, str), FORMATS, f"{prefix}.format", file),
            options={str(k): str(v) for k, v in (spec.get("options") or {}).items()},
            date_format=_require(tree, f"{prefix}.date_format", file, str),
            timestamp_format=_require(tree, f"{prefix}.timestamp_format", file, str),
            amount_unit=_choice(_require(tree, f"{prefix}.amount_unit", file, str), AMOUNT_UNITS, f"{prefix}.amount_unit", file),
            entities=entities,
            bundles=str(spec["bundles"]) if spec.get("bundles") else None,
        )
    return systems


def _fhir_entity(tree: dict[str, Any], parsed: SourceEntity, espec: dict[str, Any], eprefix: str, file: str) -> SourceEntity:
    """A FHIR source entity: ``columns`` holds FHIRPath expressions, compiled here to fail early."""
    from carelake.sources.fhir import compile_path  # fhirpathpy is needed only by FHIR sources

    resource = _require(tree, f"{eprefix}.resource", file, str)
    checks = {str(k): str(v) for k, v in (espec.get("checks") or {}).items()}
    expressions = [*(("columns", c, p) for c, p in parsed.columns.items()), *(("checks", c, p) for c, p in checks.items())]
    for section, name, expression in expressions:
        try:
            # fhirpathpy reports some syntax errors only when evaluating: try it on an empty resource
            compile_path(expression)({"resourceType": resource})
        except Exception as exc:  # fhirpathpy raises its parser's own error types
            raise ConfigError(f"{file}: key '{eprefix}.{section}.{name}' is not a FHIRPath expression: {expression!r} ({exc})") from None
    references = {str(k): str(v) for k, v in (espec.get("references") or {}).items()}
    for column, target in references.items():
        if column not in parsed.columns or target.count(".") != 1:
            raise ConfigError(f"{file}: key '{eprefix}.references.{column}' must name a mapped column and "
                              f"'<entity>.<column>' of the same source, found {target!r}")
    joined = {}
    for column, spec in (espec.get("joined") or {}).items():
        source, by = (spec.get("from"), spec.get("by")) if isinstance(spec, dict) else (None, None)
        if not isinstance(source, str) or source.count(".") != 1 or not isinstance(by, str) or column in parsed.columns:
            raise ConfigError(f"{file}: key '{eprefix}.joined.{column}' must be {{from: <entity>.<column>, by: <reference column "
                              f"of that entity>}} for a column not in '{eprefix}.columns', found {spec!r}")
        joined[str(column)] = JoinedColumn(*source.split("."), by)
    return SourceEntity(
        entity=parsed.entity,
        path=parsed.path,
        columns={c: c for c in (*parsed.columns, *joined)},
        values=parsed.values,
        resource=resource,
        paths=dict(parsed.columns),
        references=references,
        checks=checks,
        joined=joined,
    )


def _check_fhir_references(entities: dict[str, SourceEntity], prefix: str, file: str) -> None:
    for entity in entities.values():
        for column, target in entity.references.items():
            target_entity, target_column = target.split(".")
            if target_entity not in entities or target_column not in entities[target_entity].columns:
                raise ConfigError(f"{file}: key '{prefix}.entities.{entity.entity}.references.{column}' names "
                                  f"{target!r}, which is not a mapped column of an entity of this source")
        for column, join in entity.joined.items():
            source = entities.get(join.entity)
            if source is None or join.column not in source.paths or join.by not in source.paths:
                raise ConfigError(f"{file}: key '{prefix}.entities.{entity.entity}.joined.{column}' names "
                                  f"{join.entity}.{join.column} by {join.by!r}: both must be mapped columns of an entity of this source")


def _build(tree: dict[str, Any], file: str) -> Config:
    root = str(_require(tree, "lakehouse.root", file, str)).rstrip("/")
    landing = (tree.get("lakehouse") or {}).get("landing") or f"{root}/landing"
    npi_buckets = _require(tree, "partitioning.npi_buckets", file, int)
    if npi_buckets < 1:
        raise ConfigError(f"{file}: key 'partitioning.npi_buckets' must be >= 1, found {npi_buckets}")
    spark = _require(tree, "spark", file, dict)
    return Config(
        source_file=file,
        root=root,
        landing=str(landing).rstrip("/"),
        spark_master=str(spark.get("master") or "local[*]"),
        spark_app_name=str(spark.get("app_name") or "carelake"),
        spark_log_level=str(spark.get("log_level") or "WARN"),
        spark_conf={str(k): str(v) for k, v in (spark.get("conf") or {}).items()},
        delta_engine=_choice(_require(tree, "delta.engine", file, str), ENGINES, "delta.engine", file),
        vacuum_retention_hours=_require(tree, "delta.vacuum_retention_hours", file, int),
        target_file_rows=int((tree.get("delta") or {}).get("target_file_rows") or 1_000_000),
        npi_buckets=npi_buckets,
        sources=_build_sources(tree, file),
        raw=tree,
    )
