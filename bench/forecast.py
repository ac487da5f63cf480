"""Demand forecast backtest: statsmodels ETS against the (seasonal) naive forecast, on held-out
months of the planted world.

Two years are generated at ``--scale`` (no second registrations of people); each area x
specialty's monthly demand is its residents' encounters with providers of the specialty, read
from the generator's truth files (referrals are left out here: they are a few percent of
demand). The last ``--holdout`` months are forecast from the months before them with
:func:`carelake.curated.forecast.backtest`, once with the full history (a season is fitted and
the baseline is the seasonal naive one) and once with only the last ``12 - holdout`` months
before the hold-out, the history ``make run``'s one-year sample gives (no season; naive baseline).

    .venv/bin/python -m bench.forecast --scale 0.2 --out bench/results/2026-12-01-forecast.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd

from carelake.config import load_config
from carelake.curated.forecast import backtest
from carelake.generate import generate
from carelake.generate.truth import ENCOUNTERS_FILE, PATIENTS_FILE, PROVIDERS_FILE, TRUTH_DIR
from carelake.spark import build_session

REPO = Path(__file__).resolve().parents[1]


def monthly_demand(out: Path) -> pd.DataFrame:
    """(zip3, specialty, service_month, demand) of the generated folder's clean encounters."""
    truth = out / TRUTH_DIR
    enc = pd.read_csv(truth / ENCOUNTERS_FILE, dtype=str, usecols=["source_system", "patient_id", "npi", "admit_date"])
    homes = pd.read_csv(truth / PATIENTS_FILE, dtype=str, usecols=["source_system", "patient_id", "zip3"])
    specialty = pd.read_csv(truth / PROVIDERS_FILE, dtype=str, usecols=["npi", "first_specialty"])
    rows = enc.merge(homes, on=["source_system", "patient_id"]).merge(specialty, on="npi")
    rows["service_month"] = rows["admit_date"].str.slice(0, 7)
    return (rows.groupby(["zip3", "first_specialty", "service_month"]).size().rename("demand").reset_index()
            .rename(columns={"first_specialty": "specialty"}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--holdout", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    config = load_config(REPO / "conf" / "local.yaml", env={})
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        generate(Path(tmp), config, scale=args.scale, seed=args.seed, start=date(2023, 1, 1), months=24, persons=False)
        demand = monthly_demand(Path(tmp))
        print(f"generated 24 months at scale {args.scale} in {time.monotonic() - started:.0f} s: "
              f"{len(demand)} area x specialty x month rows", flush=True)
    spark = build_session(config)
    months = sorted(demand["service_month"].unique())
    one_year = demand[demand["service_month"] >= months[-12]]
    results = {}
    for label, frame in (("24 months of history", demand), ("12 months of history (make run's sample)", one_year)):
        started = time.monotonic()
        results[label] = (backtest(spark.createDataFrame(frame), args.holdout), time.monotonic() - started)
        print(label, f"{results[label][1]:.1f} s", results[label][0].to_string(index=False), sep="\n", flush=True)
    spark.stop()
    lines = [f"# Demand forecast backtest, {date.today()}", "",
             f"Command: `.venv/bin/python -m bench.forecast --scale {args.scale} --seed {args.seed} "
             f"--holdout {args.holdout} --out {args.out}`", "",
             f"Held-out months: the last {args.holdout} of 24 generated; error: mean absolute error per cell and "
             "month (encounters); mae_ratio below 1: the forecast beats the baseline.", ""]
    for label, (table, seconds) in results.items():
        lines += [f"## {label} ({seconds:.1f} s)", "", "```", table.to_string(index=False), "```", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
