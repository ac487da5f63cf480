"""Build a SparkSession from configuration.

Local ``local[*]`` by default; when the process was started by ``spark-submit`` the master it
chose wins. ``PYSPARK_PYTHON`` is pinned to the running interpreter so Python workers import the
same installed ``carelake``. An object-store root adds the S3A settings of its ``storage``
section as ``spark.hadoop.fs.s3a.*`` (keys in ``spark.conf`` win; no secret is ever among them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping

from pyspark.sql import SparkSession

from carelake.config import Config
from carelake.storage.objectstore import s3a_options

MIN_JAVA = 17


class JavaError(RuntimeError):
    """Java is missing or too old for Spark 4."""


def _java_binary() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = os.path.join(home, "bin", "java")
        if os.path.exists(candidate):
            return candidate
    return shutil.which("java")


def check_java() -> int:
    """Return the Java major version, or raise :class:`JavaError` saying what to install."""
    java = _java_binary()
    if java is None:
        raise JavaError(
            "Java not found: Spark 4 needs Java 17 or newer. Install OpenJDK 17 "
            "(e.g. `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME."
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    text = out.stderr + out.stdout
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not match:
        raise JavaError(f"could not read the Java version from `{java} -version`: {text.strip()[:200]}")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise JavaError(f"Java {major} found at {java}: Spark 4 needs Java {MIN_JAVA} or newer")
    return major


def _launched_by_spark_submit() -> bool:
    return "PYSPARK_GATEWAY_PORT" in os.environ or SparkSession.getActiveSession() is not None


HADOOP_PREFIX = "spark.hadoop."
S3A_PREFIX = HADOOP_PREFIX + "fs.s3a."


def object_store_conf(config: Config) -> dict[str, str]:
    """The S3A settings of ``config`` as Spark settings (``spark.hadoop.fs.s3a.*``); {} for local roots."""
    return {HADOOP_PREFIX + key: value for key, value in s3a_options(config).items()}


def apply_object_store_conf(spark: SparkSession, config: Config) -> None:
    """Put ``config``'s S3A settings (``spark.conf`` overrides included) on a running session.

    For a session that was started before ``config`` was known (a notebook's, the test suite's):
    its Hadoop configuration is shared by every later read and write. An S3A filesystem already
    opened for a bucket keeps the settings it was opened with. No-op for Spark Connect sessions.
    """
    _set_s3a(spark, {**object_store_conf(config), **config.spark_conf})


def _set_s3a(spark: SparkSession, settings: Mapping[str, str]) -> None:
    jsc = getattr(spark, "_jsc", None)
    if jsc is None:
        return
    hadoop = jsc.hadoopConfiguration()
    for key, value in settings.items():
        if key.startswith(S3A_PREFIX):
            hadoop.set(key[len(HADOOP_PREFIX):], value)


def build_session(config: Config, extra_conf: Mapping[str, str] | None = None) -> SparkSession:
    """A SparkSession configured from ``config`` (plus ``extra_conf``), logs quieted."""
    check_java()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # Bind to loopback: no firewall prompts, no traffic off the machine for local runs.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(config.spark_app_name)
    if not _launched_by_spark_submit():
        builder = builder.master(config.spark_master)
    settings = {**object_store_conf(config), **config.spark_conf, **(extra_conf or {})}
    # The Delta jars fetched by `make setup` (none on Databricks or with spark.jars.packages).
    from carelake.spark.jvm_deps import session_conf  # imported here: it runs as a script too

    settings.update(session_conf(settings))
    # OpenLineage's listener, when its jar was fetched and lineage is on (carelake.lineage).
    from carelake.lineage.settings import spark_listener_conf
    from carelake.spark.jvm_deps import fetched_jars

    listener = {k: v for k, v in spark_listener_conf(config, fetched_jars()).items() if k not in settings}
    settings.update(listener)
    settings.setdefault("spark.executorEnv.PYSPARK_PYTHON", os.environ["PYSPARK_PYTHON"])
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    # getOrCreate may return a session started earlier, whose Hadoop settings predate config.
    _set_s3a(spark, settings)
    spark.sparkContext.setLogLevel(config.spark_log_level)
    if listener:
        _quiet_lineage_listener(spark)
    return spark


def _quiet_lineage_listener(spark: SparkSession) -> None:
    """The listener logs an ERROR for every SQL execution it finds no plan for (Delta's internal
    log queries) and a WARN for every read of a source it cannot name (the landing files' Python
    data source, whose files the stage events list); table reads and writes still get events."""
    jvm = getattr(spark.sparkContext, "_jvm", None)
    if jvm is None:
        return
    configurator, level = jvm.org.apache.logging.log4j.core.config.Configurator, jvm.org.apache.logging.log4j.Level
    configurator.setLevel("io.openlineage", level.ERROR)
    configurator.setLevel("io.openlineage.spark.agent.lifecycle.ContextFactory", level.OFF)
