"""Patient matching against the planted people: pairwise precision and recall, and time.

The patient records the generator plants at ``--scale`` (each hospital's own and the people
registered at two or three hospitals, and twins; no files written) are normalised and linked
with the model the match stage uses (:func:`carelake.matching.link_records`), and the links
compared with ``_truth/persons.csv``'s people; the exact rule "same first name, last name and
birth date" is measured beside it.

    .venv/bin/python -m bench.matching --scale 1 --out bench/results/2026-12-01-matching-scale1.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from pyspark.sql import functions as F

from carelake.config import load_config
from carelake.matching import MatchSettings, link_records, normalised_identifiers
from carelake.matching.evaluation import exact_rule_groups, pairwise_quality, planted_registrations
from carelake.matching.identifiers import nickname_table
from carelake.spark import build_session

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--backend", default="duckdb")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    config = load_config(REPO / "conf" / "local.yaml", env={})
    spark = build_session(config)
    frames = planted_registrations(spark, config, args.scale, args.seed)
    identifiers = normalised_identifiers(frames["patients"], frames["pii"], nickname_table(spark)).localCheckpoint(eager=True)
    records = identifiers.count()
    started = time.monotonic()
    linkage = link_records(spark, identifiers, MatchSettings(backend=args.backend, seed=args.seed))
    seconds = time.monotonic() - started
    found = pairwise_quality(linkage.clusters, frames["truth"], "patient_key", "cluster_id", "person_id")
    exact = pairwise_quality(exact_rule_groups(identifiers, ("first_name", "last_name", "birth_date")),
                             frames["truth"], "patient_key", "rule_group", "person_id")
    decisions = {r["decision"]: r["count"] for r in linkage.pairs.groupBy("decision").count().collect()}
    result = {
        "scale": args.scale, "seed": args.seed, "backend": args.backend, "records": records,
        "people": frames["truth"].select("person_id").distinct().count(),
        "twins": frames["truth"].where(F.col("twin_of").isNotNull()).count(),
        "link_records_seconds": round(seconds, 1), "load_average": [round(x, 2) for x in os.getloadavg()],
        "splink": {"precision": round(found.precision, 5), "recall": round(found.recall, 5),
                   "predicted_links": found.predicted_links, "true_links": found.true_links,
                   "correct_links": found.correct_links, "pairs": decisions},
        "exact_name_and_birth_date": {"precision": round(exact.precision, 5), "recall": round(exact.recall, 5),
                                      "predicted_links": exact.predicted_links, "correct_links": exact.correct_links},
        "notes": linkage.notes,
        "command": f".venv/bin/python -m bench.matching --scale {args.scale:g} --out {args.out}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
