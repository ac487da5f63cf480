"""``carelake stream``: files landing while the stream is SIGKILLed and restarted end as a batch run.

Files of a tiny two-month sample land in four waves while ``carelake stream`` runs in its own
process group (processing-time trigger, 1 s). The stream is killed with SIGKILL twice — once
in the middle of a micro-batch's process stage, once at a random moment — and restarted each
time; after the last wave ``carelake stream --available-now`` catches up and stops. Every raw,
processed and curated fact table must then equal one batch run over all the files, row for row,
and no landing file may be ingested twice.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from carelake.config import Config
from carelake.delta import open_tables
from carelake.generate import generate, landing_files
from carelake.ingest import INGEST_LOG_TABLE
from carelake.model.facts import FACTS
from carelake.pipeline import run_pipeline
from carelake.storage import table_uri
from carelake.stream import MicroBatchProgress, StreamSettings, _write_progress, read_progress
from tests.test_resilience_crash import RUN_COLUMNS, snapshot

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
STAGES = ("ingest", "process", "model")
OVERRIDES = {"quality.great_expectations": False, "quality.max_quarantine_rate": 1.0, "stream.interval_seconds": 1,
             "stream.stages": list(STAGES), "stream.max_files_per_trigger": 12}
# Guards against a hung stream, not speed limits: a loaded 2-core machine running the other test
# process beside this one has taken over 15 minutes for the catch-up.
START_TIMEOUT_S = 600
CATCH_UP_TIMEOUT_S = 2400
# One token key for both lakehouses: patient tokens must match for their tables to compare.
TOKEN_KEY = "0123456789abcdef" * 4


def stream_env(root: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "CARELAKE_TOKEN_KEY": TOKEN_KEY,
        "CARELAKE_LAKEHOUSE__ROOT": str(root),
        "CARELAKE_SPARK__MASTER": "local[2]",
        "CARELAKE_SPARK__CONF__spark.sql.shuffle.partitions": "2",
        "CARELAKE_SPARK__CONF__spark.sql.adaptive.enabled": "false",
        "CARELAKE_SPARK__CONF__spark.ui.enabled": "false",
        "CARELAKE_SPARK__CONF__spark.databricks.delta.snapshotPartitions": "1",
    }
    for key, value in OVERRIDES.items():
        text = ",".join(value) if isinstance(value, list) else str(value).lower() if isinstance(value, bool) else str(value)
        env["CARELAKE_" + key.upper().replace(".", "__")] = text
    return env


def start(root: Path, log: Path, *extra: str) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "carelake.cli", "-v", "stream", "--conf", str(REPO / "conf" / "local.yaml"), *extra],
            env=stream_env(root), cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )


def kill(job: subprocess.Popen) -> None:
    os.killpg(job.pid, signal.SIGKILL)  # driver, JVM and Python workers: a lost node
    job.wait(timeout=60)


def wait_for(log: Path, text: str, job: subprocess.Popen, seen: int) -> None:
    """Until ``text`` appears in ``log`` more than ``seen`` times."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while log.read_text().count(text) <= seen:
        assert job.poll() is None, f"stream exited {job.returncode} before {text!r}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {text!r} within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


def land_atomically(files: list[Path], source: Path, landing: Path) -> None:
    """Copy each file under a dot-name Spark's file source ignores, then rename: a file appears
    whole or not at all, as an object-store upload does."""
    for path in files:
        target = landing / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.part")
        shutil.copy(path, partial)
        os.replace(partial, target)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory, base_config: Config) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("stream-sample")
    # No second registrations of the same people (matching's truth): 51 files become 30,
    # fewer micro-batches of kinds of files already here.
    generate(out, base_config, scale=0.005, seed=23, defect_rate=0.03, months=2, persons=False)
    return out, landing_files(out)


def fact_rows(tables, config: Config, fact: str) -> Counter:
    """A fact's rows as a multiset without run columns and dimension surrogate keys.

    The keys name dimension versions, and a dimension's history is as fine as the model stage's
    runs: a stream that models every few minutes records a provider's state from 01:50:00 that
    a single batch run, seeing only the latest processed row (01:50:52, same attributes from a
    second source), starts at 01:50:52. Both point every fact at a version valid on its event
    date, which :func:`assert_keys_resolve` checks."""
    frame = tables.read(table_uri(config, "curated", fact))
    kept = sorted(c for c in frame.columns if c not in RUN_COLUMNS and not c.endswith("_sk"))
    return Counter(tuple(row) for row in frame.select(*kept).collect())


