"""A persistent SQL catalog of the lakehouse's Delta tables: ``curated.<table>`` and friends.

Spark 4.2 hands a Python data source no options when it reads a catalog table declared
``USING carelake`` (neither ``OPTIONS`` nor ``LOCATION`` arrive), and direct queries on files
are refused for Python sources. Options written in a table reference do arrive:
``SELECT * FROM t WITH ('uri' = '...')``. So each Delta table gets

- a stub table ``carelake_sources.<zone>__<table> (<schema>) USING carelake``, which fixes the
  schema (Spark would otherwise ask the source for it, without options), and
- a persistent view ``<zone>.<table>`` selecting from the stub ``WITH ('uri' = '<table uri>')``.

Both live in the Hive metastore, so they survive restarts and need no Python set-up by
clients; the server's Python workers only need ``carelake`` installed (``pyspark_carelake``
registers the source in every session).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass

from pyarrow import fs as pafs
from pyspark.sql import SparkSession

from carelake.config import Config, ConfigError
from carelake.delta import open_tables
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


def _schema_ddl(spark: SparkSession, schema_json: str) -> str:
    # The JVM's own DDL printer quotes odd field names and nested types correctly.
    return spark._jvm.org.apache.spark.sql.types.DataType.fromJson(schema_json).toDDL()


def _registered_views(spark: SparkSession, zone: str) -> dict[str, dict[str, str]]:
    """Views in ``zone`` created by :func:`register_tables`, with their carelake properties."""
    views = {}
    for row in spark.sql(f"SHOW VIEWS IN {quote(zone)}").collect():
        if row["isTemporary"]:
            continue
        props = {
            r["key"]: r["value"]
            for r in spark.sql(f"SHOW TBLPROPERTIES {quote(zone)}.{quote(row['viewName'])}").collect()
        }
        if URI_PROPERTY in props:
            views[row["viewName"]] = props
    return views


def register_tables(spark: SparkSession, config: Config) -> list[str]:
    """Make every Delta table of the served zones queryable as ``<zone>.<table>``.

    Needs a Hive-enabled ``spark`` (see :func:`metastore_conf`). Creates the zone databases,
    adds views for new tables, recreates those whose URI or schema changed, and drops the
    views (and stubs) of tables that are gone; views it did not create are left alone.
    Returns the ``<zone>.<table>`` names now served, sorted.
    """
    if spark.conf.get("spark.sql.catalogImplementation", "in-memory") != "hive":
        raise ConfigError(
            "register_tables needs a Hive-enabled session (spark.sql.catalogImplementation=hive), "
            "found " + spark.conf.get("spark.sql.catalogImplementation", "in-memory")
        )
    tables = open_tables(spark, config)
    encoded_options = encode_options(storage_options(config))
    for database in (SOURCES_DATABASE, *SERVED_ZONES):
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {quote(database)}")
    existing = {zone: _registered_views(spark, zone) for zone in SERVED_ZONES}
    served = []
    changed = False
    for table in discover_tables(config):
        schema_json = tables.read(table.uri).schema.json()
        # A digest, not the schema: metastore property values are length-limited.
        schema_digest = hashlib.sha256(schema_json.encode()).hexdigest()
        props = existing[table.zone].pop(table.name.lower(), None)
        served.append(f"{table.zone}.{table.name}")
        if props and props.get(URI_PROPERTY) == table.uri and props.get(SCHEMA_PROPERTY) == schema_digest:
            continue
        changed = True
        ddl = _schema_ddl(spark, schema_json)
        spark.sql(f"DROP VIEW IF EXISTS {table.qualified_name}")
        spark.sql(f"DROP TABLE IF EXISTS {table.stub_name}")
        spark.sql(f"CREATE TABLE {table.stub_name} ({ddl}) USING {FORMAT}")
        with_options = f"'uri' = {_literal(table.uri)}"
        if encoded_options != "{}":
            with_options += f", 'storage_options' = {_literal(encoded_options)}"
        properties = (
            f"{_literal(URI_PROPERTY)} = {_literal(table.uri)}, "
            f"{_literal(SCHEMA_PROPERTY)} = {_literal(schema_digest)}"
        )
        spark.sql(
            f"CREATE VIEW {table.qualified_name} TBLPROPERTIES ({properties}) "
            f"AS SELECT * FROM {table.stub_name} WITH ({with_options})"
        )
        log.info("serving %s from %s", table.qualified_name, table.uri)
    for zone, gone in existing.items():
        changed |= bool(gone)
        for name in gone:
            dropped = ServedTable(zone, name, "")
            spark.sql(f"DROP VIEW IF EXISTS {dropped.qualified_name}")
            spark.sql(f"DROP TABLE IF EXISTS {dropped.stub_name}")
            log.info("dropped %s: its Delta table is gone", dropped.qualified_name)
    if config.section("access").get("roles"):
        from carelake.serve.access import (  # access builds on this module
            create_role_views,
            role_database_missing,
        )

        # Role views only change with the tables under them (or the roles): a periodic refresh
        # with nothing new leaves them alone.
        if changed or role_database_missing(spark, config):
            create_role_views(spark, config)
    return sorted(served)


def register(config: Config) -> int:
    """``carelake register``: refresh the metastore catalog once, print what is served.

    Opens the Derby metastore itself, so no Thrift server may be running on it (a running
    server refreshes its own catalog every ``serve.refresh_seconds``). Returns 0.
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
