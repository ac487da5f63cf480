"""A persistent SQL catalog of the lakehouse's Delta tables: ``curated.<table>`` and friends.

With Delta Lake's classes in the session (the Delta SQL extension and ``DeltaCatalog``, which
``make setup`` configures), each table is a catalog table
``CREATE TABLE <zone>.<table> USING delta LOCATION '<uri>'``. The metastore keeps only its name
and location; every query reads the latest commit, and its schema, from the Delta log. So a
running server sees new commits and schema changes at once and refreshes only to pick up new
and dropped tables. Any Spark with the Delta jars reads these entries, the stock
``spark-submit --class ...HiveThriftServer2`` included.

Without Delta's classes (the ``rs`` engine) a table is a Python data source instead. Spark 4.2
hands one no options when it reads a catalog table declared ``USING carelake`` (neither
``OPTIONS`` nor ``LOCATION`` arrive), and direct queries on files are refused for Python
sources; options written in a table reference do arrive:
``SELECT * FROM t WITH ('uri' = '...')``. So each Delta table gets

- a stub table ``carelake_sources.<zone>__<table> (<schema>) USING carelake``, which fixes the
  schema (Spark would otherwise ask the source for it, without options), and
- a persistent view ``<zone>.<table>`` selecting from the stub ``WITH ('uri' = '<table uri>')``,
  recreated when the table's schema changes.

Both forms live in the Hive metastore, so they survive restarts and need no set-up by clients;
the stub form needs ``carelake`` installed for the server's Python workers (``pyspark_carelake``
registers the source in every session).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from pyarrow import fs as pafs
from pyspark.sql import SparkSession

from carelake.config import Config, ConfigError
from carelake.delta import DeltaTables, open_tables
from carelake.delta.api import jvm_delta_available
from carelake.delta.datasource import FORMAT
from carelake.delta.storage import encode_options, filesystem, storage_options
from carelake.spark import build_session
from carelake.storage import is_remote, join_uri, table_uri, to_local_path

SERVED_ZONES = ("raw", "processed", "curated")
SOURCES_DATABASE = "carelake_sources"
URI_PROPERTY = "carelake.uri"
SCHEMA_PROPERTY = "carelake.schema"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedTable:
    """A Delta table found in a zone: its SQL name parts and its URI."""

    zone: str
    name: str
    uri: str

    @property
    def qualified_name(self) -> str:
        """``<zone>.<table>``, quoted for SQL."""
        return f"{quote(self.zone)}.{quote(self.name)}"

    @property
    def stub_name(self) -> str:
        """The schema-carrying stub table in :data:`SOURCES_DATABASE`, quoted for SQL."""
        return f"{quote(SOURCES_DATABASE)}.{quote(f'{self.zone}__{self.name}')}"


@dataclass(frozen=True)
class CatalogEntry:
    """What the metastore holds under ``<zone>.<name>``: its type (``VIEW``, ``EXTERNAL``,
    ``MANAGED``), provider, location and, for a stub view, the carelake properties."""

    zone: str
    name: str
    table_type: str
    provider: str | None
    location: str | None
    properties: dict[str, str]

    @property
    def is_delta_table(self) -> bool:
        """An external Delta table (dropping it keeps its files)."""
        return self.table_type == "EXTERNAL" and (self.provider or "").lower() == "delta"

    @property
    def is_ours(self) -> bool:
        """Made by :func:`register_tables`: a stub view (it carries :data:`URI_PROPERTY`) or an
        external Delta table at ``.../<zone>/<name>`` under whichever lakehouse root."""
        if self.table_type == "VIEW":
            return URI_PROPERTY in self.properties
        location = (self.location or "").rstrip("/")
        return self.is_delta_table and location.lower().endswith(f"/{self.zone}/{self.name}".lower())


def quote(identifier: str) -> str:
    """A SQL identifier in backticks (backticks inside doubled)."""
    return "`" + identifier.replace("`", "``") + "`"


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def metastore_conf(config: Config) -> dict[str, str]:
    """Spark settings for a Hive-enabled session whose Derby metastore and warehouse persist.

    Defaults: ``<root>/_metastore`` and ``<root>/_warehouse``. ``serve.metastore_dir`` and
    ``serve.warehouse_dir`` override them; the metastore one is required when the root is an
    object store, since Derby needs a local folder.
    """
    section = config.section("serve")
    remote = is_remote(config.root)
    if section.get("metastore_dir") is None and remote:
        raise ConfigError(
            f"{config.source_file}: key 'serve.metastore_dir' is required when lakehouse.root "
            f"is an object store ({config.root}): the Derby metastore needs a local folder"
        )
    root = config.root if remote else to_local_path(config.root)
    metastore = to_local_path(str(section.get("metastore_dir") or join_uri(root, "_metastore")))
    warehouse = str(section.get("warehouse_dir") or join_uri(root, "_warehouse"))
    os.makedirs(metastore, exist_ok=True)
    # Derby writes derby.log into the working directory unless told otherwise.
    java_options = " ".join(
        part
        for part in (
            config.spark_conf.get("spark.driver.extraJavaOptions", ""),
            f"-Dderby.system.home={metastore}",
            f"-Dderby.stream.error.file={metastore}/derby.log",
        )
        if part
    )
    return {
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": warehouse,
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={metastore}/metastore_db;create=true"
        ),
        "spark.driver.extraJavaOptions": java_options,
    }


def discover_tables(config: Config) -> list[ServedTable]:
    """Every Delta table (a folder holding ``_delta_log/``) directly under the served zones."""
    options = storage_options(config)
    found = []
    for zone in SERVED_ZONES:
        zone_uri = table_uri(config, zone, "")
        fs, base = filesystem(zone_uri, options)
        selector = pafs.FileSelector(base.rstrip("/"), recursive=False, allow_not_found=True)
        for info in fs.get_file_info(selector):
            if info.type != pafs.FileType.Directory:
                continue
            log_info = fs.get_file_info(f"{info.path.rstrip('/')}/_delta_log")
            if log_info.type == pafs.FileType.Directory:
                found.append(ServedTable(zone, info.base_name, table_uri(config, zone, info.base_name)))
    return sorted(found, key=lambda t: (t.zone, t.name))


def same_location(location: str, uri: str) -> bool:
    """True when the metastore ``location`` (``file:/x``, ``s3a://b/x``) names the table ``uri``."""

    def normal(text: str) -> str:
        parsed = urlparse(text)
        if parsed.scheme in ("", "file"):
            return os.path.normpath(parsed.path if parsed.scheme else text)
        scheme = "s3" if parsed.scheme == "s3a" else parsed.scheme
        return f"{scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"

    return normal(location) == normal(uri)


def _option(value: Any) -> Any:
    """A Scala ``Option`` from py4j as its value or None."""
    return value.get() if value.isDefined() else None


def catalog_entries(spark: SparkSession, zone: str) -> dict[str, CatalogEntry]:
    """The metastore's tables and views in ``zone`` by (lower-case) name, read from the metastore
    alone: no Delta log or data source is opened, so a refresh stays cheap."""
    metastore = spark._jsparkSession.sharedState().externalCatalog()
    entries = {}
    for row in spark.sql(f"SHOW TABLES IN {quote(zone)}").collect():
        if row["isTemporary"]:
            continue
        table = metastore.getTable(zone, row["tableName"])
        location = _option(table.storage().locationUri())
        properties = {
            key: value
            for key in (URI_PROPERTY, SCHEMA_PROPERTY)
            if (value := _option(table.properties().get(key))) is not None
        }
        entries[row["tableName"]] = CatalogEntry(
            zone,
            row["tableName"],
            table.tableType().name(),
            _option(table.provider()),
            None if location is None else location.toString(),
            properties,
        )
    return entries


def _drop(spark: SparkSession, entry: CatalogEntry) -> None:
    """Drop one of our entries; an external Delta table's files stay where they are."""
    served = ServedTable(entry.zone, entry.name, "")
    if entry.table_type == "VIEW":
        spark.sql(f"DROP VIEW IF EXISTS {served.qualified_name}")
        spark.sql(f"DROP TABLE IF EXISTS {served.stub_name}")
    else:
        spark.sql(f"DROP TABLE IF EXISTS {served.qualified_name}")


def _schema_ddl(spark: SparkSession, schema_json: str) -> str:
    # The JVM's own DDL printer quotes odd field names and nested types correctly.
    return spark._jvm.org.apache.spark.sql.types.DataType.fromJson(schema_json).toDDL()


def _create_delta_table(spark: SparkSession, table: ServedTable, entry: CatalogEntry | None) -> bool:
    """Serve ``table`` as ``CREATE TABLE ... USING delta LOCATION``; False when it already is."""
    if entry is not None and entry.is_delta_table and same_location(entry.location or "", table.uri):
        return False
    if entry is not None:
        _drop(spark, entry)  # a stub view from the rs engine, or a table at an old location
    spark.sql(f"CREATE TABLE {table.qualified_name} USING delta LOCATION {_literal(table.uri)}")
    return True


def _create_stub_view(
    spark: SparkSession, table: ServedTable, entry: CatalogEntry | None, tables: DeltaTables, encoded_options: str
) -> bool:
    """Serve ``table`` as a stub plus a view ``WITH ('uri' = ...)``; False when it already is,
    at the same URI and schema."""
    schema_json = tables.read(table.uri).schema.json()
    # A digest, not the schema: metastore property values are length-limited.
    schema_digest = hashlib.sha256(schema_json.encode()).hexdigest()
    wanted = {URI_PROPERTY: table.uri, SCHEMA_PROPERTY: schema_digest}
    if entry is not None and entry.table_type == "VIEW" and entry.properties == wanted:
        return False
    if entry is not None:
        _drop(spark, entry)
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {quote(SOURCES_DATABASE)}")
    spark.sql(f"CREATE TABLE {table.stub_name} ({_schema_ddl(spark, schema_json)}) USING {FORMAT}")
    with_options = f"'uri' = {_literal(table.uri)}"
    if encoded_options != "{}":
        with_options += f", 'storage_options' = {_literal(encoded_options)}"
    properties = ", ".join(f"{_literal(k)} = {_literal(v)}" for k, v in wanted.items())
    spark.sql(
        f"CREATE VIEW {table.qualified_name} TBLPROPERTIES ({properties}) "
        f"AS SELECT * FROM {table.stub_name} WITH ({with_options})"
    )
    return True


def register_tables(spark: SparkSession, config: Config) -> list[str]:
    """Make every Delta table of the served zones queryable as ``<zone>.<table>``.

    Needs a Hive-enabled ``spark`` (see :func:`metastore_conf`). Creates the zone databases and
    serves each table as a Delta catalog table when the session has Delta's classes, else as a
    stub view (see the module doc); replaces an entry of the other form or at an old location,
    and drops the entries of tables that are gone. Objects it did not create are left alone,
    and a table whose name one of them holds is not served. Then brings the role databases
    (``access.roles``) up to date. Returns the ``<zone>.<table>`` names now served, sorted.
    """
    if spark.conf.get("spark.sql.catalogImplementation", "in-memory") != "hive":
        raise ConfigError(
            "register_tables needs a Hive-enabled session (spark.sql.catalogImplementation=hive), "
            "found " + spark.conf.get("spark.sql.catalogImplementation", "in-memory")
        )
    tables = open_tables(spark, config)  # fails clearly when delta.engine is jvm but Delta is absent
    # Serving only reads, so Delta's own catalog serves whenever it loads, even with delta.engine
    # rs: a Python source cannot be declared under DeltaCatalog.
    delta_catalog, _ = jvm_delta_available(spark)
    encoded_options = encode_options(storage_options(config))
    for zone in SERVED_ZONES:
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {quote(zone)}")
    existing = {zone: catalog_entries(spark, zone) for zone in SERVED_ZONES}
    served = []
    for table in discover_tables(config):
        entry = existing[table.zone].pop(table.name.lower(), None)
        if entry is not None and not entry.is_ours:
            log.warning("not serving %s: the name holds an object carelake did not create", table.qualified_name)
            continue
        if delta_catalog:
            created = _create_delta_table(spark, table, entry)
        else:
            created = _create_stub_view(spark, table, entry, tables, encoded_options)
        if created:
            log.info("serving %s from %s", table.qualified_name, table.uri)
        served.append(f"{table.zone}.{table.name}")
    for gone in (entry for entries in existing.values() for entry in entries.values()):
        if gone.is_ours:
            _drop(spark, gone)
            log.info("dropped %s.%s: its Delta table is gone", gone.zone, gone.name)
    if config.section("access").get("roles"):
        from carelake.serve.access import create_role_views  # access builds on this module

        create_role_views(spark, config)
    return sorted(served)


def register(config: Config) -> int:
    """``carelake register``: refresh the metastore catalog once, print what is served.

    Opens the Derby metastore itself, so no Thrift server may be running on it (a running
    server refreshes its own catalog every ``serve.refresh_seconds`` and on SIGHUP). Returns 0.
    """
    spark = build_session(config, extra_conf=metastore_conf(config))
    try:
        served = register_tables(spark, config)
    finally:
        spark.stop()
    print(f"registered {len(served)} tables in the metastore under {config.root}")
    for name in served:
        print(f"  {name}")
    return 0
