"""Engine choice, and the jvm engine when the Delta jars are on the classpath (skipped otherwise)."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality

from carelake.config import Config
from carelake.delta import EngineUnavailableError, TableNotFoundError, open_tables
from carelake.delta.api import jvm_delta_available
from carelake.delta.jvm import replace_where_sql
from carelake.storage import table_uri


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


def test_replace_where_becomes_a_sql_predicate() -> None:
    sql = replace_where_sql({"service_month": ["2024-01", "O'Hare"], "npi_bucket": [3, 5, None]})
    assert sql == "(`service_month` IN ('2024-01', 'O''Hare')) AND (`npi_bucket` IN (3, 5) OR `npi_bucket` IS NULL)"


@pytest.fixture
def jvm_tables(spark, config: Config):
    """The jvm engine; skips with the reason when the Delta jars are not in this session."""
    available, reason = jvm_delta_available(spark)
    if not available:
        pytest.skip(f"Delta JVM engine unavailable: {reason}")
    return open_tables(spark, config.with_overrides(**{"delta.engine": "jvm"}))


SCHEMA = "id long, month string, amount double"


def test_jvm_write_replace_where_merge_history(spark, jvm_tables, config: Config) -> None:
    uri = table_uri(config, "curated", "fact_encounter")
    rows = [(1, "2024-01", 1.0), (2, "2024-02", 2.0)]
    created = jvm_tables.write(spark.createDataFrame(rows, SCHEMA), uri, partition_by=["month"], commit_metadata={"run_id": "r1"})
    assert created.version == 0

    replaced = jvm_tables.write(
        spark.createDataFrame([(3, "2024-01", 3.0)], SCHEMA), uri, mode="overwrite", replace_where={"month": ["2024-01"]}
    )
    assert replaced.version == 1
    assert_df_equality(
        jvm_tables.read(uri), spark.createDataFrame([(3, "2024-01", 3.0), (2, "2024-02", 2.0)], SCHEMA), ignore_row_order=True
    )

    merged = jvm_tables.merge(
        spark.createDataFrame([(2, "2024-02", 20.0), (4, "2024-03", 4.0)], SCHEMA), uri, keys=["id"],
        commit_metadata={"run_id": "r3"},
    )
    assert (merged.rows_inserted, merged.rows_updated) == (1, 1)
    assert jvm_tables.history(uri, limit=1)[0]["metadata"]["run_id"] == "r3"
    assert jvm_tables.read(uri, version=0).count() == 2
    assert {f["partition_values"]["month"] for f in jvm_tables.files(uri)} == {"2024-01", "2024-02", "2024-03"}


def test_jvm_delete_restore_and_missing_table(spark, jvm_tables, config: Config) -> None:
    uri = table_uri(config, "processed", "claims")
    jvm_tables.write(spark.createDataFrame([(1, "a", 1.0), (2, "b", 2.0)], SCHEMA), uri)
    deleted = jvm_tables.delete(uri, "id = 1")
    assert (deleted.version, deleted.rows_deleted) == (1, 1)
    restored = jvm_tables.restore(uri, 0)
    assert restored.version == 2
    assert jvm_tables.read(uri).count() == 2
    with pytest.raises(TableNotFoundError, match="nowhere"):
        jvm_tables.read(table_uri(config, "processed", "nowhere"))
