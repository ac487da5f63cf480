"""The lakehouse writer lock: one writing run per root, on local disk (flock) and S3 (conditional put)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from pyspark.sql import functions as F

from carelake.config import Config, ConfigError
from carelake.delta import open_tables
from carelake.ingest import INGEST_LOG_TABLE
from carelake.ops.lock import LockSettings, WriterLockError, acquire, lock_uri
from carelake.pipeline import STAGES, run_pipeline
from carelake.run import StageSummary
from carelake.storage import s3_client, table_uri
from carelake.storage.land import land_files
from carelake.storage.objectstore import split_s3_uri
from tests import s3_fixtures

s3_server, s3_config = s3_fixtures.s3_server, s3_fixtures.s3_config  # the module's fixtures

QUICK = LockSettings(wait_seconds=0, ttl_seconds=300, heartbeat_seconds=60)
LANDING = {
    "hospital_a/providers/providers_2024-01.csv": (
        "provider_npi,first_name,last_name,status,last_updated\n"
        "1234567893,Ann,Lee,A,2024-01-01 00:00:00\n"
        "1497758544,Bo,Kim,I,2024-01-01 00:00:00\n"
    ),
    "hospital_b/providers/providers_2024-01.jsonl": (
        '{"npi": "1003000126", "firstName": "Zo", "active": false, "updatedAt": "2024-01-02T00:00:00Z"}\n'
    ),
}


def race(config: Config, takers: int, settings: LockSettings = QUICK) -> tuple[list, list[str]]:
    """``takers`` threads try to take the lock at the same moment: (locks taken, error messages)."""
    start, taken, errors = threading.Barrier(takers), [], []

    def take(number: int) -> None:
        start.wait()
        try:
            taken.append(acquire(config, f"racer-{number}", settings))
        except WriterLockError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=take, args=(n,)) for n in range(takers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return taken, errors


def test_second_taker_fails_fast_naming_the_holder_then_takes_it_once_released(config: Config) -> None:
    first = acquire(config, "run-a", QUICK)
    started = time.monotonic()
    with pytest.raises(WriterLockError) as error:
        acquire(config, "run-b", QUICK)
    assert time.monotonic() - started < 2
    message = str(error.value)
    assert message.startswith("another carelake run (owner ")
    assert f"pid {os.getpid()}, run run-a, since " in message
    assert f"holds the lakehouse writer lock at {lock_uri(config)}" in message
    assert lock_uri(config) == str(Path(config.root).resolve() / "_locks" / "writer.lock")
    first.release()
    acquire(config, "run-b", QUICK).release()


def test_lock_of_a_killed_process_is_free_at_once(config: Config, tmp_path: Path) -> None:
    holder = (
        "import sys, time\n"
        "from carelake.config import load_config\n"
        "from carelake.ops.lock import acquire\n"
        f"config = load_config({str(Path(config.source_file))!r}, env={{}}).with_overrides(**{{'lakehouse.root': {config.root!r}}})\n"
        "lock = acquire(config, 'run-killed')\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n"
    )
    script = tmp_path / "hold_lock.py"  # a file, not `python -c`: pyspark.sql.connect exits under -c without grpc
    script.write_text(holder)
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        with pytest.raises(WriterLockError) as error:
            acquire(config, "run-b", QUICK)
        assert f"pid {process.pid}, run run-killed" in str(error.value)
        assert "it is freed when that process ends" in str(error.value)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    acquire(config, "run-b", QUICK).release()


def test_wait_seconds_waits_for_the_holder_and_says_how_long_it_waited(config: Config) -> None:
    first = acquire(config, "run-a", QUICK)
    with pytest.raises(WriterLockError, match=r"lock at .* after waiting 1 s; "):
        acquire(config, "run-b", LockSettings(wait_seconds=1))
    threading.Timer(0.5, first.release).start()
    started = time.monotonic()
    acquire(config, "run-b", LockSettings(wait_seconds=20)).release()
    assert time.monotonic() - started < 10


def test_lock_settings_come_from_config_and_bad_ones_name_the_key(config: Config) -> None:
    assert LockSettings.from_config(config) == LockSettings(0, 300, 60)
    configured = config.with_overrides(**{"lock.wait_seconds": 30, "lock.ttl_seconds": 120, "lock.heartbeat_seconds": 20})
    assert LockSettings.from_config(configured) == LockSettings(30, 120, 20)
    with pytest.raises(ConfigError, match=r"lock.heartbeat_seconds must be above 0 and at most half of lock.ttl_seconds \(120\), found 90"):
        LockSettings.from_config(configured.with_overrides(**{"lock.heartbeat_seconds": 90}))
    with pytest.raises(ConfigError, match=r"lock.wait_seconds must be a number of seconds >= 0, found 'soon'"):
        LockSettings.from_config(config.with_overrides(**{"lock.wait_seconds": "soon"}))


def test_concurrent_takers_on_s3_get_exactly_one_winner(s3_config: Config) -> None:
    taken, errors = race(s3_config, takers=12)
    assert len(taken) == 1 and len(errors) == 11
    winner = taken[0].holder.run_id
    assert all(f"run {winner}, since " in message for message in errors)
    assert all(f"lock at {lock_uri(s3_config)}" in message and "lock expires at " in message for message in errors)
    bucket, key = split_s3_uri(lock_uri(s3_config))
    recorded = json.loads(s3_client(s3_config).get_object(Bucket=bucket, Key=key)["Body"].read())
    assert recorded["run_id"] == winner and recorded["pid"] == os.getpid() and recorded["expires"] > recorded["since"]
    taken[0].release()
    with pytest.raises(ClientError):
        s3_client(s3_config).head_object(Bucket=bucket, Key=key)


def test_an_expired_lock_on_s3_is_taken_over_by_exactly_one_run(s3_config: Config) -> None:
    bucket, key = split_s3_uri(lock_uri(s3_config))
    crashed = {"owner": "ops", "host": "gone-host", "pid": 4242, "run_id": "run-crashed",
               "since": "2020-01-01T00:00:00Z", "expires": "2020-01-01T00:05:00Z"}
    s3_client(s3_config).put_object(Bucket=bucket, Key=key, Body=json.dumps(crashed).encode())
    taken, errors = race(s3_config, takers=8)
    assert len(taken) == 1 and len(errors) == 7
    assert all(f"run {taken[0].holder.run_id}, since " in message for message in errors)
    taken[0].release()


def test_heartbeat_keeps_a_live_lock_and_a_lock_taken_over_is_reported(s3_config: Config) -> None:
    holder = acquire(s3_config, "run-a", LockSettings(wait_seconds=0, ttl_seconds=2, heartbeat_seconds=0.5))
    time.sleep(3)  # past the first expiry: only the renewals keep it
    with pytest.raises(WriterLockError, match="run run-a"):
        acquire(s3_config, "run-b", QUICK)
    bucket, key = split_s3_uri(lock_uri(s3_config))
    taker = {"owner": "ops", "host": "h2", "pid": 7, "run_id": "run-taker", "since": "2030-01-01T00:00:00Z", "expires": "2030-01-01T00:05:00Z"}
    s3_client(s3_config).put_object(Bucket=bucket, Key=key, Body=json.dumps(taker).encode())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            holder.check()
        except WriterLockError:
            break
        time.sleep(0.2)
    with pytest.raises(WriterLockError, match=r"taken over by another carelake run \(owner ops, host h2, pid 7, run run-taker"):
        holder.release()
    # the taker's lock is left alone
    assert json.loads(s3_client(s3_config).get_object(Bucket=bucket, Key=key)["Body"].read())["run_id"] == "run-taker"


HOLD, HELD = threading.Event(), threading.Event()


def hold_stage(spark, config: Config, tables, run_id: str) -> StageSummary:
    """A stage that waits until the test lets it go, so a second run can overlap the first."""
    HELD.set()
    HOLD.wait(120)
    return StageSummary("hold").finish()


def test_overlapping_pipeline_runs_the_second_fails_fast_and_keys_stay_unique(
    spark, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config.with_overrides(**{"quality.great_expectations": False})  # not under test here
    source = tmp_path / "out"
    for relative, text in LANDING.items():
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        (source / relative).write_text(text)
    land_files(config, source)
    monkeypatch.setitem(STAGES, "hold", f"{__name__}:hold_stage")
    HOLD.clear()
    HELD.clear()
    outcome: dict[str, object] = {}
    first = threading.Thread(target=lambda: outcome.update(a=run_pipeline(spark, config, ["ingest", "hold", "process"], "run-a")))
    first.start()
    try:
        assert HELD.wait(300), "the first run never reached its hold stage"
        started = time.monotonic()
        with pytest.raises(WriterLockError) as error:
            run_pipeline(spark, config, ["ingest", "process"], "run-b")
        assert time.monotonic() - started < 5
        assert f"pid {os.getpid()}, run run-a, since " in str(error.value)
    finally:
        HOLD.set()
        first.join(300)
    assert outcome["a"].status == "ok"
    assert not (Path(config.root) / "_runs" / "run-b.json").exists()  # the refused run wrote nothing

    assert run_pipeline(spark, config, ["ingest", "process"], "run-b").status == "ok"
    tables = open_tables(spark, config)
    assert tables.read(table_uri(config, "raw", "providers")).count() == 3
    files = tables.read(table_uri(config, "raw", INGEST_LOG_TABLE)).groupBy("file_name").count()
    assert files.count() == 2 and files.where(F.col("count") > 1).isEmpty()
    processed = tables.read(table_uri(config, "processed", "providers"))
    assert processed.count() == processed.select("npi").distinct().count() > 0
