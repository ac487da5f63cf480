"""The lakehouse writer lock: at most one writing carelake run per lakehouse root at a time.

Delta keeps each table consistent on its own, but a run moves many tables in steps that assume
nobody else moves them meanwhile (the ingest log, batch tables, SCD2 dimensions), and delta-spark's
S3 log store is built for one writing driver. So every writing run holds this lock
(:func:`carelake.pipeline.run_pipeline` takes it); readers never do.

- Local disk: ``<root>/_locks/writer.lock``, held with ``flock``. The kernel frees it when the
  holding process ends, however it ends; the file only tells a waiting run who holds it.
- Object store: the object ``<root>/_locks/writer.lock``, created with a conditional put
  (``If-None-Match: *``), so among concurrent takers exactly one wins. It names the owner, host,
  pid and run and says until when it holds; the holder renews that expiry every
  ``lock.heartbeat_seconds`` with a put conditional on its own ETag (``If-Match``). A lock past
  its expiry (its run crashed) is taken over with ``If-Match`` on the stale ETag, again by one
  taker only. Release deletes it, conditional on the holder's ETag.

Settings (``lock`` section): ``wait_seconds`` (0: fail at once when held), ``ttl_seconds`` (300)
and ``heartbeat_seconds`` (60).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Protocol

from carelake.config import Config, ConfigError
from carelake.delta.audit import current_actor
from carelake.storage.objectstore import s3_client, split_s3_uri
from carelake.storage.paths import is_remote, join_uri, to_local_path

log = logging.getLogger(__name__)

LOCK_FOLDER = "_locks"
LOCK_NAME = "writer.lock"
DEFAULTS = {"wait_seconds": 0.0, "ttl_seconds": 300.0, "heartbeat_seconds": 60.0}
POLL_SECONDS = 2.0
# Answers of a conditional request that lost: the condition failed, or a concurrent
# conditional write to the key was in flight (AWS answers 409 then).
LOST_RACE_CODES = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
NOT_FOUND_CODES = ("NoSuchKey", "404", "NotFound")


class WriterLockError(RuntimeError):
    """The lakehouse writer lock could not be taken or was lost; the message says by whom."""


@dataclass(frozen=True)
class LockSettings:
    """How long to wait for a held lock, how long a taken one lasts unrenewed, how often it is renewed."""

    wait_seconds: float = DEFAULTS["wait_seconds"]
    ttl_seconds: float = DEFAULTS["ttl_seconds"]
    heartbeat_seconds: float = DEFAULTS["heartbeat_seconds"]

    @classmethod
    def from_config(cls, config: Config) -> LockSettings:
        """The ``lock`` section, defaults for absent keys; a clear error for bad values."""
        section = config.section("lock")
        unknown = sorted(set(section) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"{config.source_file}: unknown key(s) lock.{', lock.'.join(unknown)}: expected {', '.join(DEFAULTS)}")
        values: dict[str, float] = {}
        for key, default in DEFAULTS.items():
            value = section.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"{config.source_file}: lock.{key} must be a number of seconds >= 0, found {value!r}")
            values[key] = float(value)
        if not 0 < values["heartbeat_seconds"] <= values["ttl_seconds"] / 2:
            raise ConfigError(
                f"{config.source_file}: lock.heartbeat_seconds must be above 0 and at most half of lock.ttl_seconds "
                f"({values['ttl_seconds']:g}), found {values['heartbeat_seconds']:g}"
            )
        return cls(**values)


@dataclass(frozen=True)
class LockHolder:
    """Who holds the lock: owner (the run's actor), host, pid, run id, since when and (object store) until when."""

    owner: str
    host: str
    pid: int
    run_id: str
    since: str
    expires: str | None = None

    def describe(self) -> str:
        """``owner alice, host h1, pid 42, run r1, since 2026-01-01T00:00:00Z``."""
        return f"owner {self.owner}, host {self.host}, pid {self.pid}, run {self.run_id}, since {self.since}"

    def expired(self, now: float) -> bool:
        """True when an expiry is recorded and ``now`` (epoch seconds) is past it."""
        return self.expires is not None and _parse(self.expires) < now

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LockHolder | None:
        """The holder recorded in ``data``, or None when it is empty or unreadable (mid-write)."""
        try:
            fields = json.loads(data)
            return cls(**{k: fields[k] for k in ("owner", "host", "pid", "run_id", "since")}, expires=fields.get("expires"))
        except (ValueError, KeyError, TypeError):
            return None


# Recorded when a lock's content cannot be read (being written, or not written by carelake).
UNKNOWN_HOLDER = LockHolder("unknown", "unknown", 0, "unknown", "unknown")


def _now_iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def lock_uri(config: Config) -> str:
    """Where the writer lock of ``config``'s lakehouse lives: ``<root>/_locks/writer.lock``."""
    root = config.root if is_remote(config.root) else to_local_path(config.root)
    return join_uri(root, LOCK_FOLDER, LOCK_NAME)


class _Backend(Protocol):
    uri: str

    def try_take(self, holder: LockHolder) -> LockHolder | None:
        """Take the lock for ``holder``; None when taken, else who holds it."""

    def renew(self, holder: LockHolder) -> LockHolder | None:
        """Extend the lock; None when renewed, else who took it over."""

    def release(self) -> LockHolder | None:
        """Give the lock up; None when released, else who took it over meanwhile."""

    def freed_on_exit(self) -> bool:
        """True when the lock frees itself when its holder's process ends."""


class _FileLock:
    """``flock`` on a local file; the file's content names the holder."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._handle: IO[bytes] | None = None

    def try_take(self, holder: LockHolder) -> LockHolder | None:
        path = Path(self.uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+b")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return LockHolder.from_json(path.read_bytes()) or UNKNOWN_HOLDER
        handle.truncate(0)
        handle.write(holder.to_json())
        handle.flush()
        os.fsync(handle.fileno())
        self._handle = handle
        return None

    def renew(self, holder: LockHolder) -> LockHolder | None:
        return None

    def release(self) -> LockHolder | None:
        if self._handle is not None:
            # The file stays: removing it would let a waiter lock a file nobody else sees.
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
        return None

    def freed_on_exit(self) -> bool:
        return True


class _ObjectLock:
    """A lock object taken with conditional puts (If-None-Match / If-Match on ETags)."""

    def __init__(self, uri: str, config: Config) -> None:
        self.uri = uri
        self._bucket, self._key = split_s3_uri(uri)
        self._client = s3_client(config)
        self._etag: str | None = None

    def _put(self, holder: LockHolder, **condition: str) -> bool:
        """Write ``holder`` under ``condition``; False when the condition failed (another run won)."""
        from botocore.exceptions import ClientError

        try:
            answer = self._client.put_object(
                Bucket=self._bucket, Key=self._key, Body=holder.to_json(), ContentType="application/json", **condition
            )
        except ClientError as exc:
            if _code(exc) in (*LOST_RACE_CODES, *NOT_FOUND_CODES):
                return False
            raise
        self._etag = answer["ETag"]
        return True

    def _current(self) -> tuple[LockHolder, str | None]:
        """The recorded holder and the object's ETag; ETag None when there is no lock object."""
        from botocore.exceptions import ClientError

        try:
            answer = self._client.get_object(Bucket=self._bucket, Key=self._key)
        except ClientError as exc:
            if _code(exc) in NOT_FOUND_CODES:
                return UNKNOWN_HOLDER, None
            raise
        return LockHolder.from_json(answer["Body"].read()) or UNKNOWN_HOLDER, answer["ETag"]

    def try_take(self, holder: LockHolder) -> LockHolder | None:
        current = UNKNOWN_HOLDER
        for _ in range(5):  # each pass loses only to a release or takeover between two requests
            if self._put(holder, IfNoneMatch="*"):
                return None
            current, etag = self._current()
            if etag is None:
                continue
            if not current.expired(time.time()):
                return current
            log.warning("taking over the writer lock at %s, expired at %s (%s)", self.uri, current.expires, current.describe())
            if self._put(holder, IfMatch=etag):
                return None
        return current

    def renew(self, holder: LockHolder) -> LockHolder | None:
        return None if self._put(holder, IfMatch=self._etag or "") else self._current()[0]

    def release(self) -> LockHolder | None:
        from botocore.exceptions import ClientError

        try:
            self._client.delete_object(Bucket=self._bucket, Key=self._key, IfMatch=self._etag or "")
        except ClientError as exc:
            if _code(exc) in NOT_FOUND_CODES:
                return None
            if _code(exc) not in LOST_RACE_CODES:
                raise
            return self._current()[0]
        return None

    def freed_on_exit(self) -> bool:
        return False


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class WriterLock:
    """A taken writer lock: renewed in the background (object store) until :meth:`release`.

    :meth:`check` raises :class:`WriterLockError` once a renewal found the lock taken over.
    """

    def __init__(self, backend: _Backend, holder: LockHolder, settings: LockSettings) -> None:
        self.uri = backend.uri
        self.holder = holder
        self._backend = backend
        self._settings = settings
        self._lost_to: LockHolder | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        if not backend.freed_on_exit():
            self._heartbeat = threading.Thread(target=self._renew_until_stopped, name="carelake-writer-lock", daemon=True)
            self._heartbeat.start()

    def _renew_until_stopped(self) -> None:
        while not self._stop.wait(self._settings.heartbeat_seconds):
            now = time.time()
            renewed = LockHolder(**{**asdict(self.holder), "expires": _now_iso(now + self._settings.ttl_seconds)})
            try:
                taker = self._backend.renew(renewed)
            except Exception as exc:  # a store hiccup: the next beat tries again before expiry
                log.warning("could not renew the writer lock at %s: %s", self.uri, exc)
                continue
            if taker is not None:
                self._lost_to = taker
                log.error("%s", self._lost_message())
                return
            self.holder = renewed

    def _lost_message(self) -> str:
        taker = self._lost_to.describe() if self._lost_to else "unknown"
        return (
            f"the lakehouse writer lock at {self.uri} was taken over by another carelake run ({taker}) while run "
            f"{self.holder.run_id} held it (not renewed within lock.ttl_seconds={self._settings.ttl_seconds:g}); "
            "tables both runs wrote may need a rerun (docs/operations.md)"
        )

    def check(self) -> None:
        """Raise :class:`WriterLockError` when the lock was taken over by another run."""
        if self._lost_to is not None:
            raise WriterLockError(self._lost_message())

    def release(self) -> None:
        """Stop renewing and give the lock up; raise :class:`WriterLockError` when it was lost."""
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self._lost_to is None:
            try:
                self._lost_to = self._backend.release()
            except Exception as exc:  # the run's work is done; the lock lapses at its expiry
                log.warning("could not release the writer lock at %s (it expires at %s): %s", self.uri, self.holder.expires, exc)
        self.check()


def _held_message(uri: str, holder: LockHolder, freed_on_exit: bool, waited: float) -> str:
    if freed_on_exit:
        after = "it is freed when that process ends"
    elif holder.expires:
        after = f"if that run stopped without releasing it, the lock expires at {holder.expires} and the next run takes it over"
    else:
        after = f"the lock records no expiry: delete {uri} once no run is writing"
    wait = f" after waiting {waited:g} s" if waited else ""
    return (
        f"another carelake run ({holder.describe()}) holds the lakehouse writer lock at {uri}{wait}; "
        f"wait for it to finish and run again, or set lock.wait_seconds to wait for it ({after})"
    )


def acquire(config: Config, run_id: str, settings: LockSettings | None = None) -> WriterLock:
    """Take the writer lock of ``config``'s lakehouse for run ``run_id``.

    Waits up to ``lock.wait_seconds`` while another run holds it, then raises
    :class:`WriterLockError` naming the holder and the lock's URI.
    """
    settings = settings or LockSettings.from_config(config)
    uri = lock_uri(config)
    backend: _Backend = _ObjectLock(uri, config) if is_remote(uri) else _FileLock(uri)
    started = time.monotonic()
    while True:
        now = time.time()
        expires = None if backend.freed_on_exit() else _now_iso(now + settings.ttl_seconds)
        holder = LockHolder(current_actor(), socket.gethostname(), os.getpid(), run_id, _now_iso(now), expires)
        current = backend.try_take(holder)
        if current is None:
            log.info("run %s holds the lakehouse writer lock at %s", run_id, uri)
            return WriterLock(backend, holder, settings)
        waited = time.monotonic() - started
        if waited >= settings.wait_seconds:
            raise WriterLockError(_held_message(uri, current, backend.freed_on_exit(), round(waited)))
        time.sleep(min(POLL_SECONDS, settings.wait_seconds - waited))


@contextmanager
def writer_lock(config: Config, run_id: str, settings: LockSettings | None = None) -> Iterator[WriterLock]:
    """Hold the writer lock around a block: :func:`acquire` on entry, release on exit.

    A lock lost meanwhile is raised on exit unless the block is already raising.
    """
    lock = acquire(config, run_id, settings)
    try:
        yield lock
    except BaseException:
        try:
            lock.release()
        except WriterLockError as exc:
            log.error("%s", exc)
        raise
    lock.release()
