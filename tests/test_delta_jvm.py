"""Engine choice: auto picks jvm whenever the Delta jars load; the operations are specified in
test_delta_contract.py for both engines."""

from __future__ import annotations

import pytest

from carelake.config import Config
from carelake.delta import EngineUnavailableError, open_tables
from carelake.delta.api import jvm_delta_available


def test_auto_picks_the_engine_the_session_supports(spark, config: Config) -> None:
    available, _ = jvm_delta_available(spark)
    tables = open_tables(spark, config.with_overrides(**{"delta.engine": "auto"}))
    assert tables.engine == ("jvm" if available else "rs")


def test_rs_is_used_when_configured(spark, config: Config) -> None:
    assert open_tables(spark, config.with_overrides(**{"delta.engine": "rs"})).engine == "rs"


def test_jvm_without_delta_jars_is_a_clear_error(spark, config: Config) -> None:
    available, reason = jvm_delta_available(spark)
    if available:
        pytest.skip("the Delta extension is configured in this session: nothing to refuse")
    assert "io.delta.sql.DeltaSparkSessionExtension" in reason
    with pytest.raises(EngineUnavailableError, match="'delta.engine' is 'jvm'"):
        open_tables(spark, config.with_overrides(**{"delta.engine": "jvm"}))


def test_the_fetched_jars_make_jvm_the_default(spark, config: Config) -> None:
    """`make setup` fetched the Delta jars: in this suite auto must resolve to jvm."""
    from carelake.spark.jvm_deps import fetched_jars

    if not fetched_jars():
        pytest.skip("no Delta jars in .jvm/jars: run `make setup` (needs mvn and Maven Central or a mirror)")
    assert open_tables(spark, config.with_overrides(**{"delta.engine": "auto"})).engine == "jvm"
    assert spark.conf.get("spark.sql.catalog.spark_catalog") == "org.apache.spark.sql.delta.catalog.DeltaCatalog"
