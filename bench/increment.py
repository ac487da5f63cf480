"""An incremental landing batch: ~1% new and ~1% changed records, in the sources' own layouts.

The generator is deterministic and streams month by month, so generating one month more than
the full data set with the same seed reproduces the full data set and continues it: the extra
month carries new encounters, procedures, claims, referrals and CRM rows with ids that follow
the existing ones, and provider / patient change files with later ``updated_at``. Sampling
that month down to ``fraction`` of each entity's volume gives the new / changed rows; a re-send
of existing encounters with a later ``updated_at`` and another satisfaction score adds changed
facts.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np

from carelake.config import Config, SourceSystem
from carelake.generate import generate
from carelake.generate.formats import file_name

Row = dict[str, object]
# Entities sampled by their own rows; procedures and claims follow the encounters kept.
FOLLOW_ENCOUNTERS = ("procedures", "claims")


def read_rows(data: bytes, system: SourceSystem) -> list[Row]:
    """The records of one landing file (CSV with the system's delimiter, or JSON lines)."""
    text = data.decode(system.options.get("encoding", "UTF-8"))
    if system.format == "json":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return list(csv.DictReader(io.StringIO(text), delimiter=system.options.get("delimiter", ",")))


def render_rows(rows: list[Row], system: SourceSystem) -> bytes:
    """``rows`` back in the system's layout (the inverse of :func:`read_rows`)."""
    out = io.StringIO()
    if system.format == "json":
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")
    else:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), delimiter=system.options.get("delimiter", ","),
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue().encode(system.options.get("encoding", "UTF-8"))


def _month_tag(start: date, months: int) -> str:
    index = start.year * 12 + start.month - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def write_increment(landing: Path, config: Config, scale: float, seed: int, fraction: float = 0.01,
                    start: date = date(2024, 1, 1), months: int = 12) -> dict[str, dict[str, int]]:
    """Write the incremental batch of the data set ``generate(..., scale, seed, start, months)``
    into ``landing`` as new files; returns per entity the rows written as ``new`` and ``changed``.
    """
    rng = np.random.default_rng(seed + 1)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"new": 0, "changed": 0})
    next_tag, last_tag = _month_tag(start, months), _month_tag(start, months - 1)
    with tempfile.TemporaryDirectory(prefix="carelake-increment-") as tmp:
        manifest = generate(tmp, config, scale=scale, seed=seed, start=start, months=months + 1)
        totals: dict[tuple[str, str], int] = defaultdict(int)
        for f in manifest.files:
            if next_tag not in f.path:
                totals[(f.source_system, f.entity)] += f.rows
        extra = sorted((f for f in manifest.files if next_tag in f.path),
                       key=lambda f: f.entity in FOLLOW_ENCOUNTERS)  # encounters before their followers
        kept_encounters: dict[str, set[str]] = defaultdict(set)
        later_stamps: dict[str, list[object]] = {}
        for f in extra:
            system = config.sources[f.source_system]
            entity = system.entities[f.entity]
            rows = read_rows((Path(tmp) / f.path).read_bytes(), system)
            if not rows:
                continue
            if f.entity in FOLLOW_ENCOUNTERS:
                key = entity.columns["encounter_id"]
                known = set().union(*kept_encounters.values())
                kept = [r for r in rows if r[key] in known]
            else:
                share = min(1.0, fraction * totals[(f.source_system, f.entity)] / len(rows))
                kept = [r for r, keep in zip(rows, rng.random(len(rows)) < share, strict=True) if keep]
            if f.entity == "encounters":
                kept_encounters[f.source_system] = {r[entity.columns["encounter_id"]] for r in kept}
                later_stamps[f.source_system] = [r[entity.columns["updated_at"]] for r in rows]
            if kept:
                target = landing / f.path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(render_rows(kept, system))
                # providers / patients rows of the extra month are the generator's change records
                kind = "changed" if f.entity in ("providers", "patients") else "new"
                counts[f.entity][kind] += len(kept)
    for name, stamps in later_stamps.items():
        counts["encounters"]["changed"] += _resend_encounters(landing, config.sources[name], last_tag, stamps,
                                                              fraction, totals[(name, "encounters")], rng)
    return dict(counts)


def _resend_encounters(landing: Path, system: SourceSystem, tag: str, stamps: list[object], fraction: float,
                       total: int, rng: np.random.Generator) -> int:
    """Re-send ``fraction`` of ``system``'s encounters from its month ``tag`` file with a later
    ``updated_at`` (taken from the next month, so it is in the source's own format) and a rotated
    satisfaction score; returns the rows written."""
    entity = system.entities["encounters"]
    rows = read_rows((landing / file_name(entity, tag)).read_bytes(), system)
    picked = rng.choice(len(rows), size=min(len(rows), max(1, round(fraction * total))), replace=False)
    stamp_col, score_col = entity.columns["updated_at"], entity.columns.get("satisfaction_score")
    changed = []
    for i, p in enumerate(sorted(picked.tolist())):
        row = dict(rows[p])
        row[stamp_col] = stamps[i % len(stamps)]
        if score_col:
            row[score_col] = rows[(p + 1) % len(rows)][score_col]
        changed.append(row)
    target = landing / file_name(entity, tag + "-resend")
    target.write_bytes(render_rows(changed, system))
    return len(changed)
