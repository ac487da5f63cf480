"""Recovery: roll a bad batch back and re-ingest it; restore a table by version."""

from __future__ import annotations

from pathlib import Path

import pytest

from carelake.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from carelake.config import Config
from carelake.delta import DeltaTables, open_tables
from carelake.ingest import INGEST_LOG_TABLE
from carelake.ops.recovery import restore_table, rollback_batch
from carelake.pipeline import run_pipeline
from carelake.process import BATCHES_TABLE, QUARANTINE_TABLE
from carelake.storage import table_uri

HEADER = "provider_npi,first_name,last_name,specialty,taxonomy_code,org_name,practice_zip,network_id,employer_id,status,last_updated\n"
FIRST = HEADER + (
    "1234567893,Ann,Lee,Cardiology,207RC0000X,Riverside,60601,N1,E1,A,2024-01-01 00:00:00\n"
    "1245319599,Bo,Ng,Oncology,207RX0202X,Riverside,60602,N1,E2,A,2024-01-01 00:00:00\n"
)
# Updates Ann, adds Cy, and carries one row with a bad NPI (quarantined).
SECOND = HEADER + (
    "1234567893,Ann,Lee,Neurology,207RC0000X,Riverside,60601,N1,E1,A,2024-02-01 00:00:00\n"
    "1003000126,Cy,Ray,Oncology,207RX0202X,Riverside,60603,N1,E2,A,2024-02-01 00:00:00\n"
    "1234567890,Di,Bad,Oncology,207RX0202X,Riverside,60603,N1,E2,A,2024-02-01 00:00:00\n"
)
RUN_COLUMNS = ("_batch_id", "_ingested_at")
REPO = Path(__file__).resolve().parents[1]


def land(config: Config, name: str, text: str) -> None:
    path = Path(config.landing) / "hospital_a" / "providers" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def rows(tables: DeltaTables, uri: str, drop: tuple[str, ...] = ()) -> list[tuple]:
    frame = tables.read(uri)
    return sorted(tuple(r) for r in frame.select(*(c for c in frame.columns if c not in drop)).collect())


@pytest.fixture
def quiet(config: Config) -> Config:
    return config.with_overrides(**{"quality.great_expectations": False, "quality.max_quarantine_rate": 1.0})


def test_rollback_removes_a_batch_everywhere_and_it_can_be_ingested_again(spark, quiet: Config) -> None:
    tables = open_tables(spark, quiet)
    providers = table_uri(quiet, "processed", "providers")
    land(quiet, "first.csv", FIRST)
    run_pipeline(spark, quiet, ("ingest", "process"), run_id="b1")
    after_first = rows(tables, providers)
    land(quiet, "second.csv", SECOND)
    run_pipeline(spark, quiet, ("ingest", "process"), run_id="b2")
    after_second = rows(tables, providers, RUN_COLUMNS)
    assert len(after_second) == 3 and after_second != after_first

    report = rollback_batch(spark, quiet, tables, "b2")

    assert report[providers] == {"rows_deleted": 2, "rows_restored": 1}  # Cy deleted; Ann back to b1's version
    assert rows(tables, providers) == after_first
    raw = tables.read(table_uri(quiet, "raw", "providers"))
    assert {r[0] for r in raw.select("_batch_id").distinct().collect()} == {"b1"}
    for table, column in ((QUARANTINE_TABLE, "batch_id"), (BATCHES_TABLE, "batch_id")):
        assert tables.read(table_uri(quiet, "processed", table)).where(f"{column} = 'b2'").isEmpty(), table
    log_uri = table_uri(quiet, "raw", INGEST_LOG_TABLE)
    assert {r.file_name for r in tables.read(log_uri).collect()} == {"hospital_a/providers/first.csv"}

    rerun = run_pipeline(spark, quiet, ("ingest", "process"), run_id="b3")

    assert rerun.status == "ok"
    assert rerun.stages[0].entities["providers"].rows_in == 3  # second.csv ingested again, not "repaired"
    assert rows(tables, providers, RUN_COLUMNS) == after_second
    assert tables.read(table_uri(quiet, "processed", QUARANTINE_TABLE)).count() == 1


PATIENTS_HEADER = "patient_id,first_name,last_name,ssn,phone,email,address,birth_date,sex,zip,mrn,last_updated\n"


def test_rollback_covers_the_restricted_identifiers_table(spark, quiet: Config) -> None:
    tables = open_tables(spark, quiet)
    identifiers = table_uri(quiet, "processed", "patients_pii")
    path = Path(quiet.landing) / "hospital_a" / "patients"
    path.mkdir(parents=True, exist_ok=True)
    (path / "first.csv").write_text(PATIENTS_HEADER + "P1,Al,One,111-22-3333,555,a@x.org,1 Main,1980-01-31,M,60601,M1,2024-01-01 00:00:00\n")
    run_pipeline(spark, quiet, ("ingest", "process"), run_id="p1")
    after_first = rows(tables, identifiers)
    # P1 renamed, P2 new: both land in the identifiers table under batch p2.
    (path / "second.csv").write_text(
        PATIENTS_HEADER
        + "P1,Alan,One,111-22-3333,555,a@x.org,1 Main,1980-01-31,M,60601,M1,2024-02-01 00:00:00\n"
        + "P2,Bea,Two,111-22-4444,556,b@x.org,2 Main,1990-05-05,F,60602,M2,2024-02-01 00:00:00\n"
    )
    run_pipeline(spark, quiet, ("ingest", "process"), run_id="p2")
    assert {r["first_name"] for r in tables.read(identifiers).collect()} == {"Alan", "Bea"}

    report = rollback_batch(spark, quiet, tables, "p2")

    assert report[identifiers] == {"rows_deleted": 2, "rows_restored": 1}
    assert rows(tables, identifiers) == after_first
    assert tables.read(table_uri(quiet, "processed", "patients")).count() == 1


