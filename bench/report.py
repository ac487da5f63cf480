"""The results files: JSON (everything measured), a Markdown table and a time-vs-scale plot."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

MB = 1024 * 1024


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or not den else num / den


def stage_rows(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per scale and stage (full run), with the incremental run's wall time beside it."""
    rows = []
    for result in results:
        incremental = {s["stage"]: s for s in result.get("incremental", {}).get("stages", [])}
        for s in result["stages"]:
            inc = incremental.get(s["stage"])
            rows.append({
                "scale": result["scale"], **s,
                "incremental_wall_s": inc["wall_s"] if inc else None,
                "incremental_ratio": _ratio(inc["wall_s"] if inc else None, s["wall_s"]),
            })
    return rows


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown(results: Sequence[Mapping[str, Any]], command: str) -> str:
    """The report: per stage table, totals, linearity, incremental ratio and the baselines."""
    lines = [
        "# carelake benchmark", "",
        f"Command: `{command}`", "",
        "| scale | stage | rows in | wall s | rows/s | Spark jobs | peak driver RSS MB | peak worker RSS MB "
        "| files written | MB written | incr. wall s | incr./full |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in stage_rows(results):
        lines.append(
            f"| {r['scale']} | {r['stage']} | {_fmt(r['rows_in'])} | {_fmt(r['wall_s'])} | "
            f"{_fmt(r['rows_per_s'], 0)} | {_fmt(r.get('spark_jobs'))} | {_fmt(r['peak_driver_rss'] / MB, 0)} | "
            f"{_fmt(r['peak_worker_rss'] / MB, 0)} | {_fmt(r['files_written'])} | "
            f"{_fmt(r['bytes_written'] / MB)} | {_fmt(r['incremental_wall_s'])} | "
            f"{_fmt(r['incremental_ratio'], 3)} |")
    lines += ["", "| scale | load avg (1 min) before / after | generate s | full run s | incremental run s "
              "| incr./full | incremental batch |", "|---:|---|---:|---:|---:|---:|---|"]
    for result in results:
        full = sum(s["wall_s"] for s in result["stages"])
        inc = result.get("incremental", {})
        inc_total = sum(s["wall_s"] for s in inc.get("stages", [])) or None
        batch = ", ".join(f"{e} +{c['new']}/~{c['changed']}" for e, c in sorted(inc.get("batch", {}).items()))
        lines.append(f"| {result['scale']} | {result['load_before']:.1f} / {result['load_after']:.1f} | "
                     f"{result['generate_s']:.1f} | {full:.1f} | {_fmt(inc_total)} | "
                     f"{_fmt(_ratio(inc_total, full), 3)} | {batch or '–'} |")
    lines += ["", *linearity(results), "", *baseline_lines(results)]
    errors = [f"- scale {r['scale']}: {e}" for r in results for e in r.get("errors", [])]
    if errors:
        lines += ["", "Errors (the parts named were not measured):", *errors]
    return "\n".join(lines) + "\n"


def linearity(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """time(larger) / time(smaller) per stage between consecutive scales and, with more than two
    scales, between the smallest and the largest (the goal: at most the scale ratio)."""
    lines = ["| stage | scales | scale ratio | wall-time ratio |", "|---|---|---:|---:|"]
    ordered = sorted(results, key=lambda r: r["scale"])
    pairs = list(zip(ordered, ordered[1:], strict=False))
    if len(ordered) > 2:
        pairs.append((ordered[0], ordered[-1]))
    for small, large in pairs:
        walls = {s["stage"]: s["wall_s"] for s in small["stages"]}
        for s in large["stages"]:
            lines.append(f"| {s['stage']} | {small['scale']} → {large['scale']} | "
                         f"{large['scale'] / small['scale']:.1f} | {_fmt(_ratio(s['wall_s'], walls.get(s['stage'])), 2)} |")
    return lines


def baseline_lines(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """Provider aggregates: seconds per engine, carelake / DuckDB and carelake / pandas, and the checks."""
    lines = ["Answers: pandas and Spark SQL vs DuckDB within 1e-6 relative; curated provider_features vs "
             "DuckDB within its rounding (counts exact, rates 0.5e-4, money 0.005).", "",
             "| scale | as_of | NPIs | DuckDB s | pandas s | carelake Spark SQL s | aggregates stage s "
             "| Spark / DuckDB | Spark / pandas | aggregates stage / DuckDB | answers |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for result in results:
        b = result.get("baselines")
        if not b:
            continue
        verdict = "; ".join(b["mismatches"]) or "all agree"
        lines.append(
            f"| {result['scale']} | {b['as_of']} | {b['npis']:,} | {b['duckdb_s']:.2f} | {b['pandas_s']:.2f} | "
            f"{b['spark_s']:.2f} | {_fmt(b.get('aggregates_stage_s'))} | {_fmt(_ratio(b['spark_s'], b['duckdb_s']), 1)} | "
            f"{_fmt(_ratio(b['spark_s'], b['pandas_s']), 1)} | "
            f"{_fmt(_ratio(b.get('aggregates_stage_s'), b['duckdb_s']), 1)} | {verdict} |")
    return lines


def plot(results: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Wall time vs scale per stage, log-log, with the incremental run's total for reference."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ordered = sorted(results, key=lambda r: r["scale"])
    stages = list(dict.fromkeys(s["stage"] for r in ordered for s in r["stages"]))
    for stage in stages:
        points = [(r["scale"], s["wall_s"]) for r in ordered for s in r["stages"] if s["stage"] == stage]
        ax.plot(*zip(*points, strict=True), marker="o", label=stage)
    inc = [(r["scale"], sum(s["wall_s"] for s in r["incremental"]["stages"])) for r in ordered if r.get("incremental")]
    if inc:
        ax.plot(*zip(*inc, strict=True), marker="x", linestyle="--", color="black", label="incremental 1% (all stages)")
    ax.set(xscale="log", yscale="log", xlabel="scale (1 ≈ 100k encounters / year)", ylabel="wall time (s)",
           title="carelake: wall time per stage vs scale")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_results(results: Sequence[Mapping[str, Any]], out_dir: Path, stamp: str, command: str) -> list[Path]:
    """``<stamp>.json``, ``<stamp>.md`` and ``<stamp>-time_vs_scale.png`` in ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stamp}.json", out_dir / f"{stamp}.md"
    json_path.write_text(json.dumps({"command": command, "results": list(results)}, indent=2, default=str))
    md_path.write_text(markdown(results, command))
    return [json_path, md_path, plot(results, out_dir / f"{stamp}-time_vs_scale.png")]
