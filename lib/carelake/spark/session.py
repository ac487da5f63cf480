"""Build a SparkSession from configuration.

Local ``local[*]`` by default; when the process was started by ``spark-submit`` the master it
chose wins. ``PYSPARK_PYTHON`` is pinned to the running interpreter so Python workers import the
same installed ``carelake``.
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
    settings = {**config.spark_conf, **(extra_conf or {})}
    # The Delta jars fetched by `make setup` (none on Databricks or with spark.jars.packages).
    from carelake.spark.jvm_deps import session_conf  # imported here: it runs as a script too

    settings.update(session_conf(settings))
    settings.setdefault("spark.executorEnv.PYSPARK_PYTHON", os.environ["PYSPARK_PYTHON"])
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(config.spark_log_level)
    return spark
