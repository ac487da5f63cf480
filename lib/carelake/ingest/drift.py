"""Schema changes at the source: a file's header against its source's column mapping.

Raw keeps every source column as a string, so a change never breaks the raw append itself;
what it can break is the mapping onto the processed schema. Config ``ingest.schema_changes``:

- ``added_columns`` (default ``accept``): columns the mapping does not name are kept in raw
  (the raw table gains them) and noted; ``hold`` treats them as breaking.
- ``missing_columns`` (default ``accept``): mapped columns absent from the header read as null;
  ``hold`` treats them as breaking.
- A mapped column that carries (part of) the business key, absent or renamed, is always
  breaking: no row of the file could be keyed.

A breaking change holds every new file of that source's entity (``sources.<system>.entities.
<entity>``) out of the batch, not logged, so they are ingested by the first run after the files
or the mapping are fixed; every other entity goes on. Only delimited files are checked for
missing columns: JSON lines leave out keys per record.
"""

from __future__ import annotations

from dataclasses import dataclass

from carelake.config import Config, ConfigError, SourceEntity, SourceSystem
from carelake.sources.canonical import BUSINESS_KEYS
from carelake.sources.conform import SURROGATE_KEYS
from carelake.sources.naming import raw_column_name

POLICIES = ("accept", "hold")
DEFAULT_POLICY = {"added_columns": "accept", "missing_columns": "accept"}


@dataclass(frozen=True)
class SchemaChange:
    """Source column names added to, or missing from, one file's header (as the mapping spells them)."""

    added: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    missing_keys: tuple[str, ...] = ()

    def breaking(self, policy: dict[str, str]) -> str | None:
        """Why this change holds the entity under ``policy``, or None when it flows through."""
        problems = []
        if self.missing_keys:
            problems.append(f"business key column(s) {', '.join(self.missing_keys)} missing")
        if self.missing and policy["missing_columns"] == "hold":
            problems.append(f"column(s) {', '.join(self.missing)} missing (ingest.schema_changes.missing_columns: hold)")
        if self.added and policy["added_columns"] == "hold":
            problems.append(f"new column(s) {', '.join(self.added)} (ingest.schema_changes.added_columns: hold)")
        return "; ".join(problems) or None


def schema_policy(config: Config) -> dict[str, str]:
    """``ingest.schema_changes`` with defaults; a ConfigError names a bad key or value."""
    given = config.section("ingest").get("schema_changes") or {}
    unknown = sorted(set(given) - set(DEFAULT_POLICY))
    if unknown:
        raise ConfigError(f"ingest.schema_changes: unknown key(s) {unknown}; expected some of {sorted(DEFAULT_POLICY)}")
    policy = {**DEFAULT_POLICY, **given}
    for key, value in policy.items():
        if value not in POLICIES:
            raise ConfigError(f"ingest.schema_changes.{key}: expected one of {', '.join(POLICIES)}, found {value!r}")
    return policy


def schema_change(columns: tuple[str, ...], system: SourceSystem, entity: SourceEntity) -> SchemaChange:
    """Compare a file's header ``columns`` with the mapping of ``system``'s ``entity``."""
    if system.format == "fhir":
        return SchemaChange()  # the raw columns of a FHIR entity are its mapping's, whatever the resources hold
    header = {raw_column_name(c) for c in columns if c.strip()}
    mapped = {raw_column_name(source): source for source in entity.columns.values()}
    added = tuple(c for c in columns if c.strip() and raw_column_name(c) not in mapped)
    if system.format == "json":
        return SchemaChange(added=added)
    key_sources = {
        raw_column_name(entity.columns[local])
        for key in BUSINESS_KEYS[entity.entity]
        if (local := SURROGATE_KEYS.get(key, key)) in entity.columns
    }
    absent = [name for name in mapped if name not in header]
    return SchemaChange(
        added=added,
        missing=tuple(mapped[n] for n in absent if n not in key_sources),
        missing_keys=tuple(mapped[n] for n in absent if n in key_sources),
    )
