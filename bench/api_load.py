"""Latency and throughput of the provider API on loopback: a fixed number of requests at several
concurrency levels, sent by ``hey`` (Debian package ``hey``), against ``carelake api`` serving a
lakehouse built at one scale.

    python -m bench.api_load --scale 1 --requests 2000 --concurrency 1,8,32   (or: make bench-api)
    python -m bench.api_load --root DIR ...    (serve a lakehouse whose curated tables exist)

Writes ``<out>/<date>[-tag]-api.json`` and ``.md``: per endpoint and concurrency the p50, p95 and
p99 latency, throughput and non-200 answers, with the load average before and after. The goal
(docs/benchmark.md): p99 under 50 ms for the single-provider lookup at 32 concurrent clients.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from deltalake import DeltaTable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from carelake.serve.cluster import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CARELAKE = str(Path(sys.executable).with_name("carelake"))
GOAL_P99_MS = 50.0
GOAL_ENDPOINT, GOAL_CONCURRENCY = "provider", 32


def _env(root: Path, key: str | None = None) -> dict[str, str]:
    env = {**os.environ, "CARELAKE_LAKEHOUSE__ROOT": str(root), "PYSPARK_PYTHON": sys.executable}
    if key:
        env["CARELAKE_API_KEYS"] = f"analyst:{key}"
    return env


def build_lakehouse(root: Path, scale: float, seed: int) -> float:
    """Generate sample data at ``scale`` and run every stage into ``root``; returns seconds."""
    started = time.monotonic()
    for args in (["generate", "--scale", str(scale), "--seed", str(seed)], ["run"]):
        subprocess.run([CARELAKE, *args], env=_env(root), cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def _get(base: str, path: str, key: str) -> Any:
    request = urllib.request.Request(base + path, headers={"X-API-Key": key})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def start_api(root: Path, port: int, key: str, log_path: Path) -> subprocess.Popen:
    """``carelake api`` on 127.0.0.1:``port``, returned once it has loaded its tables."""
    log = log_path.open("w")
    process = subprocess.Popen([CARELAKE, "api", "--port", str(port)], env=_env(root, key), cwd=REPO, stdout=log, stderr=log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"carelake api exited with {process.returncode}: see {log_path}")
        try:
            if _get(f"http://127.0.0.1:{port}", "/health", key)["tables"] > 0:
                return process
        except OSError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"carelake api did not answer on port {port} within 120 s: see {log_path}")


def targets(root: Path) -> dict[str, str]:
    """The paths measured: one lookup, the list of its specialty and area, and the routing of
    that area and specialty, taken from a rank-1 row of ``curated/referral_routing`` (a cell the
    routing endpoint answers)."""
    routing = DeltaTable(str(root / "curated" / "referral_routing")).to_pyarrow_table(columns=["zip3", "specialty", "rank", "npi"])
    cell = next((r for r in routing.to_pylist() if r["rank"] == 1), None)
    if cell is None:
        raise RuntimeError(f"{root}/curated/referral_routing has no ranked provider: nothing to route to")
    zip3, specialty, npi = cell["zip3"], cell["specialty"], cell["npi"]
    query = urllib.parse.urlencode({"specialty": specialty, "zip3": zip3, "limit": 50})
    route = urllib.parse.urlencode({"zip3": zip3, "specialty": specialty})
    return {"provider": f"/v1/providers/{npi}", "providers": f"/v1/providers?{query}", "routing": f"/v1/routing?{route}"}


def hey_command() -> str | None:
    """The hey the Makefile built into the venv, else one on PATH; None without either."""
    built = Path(sys.executable).parent / "hey"
    return str(built) if built.exists() else shutil.which("hey")


def run_hey(url: str, key: str, requests: int, concurrency: int) -> dict[str, Any]:
    """``requests`` GETs of ``url`` by ``concurrency`` clients; latency percentiles in ms."""
    out = subprocess.run(
        [hey_command() or "hey", "-n", str(requests), "-c", str(concurrency), "-H", f"X-API-Key: {key}", "-o", "csv", url],
        check=True, capture_output=True, text=True,
    ).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    latency = np.array([float(r["response-time"]) for r in rows]) * 1000
    ends = [float(r["offset"]) + float(r["response-time"]) for r in rows]
    seconds = max(ends) - min(float(r["offset"]) for r in rows)
    return {
        "concurrency": concurrency, "requests": len(rows),
        "non_200": sum(1 for r in rows if r["status-code"] != "200"),
        "p50_ms": round(float(np.percentile(latency, 50)), 2),
        "p95_ms": round(float(np.percentile(latency, 95)), 2),
        "p99_ms": round(float(np.percentile(latency, 99)), 2),
        "max_ms": round(float(latency.max()), 2),
        "throughput_rps": round(len(rows) / seconds, 1),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Provider API latency ({result['date']})", "",
        f"`{result['command']}` — {result['requests']} requests per cell with hey on loopback, "
        f"scale {result['scale']} ({result['providers']} providers), {result['cpus']} CPUs, "
        f"load average before {result['load_before']}, after {result['load_after']}.", "",
        "| endpoint | concurrency | p50 ms | p95 ms | p99 ms | max ms | requests/s | non-200 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, cells in result["endpoints"].items():
        for c in cells:
            lines.append(
                f"| {name} | {c['concurrency']} | {c['p50_ms']} | {c['p95_ms']} | {c['p99_ms']} | {c['max_ms']} | "
                f"{c['throughput_rps']} | {c['non_200']} |"
            )
    goal = result["goal"]
    lines += ["", f"Goal: p99 under {goal['p99_ms']} ms for {goal['endpoint']} at {goal['concurrency']} clients: "
              f"measured {goal['measured_p99_ms']} ms ({'met' if goal['met'] else 'not met'})."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api_load", description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="sample data scale of the lakehouse built, or that --root was built at (default 1)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--root", type=Path, default=None, help="serve this lakehouse instead of building one")
    parser.add_argument("--requests", type=int, default=2000, help="requests per endpoint and concurrency")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--tag", default="", help="suffix of the result file names")
    args = parser.parse_args(argv)
    if hey_command() is None:
        print("bench.api_load: the load tool hey is missing: make bench-api builds it into .venv/bin "
              "(needs Go), or apt-get install hey (Debian/Ubuntu)", file=sys.stderr)
        return 2
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    with tempfile.TemporaryDirectory(prefix="carelake-bench-api-") as tmp:
        root = args.root.resolve() if args.root else Path(tmp) / "lakehouse"
        build_seconds = None if args.root else round(build_lakehouse(root, args.scale, args.seed), 1)
        key = secrets.token_urlsafe(24)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        process = start_api(root, port, key, Path(tmp) / "api.log")
        try:
            paths = targets(root)
            versions = _get(base, "/v1/versions", key)["meta"]["tables"]
            providers = _get(base, "/v1/providers?limit=1", key)["page"]["total"]
            load_before = [round(x, 2) for x in os.getloadavg()]
            endpoints = {name: [run_hey(base + path, key, args.requests, c) for c in levels] for name, path in paths.items()}
            load_after = [round(x, 2) for x in os.getloadavg()]
        finally:
            process.terminate()
            process.wait(timeout=30)
    goal_cell = next((c for c in endpoints[GOAL_ENDPOINT] if c["concurrency"] == GOAL_CONCURRENCY), None)
    measured = goal_cell["p99_ms"] if goal_cell else None
    result = {
        "date": date.today().isoformat(), "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m bench.api_load " + " ".join(argv if argv is not None else sys.argv[1:]),
        "scale": args.scale, "root": str(args.root) if args.root else None,
        "build_seconds": build_seconds, "providers": providers, "tables": versions, "paths": paths,
        "requests": args.requests, "cpus": os.cpu_count(), "load_before": load_before, "load_after": load_after,
        "endpoints": endpoints,
        "goal": {"endpoint": GOAL_ENDPOINT, "concurrency": GOAL_CONCURRENCY, "p99_ms": GOAL_P99_MS,
                 "measured_p99_ms": measured, "met": measured is not None and measured < GOAL_P99_MS},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{result['date']}{'-' + args.tag if args.tag else ''}-api"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"written: {stem}.json, {stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
