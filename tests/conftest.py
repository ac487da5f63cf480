"""Shared fixtures: one SparkSession per test process (make test runs two), tiny data everywhere."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from carelake.config import Config, load_config
from carelake.delta import DeltaTables, open_tables
from carelake.spark import build_session

REPO = Path(__file__).resolve().parents[1]

# An xdist worker's main module is execnet's `python -c` bootstrap (no __spec__, no __file__),
# which pyspark.sql.connect takes for a doctest run: without grpc it then calls sys.exit(0) when
# Great Expectations imports it. Marking the worker as interactive keeps that check from firing.
if os.environ.get("PYTEST_XDIST_WORKER") and not hasattr(sys, "ps1"):
    sys.ps1 = ">>> "

TEST_SPARK_CONF = {
    "spark.sql.shuffle.partitions": "2",
    # Adaptive execution runs each shuffle stage as a job of its own: on the suite's tiny tables
    # that is 40% more jobs for no better plan (bench/results/2026-12-01-jobs.md, AQE on vs off).
    "spark.sql.adaptive.enabled": "false",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.driver.memory": "2g",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.python.worker.reuse": "true",
    # Delta rebuilds a snapshot in 50 tasks by default; the suite's tables are tiny.
    "spark.databricks.delta.snapshotPartitions": "1",
    # VACUUM lists a table in this many tasks: Spark's default 10000 made each vacuum of a
    # two-file table a minute of empty tasks.
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
}


@pytest.fixture(scope="session")
def base_config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """The repo's conf/local.yaml with its root moved to a temp folder."""
    root = tmp_path_factory.mktemp("lakehouse")
    return load_config(REPO / "conf" / "local.yaml", env={}).with_overrides(
        # Lineage and patient matching off: their own tests turn them on for their runs.
        **{"lakehouse.root": str(root), "spark.master": "local[2]", "lineage.enabled": False,
           "matching.enabled": False}
    )


@pytest.fixture(scope="session")
def spark(base_config: Config, tmp_path_factory: pytest.TempPathFactory):
    """This test process's one SparkSession (local[2], 2 shuffle partitions, UI off, UTC)."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    warehouse = tmp_path_factory.mktemp("warehouse")
    session = build_session(
        base_config,
        extra_conf={**TEST_SPARK_CONF, "spark.sql.warehouse.dir": str(warehouse)},
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def tiny_lake(spark, base_config: Config, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny lakehouse after one full default pipeline run (tests/tiny_lake.py); read only."""
    from tests.tiny_lake import build_tiny_lake

    return build_tiny_lake(spark, base_config, tmp_path_factory.mktemp("tiny_lake"))


@pytest.fixture(scope="session")
def planted_year(base_config: Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One generated year (tests/planted_truth.py ``PLANTED_YEAR``) without the people registered at several
    hospitals, shared read-only by the truth tests that feed its clean records to the measures
    (tests/planted_truth.py): generating it is the slowest part of each."""
    from carelake.generate import generate
    from tests.planted_truth import PLANTED_YEAR

    out = tmp_path_factory.mktemp("planted_year")
    generate(out, base_config, persons=False, **PLANTED_YEAR)
    return out


@pytest.fixture
def cli_keeps_suite_conf(spark, monkeypatch: pytest.MonkeyPatch) -> None:
    """``carelake.cli.main`` in this process reuses the suite's session (getOrCreate), and
    conf/local.yaml would reset its settings for every later test: keep the suite's."""
    for key, value in TEST_SPARK_CONF.items():
        if key.startswith("spark.sql."):
            monkeypatch.setenv(f"CARELAKE_SPARK__CONF__{key}", value)


@pytest.fixture
def config(base_config: Config, tmp_path: Path) -> Config:
    """A config whose lakehouse root is a fresh temp folder for this test."""
    return base_config.with_overrides(**{"lakehouse.root": str(tmp_path / "lakehouse")})


@pytest.fixture
def tables(spark, config: Config) -> DeltaTables:
    """The table API on this test's fresh lakehouse root."""
    return open_tables(spark, config)


# Session fixtures too costly to build once per test process: under pytest-xdist (make test
# runs two processes) every test that uses one runs in the same process, with the rest of its
# module (module fixtures are per process too).
SHARED_SESSION_FIXTURES = ("tiny_lake", "planted_year", "s3_server")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the groups into node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist: one ``xdist_group`` per module, modules sharing a costly session fixture in
    one group; the groups holding slow end-to-end tests first, then the shared ones, so the
    longest runs do not start last (make test passes ``--no-loadscope-reorder``, or xdist would
    order the groups by their number of tests)."""
    # Collection happens in the workers (whose options carry no process count), not in the
    # controller that schedules them.
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    groups = {item.module.__name__: item.module.__name__ for item in items if isinstance(item, pytest.Function)}

    def root(name: str) -> str:
        while groups[name] != name:
            name = groups[name]
        return name

    owner: dict[str, str] = {}
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        module = item.module.__name__
        for fixture in SHARED_SESSION_FIXTURES:
            if fixture in item.fixturenames:
                first = owner.setdefault(fixture, module)
                groups[root(module)] = root(first)
    for item in items:
        if isinstance(item, pytest.Function):
            item.add_marker(pytest.mark.xdist_group(root(item.module.__name__)))
    shared = {root(module) for module in owner.values()}
    # Whole groups move, each in file order: a module's later tests may read what its earlier
    # ones left in a module fixture.
    slow = {root(item.module.__name__) for item in items
            if isinstance(item, pytest.Function) and item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: (root(item.module.__name__) not in slow, root(item.module.__name__) not in shared))
