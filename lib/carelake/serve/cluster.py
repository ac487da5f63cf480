"""A Spark standalone cluster on loopback: one master and N workers, for running jobs distributed.

Started from pip pyspark's own ``spark-class``; every process binds to 127.0.0.1 and writes its
log and work folders under one directory. ``spark-submit --master <cluster.master_url>`` then
runs a job on executors that are separate JVMs (and Python workers) from the driver.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

START_TIMEOUT_SECONDS = 120.0
# The ports README.md and conf/cluster.yaml name (Spark's own defaults).
MASTER_PORT = 7077
WEBUI_PORT = 8080


class ClusterError(RuntimeError):
    """A port was taken, or the master or a worker did not start or register in time."""


def spark_home() -> Path:
    """The Spark distribution inside the installed pyspark package."""
    return Path(pyspark.__file__).resolve().parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_port_free(port: int, what: str, flag: str) -> None:
    """Raise :class:`ClusterError` naming ``what`` and the ``flag`` that changes it when
    ``port`` on 127.0.0.1 is taken (Spark would silently move to the next port)."""
    with socket.socket() as sock:
        # As Spark's own sockets do: a port left in TIME_WAIT by a stopped master is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ClusterError(
                f"{what} port {port} on 127.0.0.1 is already in use ({exc.strerror}; another Spark "
                f"master or `make cluster`?): stop that process, or pick a free port with {flag}"
            ) from None


@dataclass
class Cluster:
    """A running standalone cluster: master URL, web UI, processes and their log files."""

    master_url: str
    webui_url: str
    base_dir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def status(self) -> dict:
        """The master's JSON status (workers, cores, running applications)."""
        with urllib.request.urlopen(f"{self.webui_url}/json/", timeout=5) as response:
            return json.load(response)

    def alive_workers(self) -> int:
        """How many workers the master lists as ALIVE (0 while the master is unreachable)."""
        try:
            return sum(1 for w in self.status().get("workers", []) if w.get("state") == "ALIVE")
        except (urllib.error.URLError, OSError, ValueError):
            return 0

    def stop(self) -> None:
        """Stop workers, then the master (SIGTERM, SIGKILL after 20 s); safe to call twice."""
        for proc in reversed(self.processes):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.processes.clear()


def _environment(base_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": str(base_dir / "logs"),
            "SPARK_WORKER_DIR": str(base_dir / "work"),
            # Executors start Python workers with this interpreter, which has carelake installed.
            "PYSPARK_PYTHON": env.get("PYSPARK_PYTHON", sys.executable),
            # A master whose port was taken after the check fails instead of moving to port + 1.
            "SPARK_MASTER_OPTS": f"{env.get('SPARK_MASTER_OPTS', '')} -Dspark.port.maxRetries=0".strip(),
        }
    )
    return env


def _launch(args: list[str], log_file: Path, env: dict[str, str]) -> subprocess.Popen:
    with log_file.open("ab") as out:
        # A new session per daemon so stop() signals it and any child it spawned, nothing else.
        return subprocess.Popen(
            [str(spark_home() / "bin" / "spark-class"), *args],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )


def start_cluster(
    workers: int = 1,
    cores: int = 1,
    memory: str = "1g",
    base_dir: str | Path | None = None,
    port: int = MASTER_PORT,
    webui_port: int = WEBUI_PORT,
) -> Cluster:
    """Start a master on 127.0.0.1:``port`` (web UI ``webui_port``) and ``workers`` workers;
    returns once all registered.

    ``base_dir`` (default: a new temp folder) holds ``logs/`` and ``work/``. Raises
    :class:`ClusterError` when a port is taken (before starting anything), or with the tail of
    the logs when something does not come up.
    """
    check_port_free(port, "master", "--port")
    check_port_free(webui_port, "master web UI", "--webui-port")
    if base_dir is None:
        base_dir = tempfile.mkdtemp(prefix="carelake-cluster-")
    base = Path(base_dir).resolve()
    (base / "logs").mkdir(parents=True, exist_ok=True)
    (base / "work").mkdir(parents=True, exist_ok=True)
    env = _environment(base)
    cluster = Cluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{webui_port}", base)
    try:
        cluster.processes.append(
            _launch(
                ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(webui_port)],
                base / "logs" / "master.log", env,
            )
        )
        for index in range(workers):
            cluster.processes.append(
                _launch(
                    [
                        "org.apache.spark.deploy.worker.Worker", cluster.master_url,
                        "--host", "127.0.0.1", "--webui-port", str(free_port()),
                        "--cores", str(cores), "--memory", memory, "--work-dir", str(base / "work"),
                    ],
                    base / "logs" / f"worker-{index}.log", env,
                )
            )
        _wait_for_workers(cluster, workers)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_for_workers(cluster: Cluster, expected: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while cluster.alive_workers() < expected:
        dead = [p for p in cluster.processes if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(
                f"--- {log.name}\n{log.read_text(errors='replace')[-1500:]}"
                for log in sorted((cluster.base_dir / "logs").glob("*.log"))
            )
            reason = f"a process exited with {dead[0].returncode}" if dead else f"timed out after {START_TIMEOUT_SECONDS:.0f} s"
            raise ClusterError(
                f"expected {expected} ALIVE worker(s) at {cluster.webui_url}/json/, "
                f"found {cluster.alive_workers()} ({reason}); logs under {cluster.base_dir / 'logs'}:\n{logs}"
            )
        time.sleep(0.5)


def run_cluster(
    workers: int = 1,
    cores: int = 1,
    memory: str = "1g",
    base_dir: str | Path | None = None,
    port: int = MASTER_PORT,
    webui_port: int = WEBUI_PORT,
) -> int:
    """``carelake cluster``: start a cluster, print its URLs, stop it on Ctrl-C/SIGTERM.

    Returns 0 after a stop, 1 (the reason on stderr) when it could not start."""

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    cluster = None
    try:
        cluster = start_cluster(workers, cores, memory, base_dir, port, webui_port)
        print(f"master {cluster.master_url}  web UI {cluster.webui_url}  logs {cluster.base_dir / 'logs'}", flush=True)
        submit = Path(sys.executable).parent / "spark-submit"
        print(f"submit: {submit} --master {cluster.master_url} jobs/run_pipeline.py --conf conf/cluster.yaml", flush=True)
        while True:
            time.sleep(3600)
    except ClusterError as exc:
        print(f"carelake cluster: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopping the cluster", flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
        signal.signal(signal.SIGTERM, previous)
    return 0
