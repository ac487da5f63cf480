"""FHIR ingest against CSV ingest of the same records: rows/s of `carelake ingest`.

One hospital, generated twice from the same seed and scale: once in hospital_d's FHIR layout
(bulk NDJSON and Bundles), once in hospital_a's CSV layout under the same name, so both hold
the same records. Each is ingested into a fresh lakehouse in this one Spark session (the CSV
run first warms the JVM); the figure is raw rows written per second of the ingest stage.

    .venv/bin/python -m bench.fhir_ingest --scale 0.1 --out bench/results/2026-12-01-fhir-ingest.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from carelake.config import Config, load_config
from carelake.delta import open_tables
from carelake.generate import generate
from carelake.ingest import run_ingest
from carelake.spark import build_session

REPO = Path(__file__).resolve().parents[1]


def one_hospital(base: Config, layout: str, root: Path) -> Config:
    """``base`` with a single source named hospital_d in the layout of source ``layout``."""
    spec = dict(base.raw["sources"][layout])
    spec.pop("display_name", None)
    return base.with_overrides(**{
        "sources": {"hospital_d": spec},
        "lakehouse.root": str(root / "lakehouse"),
        "lakehouse.landing": str(root / "landing"),
    })


def measure(spark, config: Config, scale: float, seed: int) -> dict:
    started = time.perf_counter()
    manifest = generate(config.landing, config, scale=scale, seed=seed)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    summary = run_ingest(spark, config, open_tables(spark, config), "bench")
    seconds = time.perf_counter() - started
    rows = sum(c.rows_written for c in summary.entities.values())
    return {"rows": rows, "files": len({f.path for f in manifest.files}), "ingest_seconds": round(seconds, 1),
            "rows_per_second": round(rows / seconds, 1), "generate_seconds": round(generated, 1), "status": summary.status}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    base = load_config(REPO / "conf" / "local.yaml", env={})
    spark = build_session(base)
    results = {}
    for label, layout in (("csv", "hospital_a"), ("fhir", "hospital_d")):
        work = Path(tempfile.mkdtemp(prefix=f"carelake-bench-{label}-"))
        try:
            results[label] = measure(spark, one_hospital(base, layout, work), args.scale, args.seed)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(label, results[label], flush=True)
    report = {
        "what": "carelake ingest of one hospital's generated records, CSV layout vs FHIR R4 layout (same seed and scale)",
        "scale": args.scale, "seed": args.seed, "cores": os.cpu_count(),
        "load_average_at_end": os.getloadavg(), "results": results,
        "fhir_vs_csv_rows_per_second": round(results["fhir"]["rows_per_second"] / results["csv"]["rows_per_second"], 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
