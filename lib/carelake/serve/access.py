"""Role-based SQL access: one database of views per role over the served zone databases.

``access.roles`` in the config names the roles that exist; what each role may see is fixed here,
so a config typo cannot widen it:

- ``analyst`` -> database ``analyst``: curated tables only, with any patient-identifying column
  (see :data:`PII_COLUMNS`) removed even if one ever reached curated.
- ``clinician: {hospital: <source system> | [<source system>, ...]}`` -> one database
  ``clinician_<hospital>`` each: curated and processed tables, rows of that hospital only (row
  filter on ``source_system``, ``patient_source_system``, ``_source_system`` or ``hospital``), names and
  contact details from ``processed.patients_pii`` in clear (treatment needs them), SSN masked
  to its last four digits; tables with patient data but no hospital column, raw tables and the
  quarantine are not exposed.
- ``engineer`` -> database ``engineer``: every table of every served zone as is, quarantine
  included (the role that debugs the pipeline; grant it sparingly), except the direct
  identifiers' tables (``*_pii``, see :mod:`carelake.privacy.restricted`).

Views read ``<zone>.<table>`` as registered by :func:`carelake.serve.catalog.register_tables`
and are named ``<role database>.<zone>__<table>``. Plain Spark has no authorization: these
views shape what a role is *given*, they do not stop a client from querying the zone databases
(see docs/security.md for what a deployment must add).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql.types import StructType

from carelake.config import Config, ConfigError
from carelake.privacy.restricted import DIRECT_IDENTIFIERS, MATCHING_TABLES, PII_SUFFIX
from carelake.serve.catalog import SERVED_ZONES, quote

log = logging.getLogger(__name__)

ROLES = ("analyst", "clinician", "engineer")
ROLE_PROPERTY = "carelake.role"
# On each role database: a digest of its views' definitions and the schemas under them.
VIEWS_PROPERTY = "carelake.views"
# Columns that identify a patient directly, or through an unkeyed (guessable) hash.
PII_COLUMNS = frozenset(
    {"first_name", "last_name", "ssn", "phone", "email", "street_address", "birth_date", "mrn",
     "patient_id", "patient_key", "raw_payload", "_raw_payload"}
)
# A clinician treats the hospital's own patients and needs them by name; raw payloads stay hidden.
CLINICIAN_HIDDEN = frozenset({"raw_payload", "_raw_payload"})
PATIENT_COLUMNS = frozenset({"patient_key", "patient_token", "patient_sk", "patient_id"})
# The KPI marts name the source system of their rows `hospital`.
HOSPITAL_COLUMNS = ("source_system", "patient_source_system", "_source_system", "hospital")
# Raw payloads of failed rows carry whatever the source sent, identifiers included.
CLINICIAN_RESTRICTED = frozenset({"_quarantine", *MATCHING_TABLES})
ENGINEER_RESTRICTED = frozenset({*(f"{entity}{PII_SUFFIX}" for entity in DIRECT_IDENTIFIERS), *MATCHING_TABLES})
MASKED_SSN = "concat('***-**-', right({col}, 4))"


@dataclass(frozen=True)
class RolePolicy:
    """What one role database shows: zones, columns dropped, columns masked, a row filter."""

    database: str
    role: str
    zones: tuple[str, ...]
    drop_columns: frozenset[str] = frozenset()
    mask_columns: Mapping[str, str] | None = None  # column -> SQL template with {col}
    hospital: str | None = None  # rows of this source system only
    restricted_tables: frozenset[str] = frozenset()


def role_policies(config: Config) -> list[RolePolicy]:
    """The role databases ``access.roles`` asks for; a clear error for an unknown role or a
    clinician without a configured hospital."""
    roles: Mapping[str, Any] = config.section("access").get("roles") or {}
    where = f"{config.source_file}: access.roles"
    policies = []
    for role, block in roles.items():
        if role not in ROLES:
            raise ConfigError(f"{where}: unknown role {role!r}, expected one of {', '.join(ROLES)}")
        if role == "analyst":
            policies.append(RolePolicy("analyst", role, ("curated",), drop_columns=PII_COLUMNS))
        elif role == "engineer":
            policies.append(RolePolicy("engineer", role, SERVED_ZONES, restricted_tables=ENGINEER_RESTRICTED))
        else:
            hospitals = (block or {}).get("hospital")
            hospitals = [hospitals] if isinstance(hospitals, str) else list(hospitals or [])
            if not hospitals:
                raise ConfigError(f"{where}.clinician: 'hospital' (a source system or a list) is required")
            for hospital in hospitals:
                if hospital not in config.sources:
                    raise ConfigError(
                        f"{where}.clinician.hospital: {hospital!r} is not a configured source system "
                        f"(known: {', '.join(sorted(config.sources))})"
                    )
                policies.append(
                    RolePolicy(
                        f"clinician_{hospital}", role, ("curated", "processed"),
                        drop_columns=CLINICIAN_HIDDEN,
                        mask_columns={"ssn": MASKED_SSN},
                        hospital=hospital,
                        restricted_tables=CLINICIAN_RESTRICTED,
                    )
                )
    return policies


@dataclass(frozen=True)
class ViewPlan:
    """What a role's view of one table keeps: columns (in order), masked ones, a hospital filter."""

    columns: tuple[str, ...]
    masks: Mapping[str, str]
    hospital_column: str | None = None
    hospital: str | None = None


