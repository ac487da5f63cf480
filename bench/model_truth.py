"""The models' provider scores against the truth the generator planted.

Reads a lakehouse built by ``make run`` (curated ``provider_scores`` and ``provider_features`` at
their latest ``as_of``) and the landing zone's ``_truth/providers.csv``, and reports Spearman
correlations: the poor-outcome model's score with the planted quality (a good model ranks
high-quality providers low, so the correlation is negative), the cost model's score with the
planted cost factor (positive), each overall and averaged within specialties. Beside each, a
simpler measure from the feature store (the raw readmission + complication rate, the raw cost per
case) on the same providers, so the table says whether the model adds anything.

    .venv/bin/python -m bench.model_truth --root lakehouse --out bench/results/<date>-model-truth.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
from deltalake import DeltaTable
from scipy.stats import spearmanr

from carelake.generate.truth import PROVIDERS_FILE, TRUTH_DIR

MIN_SPECIALTY_PROVIDERS = 10  # a within-specialty correlation over fewer is mostly noise
MODELS = {  # model -> (planted column, simpler feature-store measure, its description)
    "carelake_poor_outcome": ("quality", "_poor_rate", "readmission_rate + complication_rate"),
    "carelake_cost_per_case": ("cost_factor", "cost_per_case", "cost_per_case"),
}


def latest(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["as_of"] == frame["as_of"].max()]


def correlations(frame: pd.DataFrame, measure: str, truth: str) -> dict[str, float | int]:
    """Spearman of ``measure`` with ``truth``: over all rows, and the provider-weighted mean over
    specialties with at least :data:`MIN_SPECIALTY_PROVIDERS` rows."""
    rows = frame[[measure, truth, "specialty"]].dropna()
    overall = float(spearmanr(rows[measure], rows[truth]).statistic)
    within, weights = [], []
    for _, group in rows.groupby("specialty"):
        if len(group) >= MIN_SPECIALTY_PROVIDERS and group[measure].nunique() > 1:
            within.append(float(spearmanr(group[measure], group[truth]).statistic))
            weights.append(len(group))
    mean_within = sum(r * w for r, w in zip(within, weights, strict=True)) / sum(weights) if weights else float("nan")
    return {"providers": len(rows), "spearman": round(overall, 3), "spearman_within_specialty": round(mean_within, 3),
            "specialties": len(within)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("lakehouse"), help="lakehouse root (default: lakehouse)")
    parser.add_argument("--out", type=Path, required=True, help="JSON result file; a .md beside it")
    args = parser.parse_args(argv)
    curated = args.root / "curated"
    truth_file = args.root / "landing" / TRUTH_DIR / PROVIDERS_FILE
    for path in (curated / "provider_scores", curated / "provider_features", truth_file):
        if not path.exists():
            print(f"bench.model_truth: {path} is missing: run make run first", file=sys.stderr)
            return 2
    scores = latest(DeltaTable(str(curated / "provider_scores")).to_pandas())
    features = latest(DeltaTable(str(curated / "provider_features")).to_pandas())
    features["_poor_rate"] = features["readmission_rate"] + features["complication_rate"]
    truth = pd.read_csv(truth_file, dtype={"npi": str})
    result: dict = {"command": "python -m bench.model_truth " + " ".join(argv or sys.argv[1:]),
                    "as_of": str(scores["as_of"].max()), "models": {}}
    for model, (planted, simple, simple_name) in MODELS.items():
        mine = scores[scores["model_name"] == model]
        if mine.empty:
            result["models"][model] = {"note": "no scores (no champion)"}
            continue
        frame = (mine[["npi", "score", "model_version"]]
                 .merge(features[["npi", "specialty", simple, "encounters_365d"]], on="npi")
                 .merge(truth[["npi", planted]], on="npi"))
        frame = frame[frame["encounters_365d"] > 0]
        result["models"][model] = {
            "version": int(frame["model_version"].max()), "planted": planted,
            "model": correlations(frame, "score", planted),
            "simple_measure": simple_name, "simple": correlations(frame, simple, planted),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Model scores against the planted truth (as of {result['as_of']})", "", f"`{result['command']}`", "",
             "| model | planted | measure | providers | Spearman | within specialty (mean) |", "|---|---|---|---:|---:|---:|"]
    for model, r in result["models"].items():
        if "note" in r:
            lines.append(f"| {model} | | {r['note']} | | | |")
            continue
        for name, key in ((f"model v{r['version']} score", "model"), (r["simple_measure"], "simple")):
            c = r[key]
            lines.append(f"| {model} | {r['planted']} | {name} | {c['providers']} | {c['spearman']} | "
                         f"{c['spearman_within_specialty']} ({c['specialties']} specialties) |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
