"""SQL over JDBC/ODBC: the Spark Thrift server (HiveServer2 protocol) over the lakehouse.

The server runs inside this Python process (``HiveThriftServer2.startWithSparkSession``), so
the catalog is refreshed from here: on a timer and on SIGHUP. Tables are Delta catalog tables
(or, without Delta's classes, views over the Python data source) in a Derby metastore under
the lakehouse root (see :mod:`carelake.serve.catalog`), so they survive restarts. A Delta
table's queries read its latest commit, so a refresh only adds new tables and drops gone ones.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import SparkSession

from carelake.config import Config
from carelake.serve.catalog import metastore_conf, register_tables
from carelake.spark import build_session

DEFAULT_PORT = 10000
DEFAULT_HOST = "127.0.0.1"
DEFAULT_REFRESH_SECONDS = 60.0
START_TIMEOUT_SECONDS = 60.0

log = logging.getLogger(__name__)


class ServeError(RuntimeError):
    """The Thrift server could not start or the session is unfit to serve."""


@dataclass
class ThriftServer:
    """A running Thrift server: its session, address, served tables and background refresh."""

    spark: SparkSession
    config: Config
    host: str
    port: int
    tables: list[str]
    _server: Any
    _stopped: threading.Event = field(default_factory=threading.Event)
    _wake: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _refresher: threading.Thread | None = None

    @property
    def jdbc_url(self) -> str:
        """``jdbc:hive2://<host>:<port>/default``, for beeline and JDBC clients."""
        return f"jdbc:hive2://{self.host}:{self.port}/default"

    def refresh(self) -> list[str]:
        """Re-scan the zones and update the catalog; returns the served table names."""
        with self._lock:
            self.tables = register_tables(self.spark, self.config)
            return self.tables

    def request_refresh(self) -> None:
        """Ask the background refresh to run now (safe from a signal handler)."""
        self._wake.set()

    def start_refreshing(self, every_seconds: float) -> None:
        """Refresh the catalog every ``every_seconds`` (0 or less: only on :meth:`request_refresh`)
        until :meth:`stop`."""
        timeout = every_seconds if every_seconds > 0 else None

        def loop() -> None:
            while True:
                self._wake.wait(timeout)
                if self._stopped.is_set():
                    return
                self._wake.clear()
                try:
                    tables = self.refresh()
                    log.info("catalog refreshed: %d tables served", len(tables))
                except Exception:  # a failed scan must not take the server down
                    log.exception("catalog refresh failed; serving the previous catalog")

        self._refresher = threading.Thread(target=loop, name="carelake-catalog-refresh", daemon=True)
        self._refresher.start()

    def stop(self) -> None:
        """Stop the refresh, the Thrift server and the Spark session; safe to call twice."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._wake.set()
        if self._refresher is not None:
            self._refresher.join(timeout=30)
        with self._lock:
            self._server.stop()
            self.spark.stop()


def _wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise ServeError(f"Thrift server did not accept connections on {host}:{port} within {timeout:.0f} s")


def start_thrift_server(config: Config, port: int = DEFAULT_PORT, host: str = DEFAULT_HOST) -> ThriftServer:
    """Build a Hive-enabled session, register the lakehouse tables and start serving.

    Must run in a process without a SparkSession yet (the metastore is a static setting).
    Returns once the port accepts connections; the caller stops it with ``.stop()``.
    """
    if SparkSession.getActiveSession() is not None:
        raise ServeError(
            "start_thrift_server needs a fresh process: a SparkSession is already active here "
            "and its catalog cannot be switched to the lakehouse metastore"
        )
    extra = {
        **metastore_conf(config),
        "spark.hadoop.hive.server2.thrift.port": str(port),
        "spark.hadoop.hive.server2.thrift.bind.host": host,
        "spark.hadoop.hive.server2.transport.mode": "binary",
    }
    spark = build_session(config, extra_conf=extra)
    try:
        tables = register_tables(spark, config)
        jvm = spark._jvm
        # exitOnError=False: a failed start raises here instead of exiting the JVM.
        java_server = jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2.startWithSparkSession(
            spark._jsparkSession, False
        )
        _wait_for_port(host, port, START_TIMEOUT_SECONDS)
    except BaseException:
        spark.stop()
        raise
    server = ThriftServer(spark, config, host, port, tables, java_server)
    log.info("Thrift server at %s serving %d tables", server.jdbc_url, len(tables))
    return server


def serve(config: Config, port: int | None = None, host: str | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM, then stop cleanly; returns the exit code (0).

    ``port``/``host`` default to ``serve.port``/``serve.host`` in config (10000, 127.0.0.1);
    ``serve.refresh_seconds`` (default 60, 0 = never) sets how often new and dropped tables
    are picked up; SIGHUP picks them up at once.
    """
    section = config.section("serve")
    port = port if port is not None else int(section.get("port") or DEFAULT_PORT)
    host = host or str(section.get("host") or DEFAULT_HOST)
    refresh = section.get("refresh_seconds")
    refresh_seconds = DEFAULT_REFRESH_SECONDS if refresh is None else float(refresh)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    previous_hup = signal.getsignal(signal.SIGHUP)
    server = None
    try:
        server = start_thrift_server(config, port=port, host=host)
        server.start_refreshing(refresh_seconds)
        signal.signal(signal.SIGHUP, lambda signum, frame: server.request_refresh())
        print(f"serving {len(server.tables)} tables at {server.jdbc_url} (Ctrl-C to stop)", flush=True)
        for name in server.tables:
            print(f"  {name}", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping the Thrift server", flush=True)
    finally:
        if server is not None:
            server.stop()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGHUP, previous_hup)
    return 0
