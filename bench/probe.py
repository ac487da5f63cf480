"""Measurements taken around a stage: peak memory of the driver and the Python workers, and
the files and bytes each lakehouse zone gained."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil


def _is_java(proc: psutil.Process) -> bool:
    try:
        return proc.name().startswith("java")
    except psutil.Error:
        return False


class ThreadSampler:
    """Calls :meth:`sample` every ``interval_s`` in a thread while used as a context manager."""

    def __init__(self, interval_s: float, name: str) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()


class CpuSampler(ThreadSampler):
    """CPU seconds (user + system) of process ``pid`` and every descendant: each process counts
    with its last sample, so a process that ends loses at most one interval. On a loaded machine
    CPU time moves much less than wall time."""

    def __init__(self, pid: int, interval_s: float = 1.0) -> None:
        super().__init__(interval_s, "cpu-sampler")
        self._root = psutil.Process(pid)
        self._seen: dict[int, float] = {}

    @property
    def seconds(self) -> float:
        return round(sum(self._seen.values()), 1)

    def sample(self) -> None:
        try:
            procs = [self._root, *self._root.children(recursive=True)]
        except psutil.Error:
            procs = []
        for proc in procs:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            self._seen[proc.pid] = max(self._seen.get(proc.pid, 0.0), times.user + times.system)


class MemorySampler(ThreadSampler):
    """Samples, every ``interval_s`` in a thread, the RSS of the driver (the Python process
    ``pid``, default this one, plus the Spark JVM it launched) and the summed RSS of the Python
    workers (the JVM's Python children); :meth:`reset` starts a new peak, e.g. per stage."""

    def __init__(self, interval_s: float = 0.25, pid: int | None = None) -> None:
        super().__init__(interval_s, "rss-sampler")
        self.peak_driver = 0
        self.peak_workers = 0
        self._me = psutil.Process(pid or os.getpid())

    def reset(self) -> None:
        self.sample()
        self.peak_driver, self.peak_workers = self._driver_workers()

    def sample(self) -> None:
        driver, workers = self._driver_workers()
        self.peak_driver = max(self.peak_driver, driver)
        self.peak_workers = max(self.peak_workers, workers)

    def _driver_workers(self) -> tuple[int, int]:
        driver, workers = self._rss(self._me), 0
        try:
            children = self._me.children(recursive=True)
        except psutil.Error:
            return driver, workers  # a sampled child process has ended
        for child in children:
            rss = self._rss(child)
            if _is_java(child):
                driver += rss
            elif any(_is_java(p) for p in _parents(child)):
                workers += rss  # pyspark.daemon and its forked workers live under the JVM
        return driver, workers

    @staticmethod
    def _rss(proc: psutil.Process) -> int:
        try:
            return proc.memory_info().rss
        except psutil.Error:
            return 0  # the process ended between listing and reading it



def _parents(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.parents()
    except psutil.Error:
        return []


@dataclass(frozen=True)
class ZoneUsage:
    """Files and bytes under one zone folder."""

    files: int
    bytes: int


def zone_usage(root: Path, skip: tuple[str, ...] = ("landing",)) -> dict[str, ZoneUsage]:
    """Per top-level folder of the lakehouse ``root`` (a zone, ``_runs`` ...): files and bytes."""
    usage: dict[str, ZoneUsage] = {}
    if not root.exists():
        return usage
    for zone in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in skip):
        sizes = [f.stat().st_size for f in zone.rglob("*") if f.is_file()]
        usage[zone.name] = ZoneUsage(len(sizes), sum(sizes))
    return usage


def usage_growth(before: dict[str, ZoneUsage], after: dict[str, ZoneUsage]) -> dict[str, ZoneUsage]:
    """What each zone gained between two :func:`zone_usage` walks (files removed count negative)."""
    empty = ZoneUsage(0, 0)
    return {
        zone: ZoneUsage(after[zone].files - before.get(zone, empty).files,
                        after[zone].bytes - before.get(zone, empty).bytes)
        for zone in after
    }