def test_rollback_of_an_unknown_batch_says_so(spark, quiet: Config) -> None:
    land(quiet, "first.csv", FIRST)
    run_pipeline(spark, quiet, ("ingest",), run_id="b1")
    with pytest.raises(ValueError, match="no table under .* holds rows of batch 'nope'"):
        rollback_batch(spark, quiet, open_tables(spark, quiet), "nope")


def test_restore_table_brings_back_an_earlier_version(spark, quiet: Config) -> None:
    tables = open_tables(spark, quiet)
    uri = table_uri(quiet, "processed", "providers")
    land(quiet, "first.csv", FIRST)
    run_pipeline(spark, quiet, ("ingest", "process"), run_id="b1")
    good_version, good_rows = tables.version(uri), rows(tables, uri)
    land(quiet, "second.csv", SECOND)
    run_pipeline(spark, quiet, ("ingest", "process"), run_id="b2")
    assert rows(tables, uri) != good_rows

    result = restore_table(tables, uri, good_version)

    assert result.version == good_version + 2  # b2's merge, then the restore commit
    assert rows(tables, uri) == good_rows
    with pytest.raises(ValueError, match=r"restore .*providers: expected a version in 0\.\.\d+ .*found 99"):
        restore_table(tables, uri, 99)


@pytest.fixture
def cli(spark, quiet: Config, cli_keeps_suite_conf, monkeypatch: pytest.MonkeyPatch):
    """``carelake <args>`` in this process, on the test's lakehouse root: (exit code, stdout, stderr)."""
    monkeypatch.setenv("CARELAKE_LAKEHOUSE__ROOT", quiet.root)

    def run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
        code = main([*args, "--conf", str(REPO / "conf" / "local.yaml")])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def test_cli_restore_and_rollback(spark, quiet: Config, cli, capsys: pytest.CaptureFixture) -> None:
    tables = open_tables(spark, quiet)
    uri = table_uri(quiet, "processed", "providers")
    land(quiet, "first.csv", FIRST)
    run_pipeline(spark, quiet, ("ingest", "process"), run_id="b1")
    good_version, good_rows = tables.version(uri), rows(tables, uri)
    land(quiet, "second.csv", SECOND)
    run_pipeline(spark, quiet, ("ingest", "process"), run_id="b2")

    code, out, _ = cli(capsys, "restore", "processed/providers", "--version", str(good_version))
    assert code == EXIT_OK, out
    assert f"restored processed/providers to version {good_version}: now version {good_version + 2}" in out
    assert rows(tables, uri) == good_rows

    code, out, _ = cli(capsys, "rollback", "--batch", "b2")
    assert code == EXIT_OK
    assert f"{table_uri(quiet, 'raw', 'providers')}: 3 row(s) deleted, 0 restored" in out
    assert "batch b2 rolled back" in out
    assert {r[0] for r in tables.read(table_uri(quiet, "raw", "providers")).select("_batch_id").distinct().collect()} == {"b1"}


def test_cli_restore_and_rollback_wait_for_no_one_else_writing(spark, quiet: Config, cli, capsys) -> None:
    from carelake.ops.lock import writer_lock

    tables = open_tables(spark, quiet)
    land(quiet, "first.csv", FIRST)
    run_pipeline(spark, quiet, ("ingest",), run_id="b1")
    uri = table_uri(quiet, "raw", "providers")
    version = tables.version(uri)

    with writer_lock(quiet, "a-running-stream"):
        restored = cli(capsys, "restore", "raw/providers", "--version", "0")
        rolled = cli(capsys, "rollback", "--batch", "b1")

    for code, _, err in (restored, rolled):
        assert code == EXIT_FAILED and "a-running-stream" in err, err
    assert tables.version(uri) == version  # neither wrote


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("restore", "processed/nope", "--version", "0"), "no Delta table processed/nope at "),
        (("restore", "silver/providers", "--version", "0"), "expected <zone>/<table> with zone one of landing, raw, processed, curated, found 'silver/providers'"),
        (("restore", "raw/providers", "--version", "7"), "expected an earlier version, but the table has only version 0, found 7"),
        (("rollback", "--batch", "nope"), "holds rows of batch 'nope'"),
    ],
)
def test_cli_recovery_errors_name_what_was_wrong(spark, quiet: Config, cli, capsys, args, message) -> None:
    land(quiet, "first.csv", FIRST)
    run_pipeline(spark, quiet, ("ingest",), run_id="b1")
    code, _, err = cli(capsys, *args)
    assert code == EXIT_USAGE
    assert message in err
