"""How setup declares, fetches and wires the JVM dependencies (no network: Maven is not run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from carelake.spark import jvm_deps


def test_spark_defaults_block_is_replaced_and_other_lines_kept(tmp_path: Path) -> None:
    conf = tmp_path / "conf" / "spark-defaults.conf"
    conf.parent.mkdir()
    conf.write_text("spark.ui.port 4050\n")
    jars = [tmp_path / "delta-spark_2.13-4.4.0.jar", tmp_path / "hadoop-aws-3.5.0.jar"]

    jvm_deps.write_spark_defaults(jars, home=tmp_path, python="/venv/bin/python")
    jvm_deps.write_spark_defaults(jars[:1], home=tmp_path, python="/venv/bin/python")

    lines = conf.read_text().splitlines()
    assert lines[0] == "spark.ui.port 4050"
    assert lines.count(jvm_deps.BEGIN_MARK) == 1
    assert f"spark.driver.extraClassPath {jars[0]}" in lines
    assert "spark.sql.extensions io.delta.sql.DeltaSparkSessionExtension" in lines
    assert "spark.sql.catalog.spark_catalog org.apache.spark.sql.delta.catalog.DeltaCatalog" in lines
    assert "spark.pyspark.python /venv/bin/python" in lines


def test_spark_env_defaults_the_python_and_keeps_an_override(tmp_path: Path) -> None:
    path = jvm_deps.write_spark_env(home=tmp_path, python="/venv/bin/python")
    assert 'PYSPARK_PYTHON="${PYSPARK_PYTHON:-/venv/bin/python}"' in path.read_text().splitlines()


def test_session_conf_adds_nothing_without_jars_or_when_packages_are_configured(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(jvm_deps.JARS_DIR_ENV, str(tmp_path / "none"))
    assert jvm_deps.session_conf({}) == {}
    (tmp_path / "jars").mkdir()
    (tmp_path / "jars" / "delta-spark_2.13-4.4.0.jar").touch()
    monkeypatch.setenv(jvm_deps.JARS_DIR_ENV, str(tmp_path / "jars"))
    assert jvm_deps.session_conf({"spark.jars.packages": "io.delta:delta-spark_2.13:4.4.0"}) == {}
    added = jvm_deps.session_conf({"spark.sql.extensions": "mine"})
    assert "spark.sql.extensions" not in added
    assert added["spark.driver.extraClassPath"].endswith("delta-spark_2.13-4.4.0.jar")


def test_maven_missing_or_refusing_names_the_remedy(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(jvm_deps.shutil, "which", lambda name: None)
    with pytest.raises(jvm_deps.JvmDepsError, match="mvn not found: install Apache Maven"):
        jvm_deps.fetch(tmp_path)
    command = jvm_deps.maven_command(Path("pom.xml"), tmp_path, "/etc/mirror.xml")
    assert command[command.index("-s") + 1] == "/etc/mirror.xml"
    assert f"-DoutputDirectory={tmp_path}" in command


def test_declared_versions_match_the_pinned_python_packages() -> None:
    """infra/jvm/pom.xml pins delta-spark to pip's delta-spark and hadoop-aws to pip pyspark's Hadoop."""
    from importlib.metadata import version

    pom = jvm_deps.pom_path().read_text()
    assert f"<delta.version>{version('delta-spark')}</delta.version>" in pom
    hadoop = next(jvm_deps.spark_home().joinpath("jars").glob("hadoop-client-api-*.jar")).name
    assert f"<hadoop.version>{hadoop.removeprefix('hadoop-client-api-').removesuffix('.jar')}</hadoop.version>" in pom
