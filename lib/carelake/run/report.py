"""A one-screen, human-readable view of a run summary."""

from __future__ import annotations

from carelake.run.summary import RunSummary


def format_summary(summary: RunSummary, summary_uri: str | None = None) -> str:
    """Stages, per-entity counts (in / valid / quarantined / dup / written) and Delta versions."""
    lines = [f"carelake run {summary.run_id}: {summary.status}", f"  lakehouse: {summary.root}"]
    for stage in summary.stages:
        lines.append(f"  [{stage.stage}] {stage.status} in {stage.duration_s:.1f}s")
        if stage.entities:
            lines.append(f"    {'table':<26}{'in':>10}{'valid':>10}{'quarant.':>10}{'dup':>8}{'written':>10}{'ver':>5}")
        for name, c in sorted(stage.entities.items()):
            version = "" if c.delta_version is None else str(c.delta_version)
            mark = "" if c.reconciles else "  <- does not reconcile"
            lines.append(
                f"    {name:<26}{c.rows_in:>10}{c.rows_valid:>10}{c.rows_quarantined:>10}"
                f"{c.duplicates_dropped:>8}{c.rows_written:>10}{version:>5}{mark}"
            )
        lines.extend(f"    - {note}" for note in stage.notes[:12])
        if len(stage.notes) > 12:
            lines.append(f"    - ... {len(stage.notes) - 12} more in the run summary file")
    if summary.lineage_page:
        lines.append(f"  lineage: {summary.lineage_page} (events gathered and sent in {summary.lineage_seconds or 0:.1f}s)")
    if summary_uri:
        lines.append(f"  summary: {summary_uri}")
    return "\n".join(lines)
