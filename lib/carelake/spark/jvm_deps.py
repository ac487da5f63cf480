"""The JVM artifacts carelake runs with (Delta Lake, hadoop-aws + AWS SDK), fetched by Maven.

``infra/jvm/pom.xml`` declares them; ``python -m carelake.spark.jvm_deps fetch`` (run by
``make setup``) copies them into ``<checkout>/.jvm/jars`` with the ordinary ``mvn`` client and
writes ``spark-defaults.conf`` and ``spark-env.sh`` into the SPARK_HOME of the installed
pyspark, so every Spark the project starts — this package's sessions, ``spark-submit``, the
Thrift server, a standalone cluster on this machine — gets the same classpath, Delta SQL
extension and catalog, and the project's interpreter for Python workers.

The jars go on ``extraClassPath`` (driver and executors), not ``spark.jars``: every process runs
on this machine, so nothing (the AWS SDK bundle is ~650 MB) is copied to executors.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

DELTA_EXTENSION = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
# Already shipped by pip pyspark (pyspark/jars): one copy of each on the classpath.
SHIPPED_BY_PYSPARK = "org.apache.logging.log4j,org.slf4j,com.google.code.findbugs"
JARS_DIR_ENV = "CARELAKE_JARS_DIR"
MAVEN_SETTINGS_ENV = "CARELAKE_MAVEN_SETTINGS"
# Written by fetch into spark-defaults.conf, so a later fetch replaces only its own block.
BEGIN_MARK = "# >>> carelake JVM dependencies (python -m carelake.spark.jvm_deps fetch) >>>"
END_MARK = "# <<< carelake JVM dependencies <<<"


class JvmDepsError(RuntimeError):
    """The JVM dependencies could not be fetched; the message says what to run instead."""


def checkout_root() -> Path:
    """The checkout this package is installed from (``lib/carelake`` lives two levels down)."""
    return Path(__file__).resolve().parents[3]


def pom_path() -> Path:
    """The Maven project that declares the JVM dependencies."""
    return checkout_root() / "infra" / "jvm" / "pom.xml"


def jars_dir() -> Path:
    """Where the fetched jars live: ``$CARELAKE_JARS_DIR`` or ``<checkout>/.jvm/jars``."""
    configured = os.environ.get(JARS_DIR_ENV)
    return Path(configured).resolve() if configured else checkout_root() / ".jvm" / "jars"


def fetched_jars(directory: Path | None = None) -> list[Path]:
    """The jars in ``directory`` (default :func:`jars_dir`), sorted; empty when none or no Delta."""
    directory = directory or jars_dir()
    jars = sorted(directory.glob("*.jar")) if directory.is_dir() else []
    return jars if any(j.name.startswith("delta-spark_") for j in jars) else []


def spark_home() -> Path:
    """The SPARK_HOME of the installed pyspark (its package folder)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def delta_spark_conf(jars: list[Path], python: str | None = None) -> dict[str, str]:
    """Spark settings that put ``jars`` on the driver and executor classpath with the Delta SQL
    extension and catalog; ``python`` (default this interpreter) runs the Python workers."""
    classpath = os.pathsep.join(str(j) for j in jars)
    python = python or sys.executable
    return {
        "spark.driver.extraClassPath": classpath,
        "spark.executor.extraClassPath": classpath,
        "spark.sql.extensions": DELTA_EXTENSION,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG,
        "spark.pyspark.python": python,
        "spark.pyspark.driver.python": python,
    }


def session_conf(configured: Mapping[str, str]) -> dict[str, str]:
    """The Delta settings a session built here adds to ``configured`` (which wins): none when no
    jars were fetched, or when ``configured`` already brings Delta (``spark.jars.packages``,
    Databricks) — then the platform's own classpath is used."""
    jars = fetched_jars()
    if not jars or "spark.jars.packages" in configured:
        return {}
    return {k: v for k, v in delta_spark_conf(jars).items() if k not in configured}


def maven_command(pom: Path, output: Path, settings: str | None) -> list[str]:
    """The ``mvn`` command line that copies the declared runtime jars into ``output``."""
    command = ["mvn", "-B", "-q", "-f", str(pom)]
    if settings:
        command += ["-s", settings]
    return command + [
        f"{DEPENDENCY_PLUGIN}:copy-dependencies",
        f"-DoutputDirectory={output}",
        "-DincludeScope=runtime",
        f"-DexcludeGroupIds={SHIPPED_BY_PYSPARK}",
    ]


