"""``make run`` timed per Delta engine: the same two commands on a fresh lakehouse.

``make run`` is ``carelake generate --scale 1 --seed 42 --defect-rate 0.01`` then ``carelake run``
(the default stages in one Spark session, then the top-providers report). Here each runs as
its own process, as make runs it, with ``CARELAKE_LAKEHOUSE__ROOT`` pointing at a new temp
folder and ``CARELAKE_DELTA__ENGINE`` naming the engine; the wall time of ``carelake run`` is the
figure compared between engines.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.probe import MemorySampler

REPO = Path(__file__).resolve().parents[1]
DEFECT_RATE = 0.01  # the Makefile's DEFECT_RATE
LOAD_EVERY_S = 5.0


def _load1() -> float:
    return round(os.getloadavg()[0], 2)


def pipeline_env(root: Path, engine: str) -> dict[str, str]:
    """This process's environment with the lakehouse root and the Delta engine overridden."""
    env = {k: v for k, v in os.environ.items() if k != "CARELAKE_LAKEHOUSE__LANDING"}  # landing: <root>/landing
    env.update({"CARELAKE_LAKEHOUSE__ROOT": str(root), "CARELAKE_DELTA__ENGINE": engine,
                "PYSPARK_PYTHON": env.get("PYSPARK_PYTHON", sys.executable)})
    return env


def _timed(command: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``command``, output to ``log``; its wall time, exit code, load samples and peak memory."""
    loads = [_load1()]
    started = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        with MemorySampler(pid=proc.pid) as sampler:
            while True:
                try:
                    proc.wait(timeout=LOAD_EVERY_S)
                    break
                except subprocess.TimeoutExpired:
                    loads.append(_load1())
    wall = time.perf_counter() - started
    loads.append(_load1())
    return {"wall_s": round(wall, 3), "returncode": proc.returncode, "load1_before": loads[0],
            "load1_mean": round(sum(loads) / len(loads), 2), "load1_max": max(loads), "load1_after": loads[-1],
            "peak_driver_rss": sampler.peak_driver, "peak_worker_rss": sampler.peak_workers}


def _stage_seconds(root: Path) -> dict[str, Any]:
    """Status and seconds per stage from the run summary ``carelake run`` wrote under ``root``."""
    summaries = sorted((root / "_runs").glob("*.json"))
    if not summaries:
        return {}
    summary = json.loads(summaries[-1].read_text())
    return {"status": summary["status"],
            "stages": {s["stage"]: {"status": s["status"], "duration_s": s["duration_s"]} for s in summary["stages"]}}


def time_pipeline(engine: str, scale: float, seed: int, conf: Path, workdir: Path | None, keep: bool) -> dict[str, Any]:
    """``make run``'s generate and ``carelake run`` at ``scale`` on ``engine`` in a fresh lakehouse."""
    base = Path(tempfile.mkdtemp(prefix=f"carelake-bench-pipeline-{engine}-", dir=workdir))
    root, log = base / "lake", base / "pipeline.log"
    env = pipeline_env(root, engine)
    cli = [sys.executable, "-m", "carelake.cli"]
    generate = _timed([*cli, "generate", "--conf", str(conf), "--scale", str(scale), "--seed", str(seed),
                       "--defect-rate", str(DEFECT_RATE)], env, log)
    result: dict[str, Any] = {"engine": engine, "scale": scale, "seed": seed, "workdir": str(base),
                              "generate_s": generate["wall_s"], "errors": []}
    if generate["returncode"] != 0:
        result["errors"].append(f"generate exited {generate['returncode']}")
    else:
        print(f"pipeline {engine}: carelake run at scale {scale} (load {_load1()})", flush=True)
        result.update(_timed([*cli, "run", "--conf", str(conf)], env, log))
        result.update(_stage_seconds(root))
        if result["returncode"] != 0:
            tail = log.read_text(errors="replace").splitlines()[-5:]
            result["errors"].append(f"carelake run exited {result['returncode']}: " + " | ".join(tail))
        print(f"pipeline {engine}: {result.get('status')} {result['wall_s']:.1f}s load mean {result['load1_mean']}",
              flush=True)
    if not keep:
        shutil.rmtree(base, ignore_errors=True)
    return result
