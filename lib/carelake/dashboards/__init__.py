"""The static report every run writes: dashboards as HTML pages with Plotly charts (one folder
that needs no server or network), built from the curated tables (see docs/dashboards.md)."""

from carelake.dashboards.build import build_report

__all__ = ["build_report"]