def fetch(output: Path | None = None, settings: str | None = None) -> list[Path]:
    """Copy the declared jars into ``output`` (default :func:`jars_dir`) with ``mvn``; the jars.

    Raises :class:`JvmDepsError` with a one-line remedy when Maven is missing or refuses."""
    output = output or jars_dir()
    settings = settings or os.environ.get(MAVEN_SETTINGS_ENV)
    if shutil.which("mvn") is None:
        raise JvmDepsError(
            "mvn not found: install Apache Maven (`apt-get install maven`, `brew install maven`) "
            "and run `make setup` again, or copy the jars listed in infra/jvm/pom.xml into "
            f"{output}; until then the rs engine is used"
        )
    output.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(maven_command(pom_path(), output, settings), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        errors = [line for line in (done.stdout + done.stderr).splitlines() if "ERROR" in line]
        first = errors[0].replace("[ERROR]", "").strip() if errors else f"mvn exited {done.returncode}"
        raise JvmDepsError(
            f"Maven could not fetch the Delta jars ({first[:300]}); point Maven at a reachable "
            f"mirror with {MAVEN_SETTINGS_ENV}=/path/to/settings.xml make setup (passed as "
            "`mvn -s`); until then the rs engine is used"
        )
    jars = fetched_jars(output)
    if not jars:
        raise JvmDepsError(f"mvn finished but {output} holds no delta-spark jar; see infra/jvm/pom.xml")
    return jars


def _write_block(path: Path, block: list[str]) -> Path:
    """Put ``block`` between the carelake marks in ``path``, replacing an earlier carelake
    block and keeping every other line; the file's path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    kept: list[str] = []
    if path.exists():
        inside = False
        for line in path.read_text().splitlines():
            if line == BEGIN_MARK:
                inside = True
            elif line == END_MARK:
                inside = False
            elif not inside:
                kept.append(line)
    path.write_text("\n".join([*kept, BEGIN_MARK, *block, END_MARK]) + "\n")
    return path


def write_spark_defaults(jars: list[Path], home: Path | None = None, python: str | None = None) -> Path:
    """Write the Delta settings into ``<SPARK_HOME>/conf/spark-defaults.conf`` (replacing an
    earlier carelake block, keeping anything else); the file's path."""
    path = (home or spark_home()) / "conf" / "spark-defaults.conf"
    return _write_block(path, [f"{k} {v}" for k, v in delta_spark_conf(jars, python).items()])


def write_spark_env(home: Path | None = None, python: str | None = None) -> Path:
    """Make ``python`` (default this interpreter) the default ``PYSPARK_PYTHON`` of every Spark
    launched from ``<SPARK_HOME>`` (its ``conf/spark-env.sh``); the file's path.

    The JVM starts the Python of statically registered data sources (``pyspark_carelake*``)
    from its own environment, not from ``spark.pyspark.python``: a ``spark-submit`` from a
    shell with no venv would run ``python3`` and find neither carelake nor pyarrow."""
    path = (home or spark_home()) / "conf" / "spark-env.sh"
    return _write_block(
        path,
        [
            f'PYSPARK_PYTHON="${{PYSPARK_PYTHON:-{python or sys.executable}}}"',
            # Local runs and the loopback cluster bind to 127.0.0.1 unless told otherwise.
            'SPARK_LOCAL_IP="${SPARK_LOCAL_IP:-127.0.0.1}"',
        ],
    )


def main(argv: list[str] | None = None) -> int:
    """``fetch``: fetch the jars and write spark-defaults.conf; ``status``: print what is there."""
    parser = argparse.ArgumentParser(prog="python -m carelake.spark.jvm_deps", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["fetch", "status"])
    parser.add_argument("--settings", help="a Maven settings.xml (mirror) passed as mvn -s")
    args = parser.parse_args(argv)
    if args.action == "status":
        jars = fetched_jars()
        print(f"{len(jars)} jars in {jars_dir()}" if jars else f"no Delta jars in {jars_dir()}")
        return 0 if jars else 1
    # Written even when Maven fails: spark-submit needs it with either Delta engine.
    spark_env = write_spark_env()
    try:
        jars = fetch(settings=args.settings)
    except JvmDepsError as exc:
        print(f"carelake: {exc}", file=sys.stderr)
        return 1
    size = sum(j.stat().st_size for j in jars) / 2**20
    defaults = write_spark_defaults(jars)
    print(f"carelake: {len(jars)} JVM jars ({size:.0f} MiB) in {jars_dir()}; Spark defaults in {defaults}, {spark_env}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
