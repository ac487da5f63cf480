"""Latency, throughput and soak of ``carelake stream``.

    python -m bench.stream --scale 1 --rates 4,12,30 --minutes 4 --soak-minutes 15   (make bench runs it)

A sample is generated once; for each rate (files landed per minute, in month order, each copied
under a dot-name and renamed so it appears whole) a fresh lakehouse gets ``carelake stream``
(processing-time trigger) in its own process while a loader lands files at that rate for the
given minutes. From the stream's progress records (``<root>/_stream/progress/``, one object per micro-batch) it reports,
per rate, the seconds from a file landing to the end of the micro-batch's ingest (queryable in
raw), process (processed) and aggregates (curated) stages, p50 and p95, and whether latency
grew over the run (the second half's p95 over the first half's: above 1.5 the stream is falling
behind). The soak run lands files at the lowest rate with maintenance every few micro-batches and
samples the file count of the zones, of the checkpoint and of the largest raw table, to show
they stay bounded. Results: ``bench/results/<date>-stream.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from statistics import quantiles
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
LATENCY_STAGES = {"raw": "ingest", "processed": "process", "curated": "aggregates"}


def percentile(values: list[float], q: int) -> float | None:
    """The ``q``-th percentile (inclusive method); None for no values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return quantiles(values, n=100, method="inclusive")[q - 1]


def stage_latencies(progress: list[dict[str, Any]], stage: str) -> list[tuple[float, float]]:
    """(landed_at, seconds to the end of ``stage``) for every file of every micro-batch that ran it."""
    out = []
    for record in progress:
        end = record.get("stage_finished_at", {}).get(stage)
        if end is not None:
            out.extend((t, end - t) for t in record.get("landed_at", []))
    return sorted(out)


def summarise(progress: list[dict[str, Any]]) -> dict[str, Any]:
    """p50/p95 per zone, files, micro-batches, and the growth of p95 from the first to the second half."""
    result: dict[str, Any] = {"micro_batches": sum(1 for p in progress if p["files"]), "files": sum(p["files"] for p in progress)}
    for zone, stage in LATENCY_STAGES.items():
        pairs = stage_latencies(progress, stage)
        values = [v for _, v in pairs]
        half = len(pairs) // 2
        first, second = [v for _, v in pairs[:half]], [v for _, v in pairs[half:]]
        p95_first, p95_second = percentile(first, 95), percentile(second, 95)
        result[zone] = {
            "p50_s": percentile(values, 50), "p95_s": percentile(values, 95), "max_s": max(values) if values else None,
            "p95_growth": (p95_second / p95_first) if p95_first and p95_second else None,
        }
    return result


def land_at_rate(files: list[Path], source: Path, landing: Path, per_minute: float, stop: threading.Event) -> int:
    """Land ``files`` in order at ``per_minute``; returns how many landed before ``stop``."""
    gap = 60.0 / per_minute
    landed = 0
    next_at = time.monotonic()
    for path in files:
        if stop.wait(max(0.0, next_at - time.monotonic())):
            break
        target = landing / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.part")
        shutil.copy(path, partial)
        os.replace(partial, target)
        landed += 1
        next_at += gap
    return landed


