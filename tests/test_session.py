"""The session builder: config applied, PYSPARK_PYTHON pinned, Java checked."""

from __future__ import annotations

import os
import sys

import pytest

from carelake.spark import JavaError, check_java
from carelake.spark import session as session_module


def test_session_uses_config(spark) -> None:
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.sql.shuffle.partitions") == "2"
    assert spark.sparkContext.master == "local[2]"
    assert os.environ["PYSPARK_PYTHON"] == sys.executable
    # Python workers start with the interpreter that has carelake installed
    assert spark.sparkContext.parallelize([1]).map(lambda _: __import__("carelake").__name__).collect() == ["carelake"]


def test_java_version_is_17_or_newer() -> None:
    assert check_java() >= 17


def test_missing_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(session_module.shutil, "which", lambda _: None)
    with pytest.raises(JavaError, match="Java not found: Spark 4 needs Java 17"):
        check_java()


def test_old_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Old:
        stderr = 'openjdk version "1.8.0_392"\n'
        stdout = ""

    monkeypatch.setattr(session_module.subprocess, "run", lambda *a, **k: Old())
    with pytest.raises(JavaError, match="Java 8 found .* needs Java 17"):
        check_java()