def view_plan(policy: RolePolicy, columns: list[str]) -> ViewPlan | None:
    """How ``policy`` shows a table of ``columns``, or ``None`` when the role must not see it at
    all. The SQL views (:func:`view_sql`) and the HTTP API (``carelake.serve.api``) both follow it."""
    kept = tuple(c for c in columns if c not in policy.drop_columns)
    if not kept:
        return None
    masks = {c: sql for c, sql in (policy.mask_columns or {}).items() if c in kept}
    if policy.hospital is None:
        return ViewPlan(kept, masks)
    hospital_col = next((c for c in HOSPITAL_COLUMNS if c in columns), None)
    if hospital_col is None:
        if PATIENT_COLUMNS & set(columns):
            return None  # patient rows that cannot be attributed to a hospital: fail closed
        return ViewPlan(kept, masks)
    return ViewPlan(kept, masks, hospital_col, policy.hospital)


def view_sql(policy: RolePolicy, source: str, columns: list[str]) -> str | None:
    """The ``SELECT`` a role's view of table ``source`` (columns ``columns``) runs, or ``None``
    when the role must not see the table at all."""
    plan = view_plan(policy, columns)
    if plan is None:
        return None
    where = ""
    if plan.hospital_column is not None:
        literal = "'" + str(plan.hospital).replace("'", "''") + "'"
        where = f" WHERE {quote(plan.hospital_column)} = {literal}"
    select = ", ".join(
        f"{plan.masks[c].format(col=quote(c))} AS {quote(c)}" if c in plan.masks else quote(c)
        for c in plan.columns
    )
    return f"SELECT {select} FROM {source}{where}"


def _databases(spark: SparkSession) -> set[str]:
    return {row[0] for row in spark.sql("SHOW DATABASES").collect()}


def _stored_digest(spark: SparkSession, database: str) -> str | None:
    """The :data:`VIEWS_PROPERTY` digest :func:`create_role_views` left on ``database``."""
    for row in spark.sql(f"DESCRIBE DATABASE EXTENDED {quote(database)}").collect():
        if row["info_name"] == "Properties":
            # Shown as ((key,value), (key,value)); the digest is hex, so the match is exact.
            found = re.search(rf"\({re.escape(VIEWS_PROPERTY)},([0-9a-f]{{64}})\)", row["info_value"] or "")
            return found.group(1) if found else None
    return None


def _role_views(
    spark: SparkSession, policy: RolePolicy, present: set[str], schemas: dict[str, StructType]
) -> dict[str, tuple[str, str]]:
    """``{view name: (source table, SELECT)}`` for ``policy`` over the tables now in its zone
    databases (of the ``present`` ones); ``schemas`` caches each source's schema across policies."""
    views = {}
    for zone in policy.zones:
        if zone not in present:
            continue
        for table in spark.catalog.listTables(zone):
            if table.isTemporary or table.name in policy.restricted_tables:
                continue
            source = f"{quote(zone)}.{quote(table.name)}"
            if source not in schemas:
                schemas[source] = spark.table(source).schema
            sql = view_sql(policy, source, schemas[source].fieldNames())
            if sql is not None:
                views[f"{zone}__{table.name}"] = (source, sql)
    return views


def create_role_views(spark: SparkSession, config: Config) -> dict[str, list[str]]:
    """Bring the views of every role database in line with the tables now in the zone databases.

    A database is rebuilt only when its views' definitions or the schemas under them changed
    since the last build (a digest kept as the database property :data:`VIEWS_PROPERTY`), so a
    periodic refresh with nothing new leaves the views alone. A rebuild drops the views this
    function made earlier that no longer apply; other objects in the role databases are left
    alone. Returns ``{role database: [view names]}``.
    """
    created: dict[str, list[str]] = {}
    schemas: dict[str, StructType] = {}
    present = _databases(spark)
    for policy in role_policies(config):
        views = _role_views(spark, policy, present, schemas)
        # A column's type is part of a view's contract too, so the digest covers the schemas.
        definition = sorted((name, sql, schemas[source].json()) for name, (source, sql) in views.items())
        digest = hashlib.sha256(json.dumps(definition).encode()).hexdigest()
        created[policy.database] = sorted(views)
        database = quote(policy.database)
        if policy.database in present and _stored_digest(spark, policy.database) == digest:
            continue
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {database}")
        stale = _own_views(spark, policy.database) - set(views)
        for name, (_, sql) in views.items():
            spark.sql(
                f"CREATE OR REPLACE VIEW {database}.{quote(name)} "
                f"TBLPROPERTIES ('{ROLE_PROPERTY}' = '{policy.role}') AS {sql}"
            )
        for name in stale:
            spark.sql(f"DROP VIEW IF EXISTS {database}.{quote(name)}")
        spark.sql(f"ALTER DATABASE {database} SET DBPROPERTIES ('{VIEWS_PROPERTY}' = '{digest}')")
        log.info("role database %s: %d views", policy.database, len(views))
    return created


def _own_views(spark: SparkSession, database: str) -> set[str]:
    """Views in ``database`` that :func:`create_role_views` created (they carry the role property)."""
    own = set()
    for table in spark.catalog.listTables(database):
        if table.isTemporary or table.tableType != "VIEW":
            continue
        props = spark.sql(f"SHOW TBLPROPERTIES {quote(database)}.{quote(table.name)}").collect()
        if any(r["key"] == ROLE_PROPERTY for r in props):
            own.add(table.name)
    return own
