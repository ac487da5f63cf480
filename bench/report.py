"""The results files: JSON (everything measured), Markdown tables (the engines side by side, then
each engine's detail) and a time-vs-scale plot per engine."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

MB = 1024 * 1024
# The pipeline goal: `make run` on jvm takes at most this share of its wall time on rs.
PIPELINE_GOAL = ("jvm", "rs", 0.5)


def _ratio(num: float | None, den: float | None) -> float | None:
    return None if num is None or not den else num / den


def engines_of(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The engines measured, in the order they first ran."""
    return list(dict.fromkeys(r["engine"] for r in results))


def stage_rows(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per scale, engine and stage (full run), with the incremental run's wall time beside it."""
    rows = []
    for result in sorted(results, key=lambda r: r["scale"]):
        incremental = {s["stage"]: s for s in result.get("incremental", {}).get("stages", [])}
        for s in result["stages"]:
            inc = incremental.get(s["stage"])
            rows.append({
                "scale": result["scale"], "engine": result["engine"], **s,
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


def markdown(results: Sequence[Mapping[str, Any]], command: str,
             pipelines: Sequence[Mapping[str, Any]] = ()) -> str:
    """The report: run order, the engines side by side (full, incremental, ``make run``), then per
    engine the stage table, totals, linearity and the baselines."""
    order = [f"{r['scale']} {r['engine']}" for r in results] + [f"pipeline {p['engine']}" for p in pipelines]
    lines = [
        "# carelake benchmark", "",
        f"Command: `{command}`", "",
        f"Run order, each in a process of its own: {', '.join(order)}.", "",
        "## Engines side by side", "", *side_by_side(results, "stages"),
    ]
    incremental = side_by_side(results, "incremental")
    if len(incremental) > 2:
        lines += ["", "Incremental run (~1% batch on the same lakehouse):", "", *incremental]
    if pipelines:
        lines += ["", "## `make run` pipeline", "", *pipeline_lines(pipelines)]
    lines += [
        "", "## Per engine", "",
        "| scale | engine | stage | rows in | wall s | rows/s | Spark jobs | peak driver RSS MB | peak worker RSS MB "
        "| files written | MB written | incr. wall s | incr./full |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in stage_rows(results):
        lines.append(
            f"| {r['scale']} | {r['engine']} | {r['stage']} | {_fmt(r['rows_in'])} | {_fmt(r['wall_s'])} | "
            f"{_fmt(r['rows_per_s'], 0)} | {_fmt(r.get('spark_jobs'))} | {_fmt(r['peak_driver_rss'] / MB, 0)} | "
            f"{_fmt(r['peak_worker_rss'] / MB, 0)} | {_fmt(r['files_written'])} | "
            f"{_fmt(r['bytes_written'] / MB)} | {_fmt(r['incremental_wall_s'])} | "
            f"{_fmt(r['incremental_ratio'], 3)} |")
    lines += ["", "| scale | engine | load avg (1 min) before / after | generate s | full run s | incremental run s "
              "| incr./full | incremental batch |", "|---:|---|---|---:|---:|---:|---:|---|"]
    for result in sorted(results, key=lambda r: r["scale"]):
        full = sum(s["wall_s"] for s in result["stages"]) or None
        inc = result.get("incremental", {})
        inc_total = sum(s["wall_s"] for s in inc.get("stages", [])) or None
        batch = ", ".join(f"{e} +{c['new']}/~{c['changed']}" for e, c in sorted(inc.get("batch", {}).items()))
        lines.append(f"| {result['scale']} | {result['engine']} | {result['load_before']:.1f} / "
                     f"{result['load_after']:.1f} | {_fmt(result['generate_s'])} | {_fmt(full)} | {_fmt(inc_total)} | "
                     f"{_fmt(_ratio(inc_total, full), 3)} | {batch or '–'} |")
    lines += ["", *linearity(results), "", *baseline_lines(results)]
    errors = [f"- scale {r['scale']} on {r['engine']}: {e}" for r in results for e in r.get("errors", [])]
    errors += [f"- pipeline on {p['engine']}: {e}" for p in pipelines for e in p.get("errors", [])]
    if errors:
        lines += ["", "Errors (the parts named were not measured):", *errors]
    return "\n".join(lines) + "\n"


def _by_engine(results: Sequence[Mapping[str, Any]], part: str) -> dict[tuple[float, str], dict[str, Any]]:
    """(scale, engine) -> stage name -> that stage's figures in ``part`` (``stages`` or ``incremental``)."""
    out = {}
    for r in results:
        stages = r.get("incremental", {}).get("stages", []) if part == "incremental" else r["stages"]
        out[(r["scale"], r["engine"])] = {s["stage"]: s for s in stages}
    return out


def side_by_side(results: Sequence[Mapping[str, Any]], part: str) -> list[str]:
    """Per scale and stage: each engine's wall time, the first / second engine ratio (two engines),
    Spark jobs, peak driver and worker RSS and the load average; a total row per scale."""
    engines = engines_of(results)
    ratio = len(engines) == 2
    per = _by_engine(results, part)
    head = ["scale", "stage", *(f"{e} s" for e in engines), *([f"{engines[0]} / {engines[1]}"] if ratio else []),
            *(f"{e} jobs" for e in engines), *(f"{e} driver MB" for e in engines),
            *(f"{e} workers MB" for e in engines), "load1 " + " / ".join(engines)]
    lines = ["| " + " | ".join(head) + " |", "|---:|---|" + "---:|" * (len(head) - 3) + "---|"]
    for scale in sorted({r["scale"] for r in results}):
        cells = [per.get((scale, e), {}) for e in engines]
        names = list(dict.fromkeys(n for c in cells for n in c))
        if not names:
            continue
        for name in [*names, None]:
            rows = [c.get(name) if name else _total(c) for c in cells]
            walls = [r["wall_s"] if r else None for r in rows]
            lines.append("| " + " | ".join([
                str(scale), name or "**all stages**", *(_fmt(w) for w in walls),
                *([_fmt(_ratio(walls[0], walls[1]), 2)] if ratio else []),
                *(_fmt(r.get("spark_jobs")) if r else "–" for r in rows),
                *(_fmt(r["peak_driver_rss"] / MB, 0) if r else "–" for r in rows),
                *(_fmt(r["peak_worker_rss"] / MB, 0) if r else "–" for r in rows),
                " / ".join(_fmt(r.get("load1")) if r else "–" for r in rows)]) + " |")
    return lines


def _total(stages: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """The stages of one run summed (wall, jobs), their memory peaks maxed; no load figure."""
    if not stages:
        return None
    values = list(stages.values())
    return {"wall_s": sum(s["wall_s"] for s in values),
            "spark_jobs": sum(s.get("spark_jobs") or 0 for s in values),
            "peak_driver_rss": max(s["peak_driver_rss"] for s in values),
            "peak_worker_rss": max(s["peak_worker_rss"] for s in values), "load1": None}


def pipeline_lines(pipelines: Sequence[Mapping[str, Any]]) -> list[str]:
    """One row per timed ``make run`` (generate, then ``carelake run``), then the mean wall time per
    engine and, with jvm and rs, their ratio against the goal."""
    stage_names = list(dict.fromkeys(n for p in pipelines for n in p.get("stages", {})))
    lines = ["| # | engine | generate s | carelake run s | status | "
             + " | ".join(f"{n} s" for n in stage_names)
             + " | peak driver MB | peak workers MB | load1 before / mean / max / after |",
             "|---:|---|---:|---:|---|" + "---:|" * len(stage_names) + "---:|---:|---|"]
    for i, p in enumerate(pipelines, 1):
        stages = p.get("stages", {})
        loads = " / ".join(_fmt(p.get(k)) for k in ("load1_before", "load1_mean", "load1_max", "load1_after"))
        lines.append(f"| {i} | {p['engine']} | {_fmt(p['generate_s'])} | {_fmt(p.get('wall_s'))} | "
                     f"{p.get('status', 'failed')} | "
                     + " | ".join(_fmt(stages[n]["duration_s"]) if n in stages else "–" for n in stage_names)
                     + f" | {_fmt(p['peak_driver_rss'] / MB, 0) if 'peak_driver_rss' in p else '–'} | "
                     f"{_fmt(p['peak_worker_rss'] / MB, 0) if 'peak_worker_rss' in p else '–'} | {loads} |")
    means = pipeline_means(pipelines)
    lines += ["", "Mean `carelake run` wall time: "
              + ", ".join(f"{e} {m:.1f} s ({n} run{'s' * (n != 1)})" for e, (m, n) in means.items()) + "."]
    fast, slow, goal = PIPELINE_GOAL
    if fast in means and slow in means:
        ratio = means[fast][0] / means[slow][0]
        verdict = "met" if ratio <= goal else "not met"
        lines.append(f"{fast} / {slow}: {ratio:.2f} (goal: at most {goal:.2f}; {verdict}).")
    return lines


def pipeline_means(pipelines: Sequence[Mapping[str, Any]]) -> dict[str, tuple[float, int]]:
    """engine -> (mean wall time, runs) over the pipeline runs that finished ok."""
    walls: dict[str, list[float]] = {}
    for p in pipelines:
        if p.get("status") == "ok" and p.get("returncode") == 0:
            walls.setdefault(p["engine"], []).append(p["wall_s"])
    return {e: (sum(w) / len(w), len(w)) for e, w in walls.items()}


def linearity(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """time(larger) / time(smaller) per stage between consecutive scales and, with more than two
    scales, between the smallest and the largest (the goal: at most the scale ratio)."""
    lines = ["| engine | stage | scales | scale ratio | wall-time ratio |", "|---|---|---|---:|---:|"]
    for engine in engines_of(results):
        ordered = sorted((r for r in results if r["engine"] == engine), key=lambda r: r["scale"])
        pairs = list(zip(ordered, ordered[1:], strict=False))
        if len(ordered) > 2:
            pairs.append((ordered[0], ordered[-1]))
        for small, large in pairs:
            walls = {s["stage"]: s["wall_s"] for s in small["stages"]}
            for s in large["stages"]:
                lines.append(f"| {engine} | {s['stage']} | {small['scale']} → {large['scale']} | "
                             f"{large['scale'] / small['scale']:.1f} | "
                             f"{_fmt(_ratio(s['wall_s'], walls.get(s['stage'])), 2)} |")
    return lines


def baseline_lines(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """Provider aggregates: seconds per engine, carelake / DuckDB and carelake / pandas, and the checks."""
    lines = ["Answers: pandas and Spark SQL vs DuckDB within 1e-6 relative; curated provider_features vs "
             "DuckDB within its rounding (counts exact, rates 0.5e-4, money 0.005).", "",
             "| scale | engine | as_of | NPIs | DuckDB s | pandas s | carelake Spark SQL s | aggregates stage s "
             "| Spark / DuckDB | Spark / pandas | aggregates stage / DuckDB | answers |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for result in sorted(results, key=lambda r: r["scale"]):
        b = result.get("baselines")
        if not b:
            continue
        verdict = "; ".join(b["mismatches"]) or "all agree"
        lines.append(
            f"| {result['scale']} | {result['engine']} | {b['as_of']} | {b['npis']:,} | {b['duckdb_s']:.2f} | {b['pandas_s']:.2f} | "
            f"{b['spark_s']:.2f} | {_fmt(b.get('aggregates_stage_s'))} | {_fmt(_ratio(b['spark_s'], b['duckdb_s']), 1)} | "
            f"{_fmt(_ratio(b['spark_s'], b['pandas_s']), 1)} | "
            f"{_fmt(_ratio(b.get('aggregates_stage_s'), b['duckdb_s']), 1)} | {verdict} |")
    return lines


def plot(results: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Wall time vs scale per stage, log-log, one panel per engine on a shared time axis, with the
    incremental run's total for reference."""
    engines = engines_of(results) or ["–"]
    fig, axes = plt.subplots(1, len(engines), figsize=(6.5 * len(engines), 4.5), sharey=True, squeeze=False)
    for ax, engine in zip(axes[0], engines, strict=True):
        ordered = sorted((r for r in results if r["engine"] == engine), key=lambda r: r["scale"])
        stages = list(dict.fromkeys(s["stage"] for r in ordered for s in r["stages"]))
        for stage in stages:
            points = [(r["scale"], s["wall_s"]) for r in ordered for s in r["stages"] if s["stage"] == stage]
            ax.plot(*zip(*points, strict=True), marker="o", label=stage)
        inc = [(r["scale"], sum(s["wall_s"] for s in r["incremental"]["stages"]))
               for r in ordered if r.get("incremental")]
        if inc:
            ax.plot(*zip(*inc, strict=True), marker="x", linestyle="--", color="black",
                    label="incremental 1% (all stages)")
        ax.set(xscale="log", yscale="log", xlabel="scale (1 ≈ 100k encounters / year)",
               title=f"carelake on {engine}: wall time per stage")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("wall time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_results(results: Sequence[Mapping[str, Any]], out_dir: Path, stamp: str, command: str,
                  pipelines: Sequence[Mapping[str, Any]] = ()) -> list[Path]:
    """``<stamp>.json``, ``<stamp>.md`` and ``<stamp>-time_vs_scale.png`` in ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stamp}.json", out_dir / f"{stamp}.md"
    json_path.write_text(json.dumps({"command": command, "results": list(results), "pipelines": list(pipelines)},
                                    indent=2, default=str))
    md_path.write_text(markdown(results, command, pipelines))
    return [json_path, md_path, plot(results, out_dir / f"{stamp}-time_vs_scale.png")]