def file_count(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def run_stream(source: Path, files: list[Path], root: Path, per_minute: float, minutes: float,
               interval: float, maintain_every: int, samples: list[dict[str, Any]] | None = None,
               drain_minutes: float = 10.0) -> dict[str, Any]:
    """One stream on a fresh lakehouse at ``root`` while files land at ``per_minute``."""
    from carelake.config import load_config
    from carelake.stream import read_progress

    env = {
        **os.environ, "PYSPARK_PYTHON": sys.executable, "CARELAKE_LAKEHOUSE__ROOT": str(root),
        "CARELAKE_SPARK__CONF__spark.ui.enabled": "false",
        "CARELAKE_STREAM__INTERVAL_SECONDS": str(interval), "CARELAKE_STREAM__MAINTAIN_EVERY": str(maintain_every),
    }
    config = load_config(REPO / "conf" / "local.yaml", env={}).with_overrides(**{"lakehouse.root": str(root)})
    landing = root / "landing"
    landing.mkdir(parents=True)
    log = root.parent / f"{root.name}-stream.log"
    with log.open("w") as out:
        job = subprocess.Popen([sys.executable, "-m", "carelake.cli", "stream", "--conf", str(REPO / "conf" / "local.yaml")],
                               env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while "; checkpoint " not in log.read_text():
            if job.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"carelake stream did not start (exit {job.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        stop = threading.Event()
        landed: list[int] = []
        loader = threading.Thread(target=lambda: landed.append(land_at_rate(files, source, landing, per_minute, stop)))
        loader.start()
        end = time.monotonic() + minutes * 60
        while time.monotonic() < end:
            time.sleep(min(15.0, max(0.0, end - time.monotonic())))
            if samples is not None:
                samples.append({"t_s": round(minutes * 60 - (end - time.monotonic())), "table_files": sum(file_count(root / z) for z in ("raw", "processed", "curated")),
                                "checkpoint_files": file_count(root / "_checkpoints"),
                                "raw_encounters_files": file_count(root / "raw" / "encounters")})
            if job.poll() is not None:
                raise RuntimeError(f"carelake stream exited {job.returncode}:\n{log.read_text()[-3000:]}")
        stop.set()
        loader.join()
        # Let the stream work off what landed (at most drain_minutes) before stopping it.
        drain_end = time.monotonic() + drain_minutes * 60
        while time.monotonic() < drain_end and job.poll() is None and sum(p["files"] for p in read_progress(config)) < landed[0]:
            time.sleep(5)
    finally:
        if job.poll() is None:
            # To the driver only (its JVM would exit at once): the running micro-batch finishes,
            # then the query stops.
            os.kill(job.pid, signal.SIGTERM)
            try:
                job.wait(timeout=600)
            except subprocess.TimeoutExpired:
                os.killpg(job.pid, signal.SIGKILL)
                job.wait()
    result = summarise(read_progress(config))
    result.update({"files_per_minute": per_minute, "minutes": minutes, "landed": landed[0] if landed else 0,
                   "load1_after": os.getloadavg()[0]})
    return result


def write_report(out: Path, stamp: str, command: str, scale: float, runs: list[dict[str, Any]], soak: dict[str, Any] | None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stamp}-stream.json").write_text(json.dumps({"command": command, "scale": scale, "runs": runs, "soak": soak}, indent=2))
    fmt = lambda v: "–" if v is None else f"{v:,.1f}"  # noqa: E731
    lines = [f"# carelake stream: latency and throughput (scale {scale})", "", f"Command: `{command}`", "",
             "| files/min | landed | micro-batches | raw p50 / p95 s | processed p50 / p95 s | curated p50 / p95 s | curated p95 growth | load1 after |",
             "|---:|---:|---:|---|---|---|---:|---:|"]
    for r in runs:
        lines.append(f"| {r['files_per_minute']:g} | {r['landed']} | {r['micro_batches']} | "
                     + " | ".join(f"{fmt(r[z]['p50_s'])} / {fmt(r[z]['p95_s'])}" for z in LATENCY_STAGES)
                     + f" | {fmt(r['curated']['p95_growth'])} | {r['load1_after']:.1f} |")
    sustained = [r["files_per_minute"] for r in runs if (r["curated"]["p95_growth"] or 0) <= 1.5 and r["micro_batches"]]
    lines += ["", f"Highest rate with curated p95 not growing (second half / first half <= 1.5): "
              f"{max(sustained):g} files/min" if sustained else "No rate kept curated latency from growing."]
    if soak:
        lines += ["", f"## Soak: {soak['minutes']:g} min at {soak['files_per_minute']:g} files/min, maintenance every {soak['maintain_every']} micro-batches", "",
                  "| t s | files in raw, processed, curated | checkpoint files | raw/encounters files |", "|---:|---:|---:|---:|"]
        lines += [f"| {s['t_s']} | {s['table_files']:,} | {s['checkpoint_files']:,} | {s['raw_encounters_files']:,} |" for s in soak["samples"]]
    path = out / f"{stamp}-stream.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--rates", default="4,12,30", help="files landed per minute, one stream run each")
    parser.add_argument("--minutes", type=float, default=4.0, help="minutes of landing per rate")
    parser.add_argument("--interval", type=float, default=10.0, help="the stream's trigger interval, seconds")
    parser.add_argument("--soak-minutes", type=float, default=15.0, help="0 skips the soak run")
    parser.add_argument("--soak-maintain-every", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--stamp", default=date.today().isoformat())
    args = parser.parse_args(argv)

    from carelake.config import load_config
    from carelake.generate import generate, landing_files

    command = "python -m bench.stream " + " ".join(argv if argv is not None else sys.argv[1:])
    work = Path(tempfile.mkdtemp(prefix="carelake-stream-bench-"))
    try:
        source = work / "sample"
        generate(source, load_config(REPO / "conf" / "local.yaml", env={}), scale=args.scale, seed=42)
        # In the order sources send them: by month, reference data before the facts naming it.
        files = landing_files(source)
        runs = []
        for i, rate in enumerate(float(r) for r in args.rates.split(",")):
            print(f"stream at {rate:g} files/min for {args.minutes:g} min ...", flush=True)
            runs.append(run_stream(source, files, work / f"rate{i}", rate, args.minutes, args.interval, maintain_every=0))
            print(json.dumps(runs[-1]), flush=True)
        soak = None
        if args.soak_minutes > 0:
            rate = min(float(r) for r in args.rates.split(","))
            samples: list[dict[str, Any]] = []
            print(f"soak at {rate:g} files/min for {args.soak_minutes:g} min ...", flush=True)
            result = run_stream(source, files, work / "soak", rate, args.soak_minutes, args.interval,
                                maintain_every=args.soak_maintain_every, samples=samples)
            soak = {**result, "maintain_every": args.soak_maintain_every, "samples": samples}
        path = write_report(args.out, args.stamp, command, args.scale, runs, soak)
        print(f"results: {path}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
