"""README.md's command lines work as written, from a shell with no virtual environment active.

The command lines of the fenced bash blocks under the README sections below are read from the
README itself; each must match one rule here: run (the cheap ones, exactly as written, in a
clean environment: no venv on PATH, no PYSPARK_PYTHON, the lakehouse root moved to a temp folder
with ``CARELAKE_LAKEHOUSE__ROOT``) or not run, with the reason. A new or changed line that
matches no rule fails the first test, so the README cannot drift away from what is tested.
Only the data is cut down: the generate line runs at a tiny scale and the stages see one entity.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from carelake.serve.cluster import ClusterError, check_port_free
from carelake.spark.jvm_deps import fetched_jars

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("Running stages", "SQL, notebooks and clusters")
ENGINE_INFO = re.compile(r"^Apache-Spark/\S+ Delta-Lake/4\.4\.0$")
# The one change to a line: the generate line's scale (1 is ~100k encounters).
TINY_SCALE = "0.01"
# One entity, in all three source layouts (CSV, JSON lines, pipe-delimited): a third of the
# time every entity's 22 Spark jobs take on a 2-core machine.
ONLY_ENTITY = "providers"
COMMAND_TIMEOUT_S = 900
MASTER_PORT, WEBUI_PORT = 7077, 8080

# Lines the tests below run, by what they are.
RUN = {
    "generate": re.compile(r"^\.venv/bin/carelake generate .*--scale \S+"),
    "local stage": re.compile(r"^\.venv/bin/spark-submit jobs/ingest_raw\.py --conf conf/local\.yaml(\s|$)"),
    "cluster": re.compile(r"^make cluster(\s|$)"),
    "cluster stage": re.compile(
        r"^\.venv/bin/spark-submit --master spark://127\.0\.0\.1:7077 jobs/ingest_raw\.py --conf conf/cluster\.yaml(\s|$)"
    ),
}
# Lines not run here, and why.
NOT_RUN = {
    re.compile(r"^\.venv/bin/carelake run(\s|$)"): "every stage: minutes; each stage has its own tests",
    re.compile(r"^\.venv/bin/carelake (-v )?run --stages "): "two stages: the stage tests cover them",
    re.compile(r"^\.venv/bin/carelake ingest --conf conf/local\.yaml(\s|$)"): "the ingest stage, run here through spark-submit",
    re.compile(r"^make serve(\s|$)"): "a server until Ctrl-C: tests/test_serve_thrift.py",
    re.compile(r"^make register(\s|$)"): "the catalog refresh: tests/test_serve_thrift.py",
    re.compile(r"^\.venv/bin/beeline -u jdbc:hive2://127\.0\.0\.1:10000/"): "needs make serve running",
    re.compile(
        r"^\.venv/bin/spark-submit --master spark://127\.0\.0\.1:7077 jobs/run_pipeline\.py --conf conf/cluster\.yaml(\s|$)"
    ): "every stage on the cluster: minutes; the cluster stage line runs the same way",
}


def readme_commands(text: str, section: str) -> list[str]:
    """The command lines (continuations joined; blank and comment lines left out) of the
    ```bash blocks under ``## <section>``."""
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README.md: expected a section '## {section}', found none"
    blocks = re.findall(r"^```bash\n(.*?)^```", match.group(1), re.M | re.S)
    lines = [line.strip() for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return [line for section in SECTIONS for line in readme_commands(text, section)]


def the_command(kind: str) -> str:
    """The one README line of ``kind`` (a key of RUN)."""
    found = [line for line in commands() if RUN[kind].match(line)]
    assert len(found) == 1, f"README.md: expected one '{kind}' command line, found {found}"
    return found[0]


def clean_env(root: Path, tmp: Path) -> dict[str, str]:
    """A new user's shell: PATH without any virtual environment, no Spark or Python variables."""
    path = [p for p in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p and not (Path(p).parent / "pyvenv.cfg").exists()]
    env = {k: os.environ[k] for k in ("HOME", "USER", "LANG", "JAVA_HOME") if k in os.environ}
    return {
        **env,
        "PATH": os.pathsep.join(path),
        "TMPDIR": str(tmp),
        "CARELAKE_LAKEHOUSE__ROOT": str(root),
        "CARELAKE_SPARK__CONF__spark.ui.enabled": "false",
    }


def run_line(line: str, env: dict[str, str], log: Path) -> subprocess.CompletedProcess[str]:
    """``line`` through bash in the checkout, as typed; stdout and stderr also kept in ``log``."""
    done = subprocess.run(["bash", "-c", line], cwd=REPO, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    log.write_text(f"$ {line}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
    return done


def generate_tiny(env: dict[str, str], tmp: Path, only: str | None = None) -> None:
    """The README's generate line at the tiny scale; with ``only``, the landing files of that
    entity folder alone are kept (each source system's layout still present)."""
    line = re.sub(r"--scale \S+", f"--scale {TINY_SCALE}", the_command("generate"))
    done = run_line(line, env, tmp / "generate.log")
    assert done.returncode == 0, f"{line}: exit {done.returncode}\n{done.stderr[-2000:]}"
    if only:
        landing = Path(env["CARELAKE_LAKEHOUSE__ROOT"]) / "landing"
        for path in landing.rglob("*"):
            if path.is_file() and path.parent not in (landing, *landing.glob(f"*/{only}")):
                path.unlink()


def landing_rows(landing: Path, entity_dir: str) -> int:
    """Data rows in the landing files of ``entity_dir``: non-blank lines, less a header per
    delimited file (JSON lines have none)."""
    total = 0
    for path in landing.glob(f"*/{entity_dir}/*"):
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        total += len(lines) - (0 if path.suffix == ".jsonl" else 1)
    return total


def commit_infos(table: Path) -> list[dict]:
    logs = sorted((table / "_delta_log").glob("*.json"))
    assert logs, f"expected a Delta log under {table}, found none"
    return [json.loads(line)["commitInfo"] for log in logs for line in log.read_text().splitlines() if '"commitInfo"' in line]


def assert_ingested_by_delta_spark(done: subprocess.CompletedProcess[str], root: Path) -> None:
    """The ingest ran (exit 0, summary ok), wrote every landed row of ``ONLY_ENTITY``, and
    Delta Lake's own engine (delta-spark) committed when ``make setup`` fetched its jars."""
    errors = [line for line in (done.stdout + done.stderr).splitlines() if re.search(r"Error|Exception", line)]
    assert done.returncode == 0 and re.search(r"^carelake run \S+: ok$", done.stdout, re.M), (
        f"exit {done.returncode}; first errors: {errors[:5]}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    )
    infos = commit_infos(root / "raw" / ONLY_ENTITY)
    if fetched_jars():  # without them (no Maven at setup) the rs engine writes, by design
        assert all(ENGINE_INFO.match(info.get("engineInfo", "")) for info in infos), [i.get("engineInfo") for i in infos]
    written = sum(int(info["operationMetrics"]["numOutputRows"]) for info in infos)
    assert written == landing_rows(root / "landing", ONLY_ENTITY) > 0
    assert list((root / "_runs").glob("*.json")), "expected a run summary under _runs/"


def master_status() -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{WEBUI_PORT}/json/", timeout=5) as response:
        return json.load(response)


def test_every_readme_command_is_run_or_excused() -> None:
    lines = commands()
    assert len(lines) >= len(RUN), f"README.md: expected the command lines of {SECTIONS}, found {lines}"
    for line in lines:
        rules = [kind for kind, rule in RUN.items() if rule.match(line)] + [why for rule, why in NOT_RUN.items() if rule.match(line)]
        assert len(rules) == 1, f"README.md line {line!r}: expected one rule in tests/test_readme_commands.py, found {rules}"
    for kind in RUN:
        the_command(kind)


@pytest.mark.slow
def test_readme_spark_submit_stage_runs_with_no_venv(tmp_path: Path) -> None:
    root = tmp_path / "lakehouse"
    env = clean_env(root, tmp_path)
    generate_tiny(env, tmp_path, only=ONLY_ENTITY)
    done = run_line(the_command("local stage"), env, tmp_path / "spark-submit.log")
    assert_ingested_by_delta_spark(done, root)


@pytest.fixture
def readme_cluster(tmp_path: Path) -> Iterator[subprocess.Popen]:
    """``make cluster`` as written, on 7077/8080; stopped (SIGTERM, as a service manager would)
    after the test, and its ports free again."""
    try:
        check_port_free(MASTER_PORT, "the README's master", "--port")
        check_port_free(WEBUI_PORT, "the README's master web UI", "--webui-port")
    except ClusterError as exc:
        pytest.skip(str(exc))
    env = clean_env(tmp_path / "lakehouse", tmp_path)
    if subprocess.run(["make", "-q", "setup"], cwd=REPO, env=env, capture_output=True).returncode != 0:
        pytest.skip("make setup is not up to date: make cluster would reinstall the environment first")
    log = (tmp_path / "make-cluster.log").open("w")
    cluster = subprocess.Popen(
        ["bash", "-c", the_command("cluster")], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while "master spark://127.0.0.1:7077 " not in (tmp_path / "make-cluster.log").read_text():
            assert cluster.poll() is None and time.monotonic() < deadline, (
                f"make cluster: no master on 7077 (exit {cluster.poll()}):\n{(tmp_path / 'make-cluster.log').read_text()[-3000:]}"
            )
            time.sleep(0.5)
        yield cluster
    finally:
        if cluster.poll() is None:
            os.killpg(cluster.pid, signal.SIGTERM)
        try:
            cluster.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
            cluster.wait()
        log.close()
    # make and bash exit at once on SIGTERM; `carelake cluster` (same group) then still stops the
    # worker and the master (up to 20 s each), which hold 7077 until then.
    deadline = time.monotonic() + 60
    while True:
        try:
            check_port_free(MASTER_PORT, "60 s after SIGTERM, make cluster's master", "--port")
            break
        except ClusterError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.mark.slow
def test_readme_cluster_runs_a_stage_on_executors(readme_cluster: subprocess.Popen, tmp_path: Path) -> None:
    status = master_status()
    assert status["url"] == "spark://127.0.0.1:7077"
    assert [w["state"] for w in status["workers"]] == ["ALIVE"]
    assert status["completedapps"] == []
    root = tmp_path / "lakehouse"
    env = clean_env(root, tmp_path)
    generate_tiny(env, tmp_path, only=ONLY_ENTITY)
    done = run_line(the_command("cluster stage"), env, tmp_path / "spark-submit.log")
    assert_ingested_by_delta_spark(done, root)
    apps = master_status()["completedapps"]
    assert [(a["name"], a["state"]) for a in apps] == [("carelake", "FINISHED")]
    # make cluster's worker folders are under TMPDIR: its executors ran the tasks.
    executor_logs = list(tmp_path.glob(f"carelake-cluster-*/work/{apps[0]['id']}/*/stderr"))
    assert any("Finished task" in log.read_text() for log in executor_logs), executor_logs
