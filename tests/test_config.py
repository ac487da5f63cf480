"""Config loading: defaults, overlays, environment overrides and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from carelake.config import ConfigError, load_config
from tests.conftest import REPO

LOCAL = REPO / "conf" / "local.yaml"


def test_local_defaults_load() -> None:
    config = load_config(LOCAL, env={})
    assert config.root == "./lakehouse"
    assert config.landing == "./lakehouse/landing"
    assert config.delta_engine == "auto"
    assert config.npi_buckets == 16
    assert set(config.sources) == {"hospital_a", "hospital_b", "hospital_c", "hospital_d", "crm", "claims"}
    providers_b = config.sources["hospital_b"].entities["providers"]
    assert providers_b.columns["npi"] == "npi"
    assert config.sources["hospital_a"].entities["providers"].values["active"] == {"A": "true", "I": "false"}


def test_overlay_extends_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(LOCAL.read_text())
    (tmp_path / "prod.yaml").write_text(
        "extends: base.yaml\nlakehouse:\n  root: /data/lake\npartitioning:\n  npi_buckets: 64\n"
    )
    config = load_config(tmp_path / "prod.yaml", env={})
    assert config.root == "/data/lake"
    assert config.landing == "/data/lake/landing"
    assert config.npi_buckets == 64
    # untouched keys come from the base file
    assert config.delta_engine == "auto"
    assert config.spark_conf["spark.sql.session.timeZone"] == "UTC"


def test_environment_overrides_win() -> None:
    env = {
        "CARELAKE_LAKEHOUSE__ROOT": "/tmp/elsewhere",
        "CARELAKE_DELTA__ENGINE": "rs",
        "CARELAKE_PARTITIONING__NPI_BUCKETS": "8",
        "CARELAKE_SPARK__CONF__spark.sql.shuffle.partitions": "3",
        "UNRELATED": "x",
    }
    config = load_config(LOCAL, env=env)
    assert config.root == "/tmp/elsewhere"
    assert config.delta_engine == "rs"
    assert config.npi_buckets == 8
    assert config.spark_conf["spark.sql.shuffle.partitions"] == "3"


def test_missing_key_names_key_and_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(LOCAL.read_text().replace("  npi_buckets: 16", "  other: 1"))
    with pytest.raises(ConfigError) as err:
        load_config(bad, env={})
    assert "partitioning.npi_buckets" in str(err.value)
    assert str(bad) in str(err.value)


def test_bad_value_is_reported() -> None:
    with pytest.raises(ConfigError, match=r"delta.engine.*one of auto, jvm, rs.*'fast'"):
        load_config(LOCAL, env={"CARELAKE_DELTA__ENGINE": "fast"})
    with pytest.raises(ConfigError, match=r"partitioning.npi_buckets.*int"):
        load_config(LOCAL, env={"CARELAKE_PARTITIONING__NPI_BUCKETS": "many"})


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", env={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("lakehouse: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken, env={})


def test_source_value_map_must_name_a_mapped_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(LOCAL.read_text().replace('values: {active: {A: "true", I: "false"}}', 'values: {status_code: {A: "true"}}'))
    with pytest.raises(ConfigError, match=r"sources.hospital_a.entities.providers.values.status_code"):
        load_config(bad, env={})


def test_with_overrides_returns_a_changed_copy() -> None:
    config = load_config(LOCAL, env={})
    moved = config.with_overrides(**{"lakehouse.root": "/x"})
    assert moved.root == "/x" and config.root == "./lakehouse"
