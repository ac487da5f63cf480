"""The static report every run writes: dashboards as self-contained HTML pages with Plotly
charts, built from the curated tables (see docs/dashboards.md)."""

from carelake.dashboards.build import build_report

__all__ = ["build_report"]