def assert_keys_resolve(spark, tables, config: Config) -> None:
    """Every encounter's provider_sk is a dim_provider version of its NPI valid on its admit date."""
    facts = tables.read(table_uri(config, "curated", "fact_encounter")).where("provider_sk IS NOT NULL")
    dims = tables.read(table_uri(config, "curated", "dim_provider"))
    # A key's first version also covers events before it (see carelake.model.facts.version_lookup).
    firsts = dims.groupBy("npi").agg(F.min("valid_from").alias("first_from"))
    joined = facts.alias("f").join(dims.alias("d"), "provider_sk", "left").join(firsts.alias("v"), F.col("d.npi") == F.col("v.npi"), "left")
    bad = joined.where(
        "d.npi IS NULL OR d.npi != f.npi OR to_date(d.valid_to) <= f.admit_date"
        " OR (to_date(d.valid_from) > f.admit_date AND d.valid_from != v.first_from)"
    )
    assert facts.count() > 0 and bad.count() == 0, bad.select("f.encounter_key", "f.npi", "f.admit_date", "d.valid_from", "d.valid_to").take(5)


def test_settings_must_start_with_ingest(base_config: Config) -> None:
    with pytest.raises(ValueError, match="must start with ingest"):
        StreamSettings.from_config(base_config.with_overrides(**{"stream.stages": ["process"]}))


def test_progress_keeps_one_record_per_micro_batch_attempt_in_order(config: Config) -> None:
    assert read_progress(config) == []
    for batch_id, files in ((0, 3), (1, 2), (1, 2), (2, 0)):  # batch 1 replayed after a crash
        _write_progress(config, MicroBatchProgress(batch_id=batch_id, files=files))
    assert [(p["batch_id"], p["files"]) for p in read_progress(config)] == [(0, 3), (1, 2), (1, 2), (2, 0)]


def test_killed_stream_restarted_ends_as_one_batch_run(
    spark, base_config: Config, sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARELAKE_TOKEN_KEY", TOKEN_KEY)
    source, files = sample
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    print(f"kill timings seed {seed}")

    batch = base_config.with_overrides(**{"lakehouse.root": str(tmp_path / "batch"), **OVERRIDES})
    land_atomically(files, source, Path(batch.landing))
    assert run_pipeline(spark, batch, STAGES, run_id="batch").status == "ok"

    root = tmp_path / "stream"
    streamed = base_config.with_overrides(**{"lakehouse.root": str(root), **OVERRIDES})
    landing = Path(streamed.landing)
    landing.mkdir(parents=True)
    log = tmp_path / "stream.log"
    # Contiguous waves of files in the order sources send them (landing_files' order): each
    # month's providers and patients, then its encounters, then what refers to encounters. A fact
    # landing before the record it refers to is quarantined as an orphan, by a stream or by
    # separate batch runs alike.
    waves = [files[i * len(files) // 4:(i + 1) * len(files) // 4] for i in range(4)]

    job = start(root, log)
    land_atomically(waves[0], source, landing)
    wait_for(log, "stage process: starting", job, 0)
    time.sleep(rng.uniform(0, 2))
    kill(job)  # 1: inside a micro-batch, during or just after its process stage

    job = start(root, log)
    land_atomically(waves[1], source, landing)
    wait_for(log, "; checkpoint ", job, 1)
    time.sleep(rng.uniform(2, 20))
    land_atomically(waves[2], source, landing)
    kill(job)  # 2: at a random moment while files keep landing

    land_atomically(waves[3], source, landing)
    done = start(root, log, "--available-now")
    assert done.wait(timeout=CATCH_UP_TIMEOUT_S) == 0, log.read_text()[-4000:]

    tables = open_tables(spark, streamed)
    expected, actual = snapshot(tables, batch), snapshot(tables, streamed)
    for name in expected:
        if name == "raw/_ingest_log":
            continue  # compared below: the stream logs the same files over several batches
        assert actual[name] == expected[name], f"{name}: missing {expected[name] - actual[name]}, extra {actual[name] - expected[name]}"
    for fact in FACTS:
        assert fact_rows(tables, streamed, fact) == fact_rows(tables, batch, fact), fact
    assert_keys_resolve(spark, tables, streamed)
    logged = tables.read(table_uri(streamed, "raw", INGEST_LOG_TABLE)).select("file_name", "entity", "status").collect()
    # A FHIR Bundle is logged once per entity it feeds; any file and entity twice is a double ingest.
    ingested = Counter((r["file_name"], r["entity"]) for r in logged if r["status"] == "ingested")
    assert ingested.most_common(1)[0][1] == 1, f"ingested twice: {ingested.most_common(3)}"
    assert {r["file_name"] for r in logged} == {r["file_name"] for r in tables.read(table_uri(batch, "raw", INGEST_LOG_TABLE)).collect()}
    progress = read_progress(streamed)
    assert sum(p["files"] for p in progress) >= len(files), progress  # replayed batches count again
    assert "micro-batch " in log.read_text()
