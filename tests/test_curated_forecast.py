"""Demand forecast (carelake.curated.forecast): baselines worked by hand, the forecast against a
series whose trend is known, and the expansion signal in the horizon."""

from __future__ import annotations

import numpy as np
import pytest

from carelake.curated.adequacy import AdequacySettings
from carelake.curated.forecast import (
    METHOD_MEAN,
    METHOD_SEASONAL,
    METHOD_TREND,
    backtest,
    demand_forecast,
    forecast_demand,
    forecast_series,
)

ROW = "zip3 string, specialty string, service_month string, demand bigint, active_providers bigint, capacity double"


def _months(n: int, start_year: int = 2023) -> list[str]:
    return [f"{start_year + m // 12}-{m % 12 + 1:02d}" for m in range(n)]


def test_baselines_are_the_last_month_or_the_same_month_a_year_earlier():
    short = np.array([3, 5, 4, 6, 8], dtype=float)
    _, naive, method = forecast_series(short, 3)
    assert method == METHOD_TREND and naive.tolist() == [8, 8, 8]
    year = np.arange(1, 15, dtype=float)  # 14 months: 1..14
    _, seasonal_naive, _ = forecast_series(year, 3)
    assert seasonal_naive.tolist() == [3, 4, 5]  # months 15-17 repeat months 3-5
    forecast, _, method = forecast_series(np.array([2.0, 4.0]), 2)
    assert method == METHOD_MEAN and forecast.tolist() == [3.0, 3.0]


def test_two_years_fit_a_season_and_no_forecast_is_negative():
    falling = np.linspace(40, 0, 26)
    forecast, _, method = forecast_series(falling, 6)
    assert method == METHOD_SEASONAL and (forecast >= 0).all()


def test_the_forecast_beats_the_naive_one_on_a_noisy_growing_series(spark):
    # 30% a year growth from 20 a month with Poisson noise, as the generator plants for an area:
    # the last month alone is a noisy guess, the smoothed trend a better one.
    rng = np.random.default_rng(7)
    rows = []
    for cell in range(12):
        level = 20 * (1.3 ** (np.arange(18) / 12))
        rows += [("606", f"S{cell}", m, int(d), 2, 20.0) for m, d in zip(_months(18), rng.poisson(level), strict=True)]
    frame = spark.createDataFrame(rows, ROW)
    result = backtest(frame, holdout=3).set_index("method")
    assert result.loc["all", "cells"] == 12
    assert result.loc["all", "forecast_mae"] < 0.85 * result.loc["all", "baseline_mae"], result


def test_gaps_are_months_without_demand_and_every_series_runs_to_the_last_month(spark):
    rows = [("441", "Cardiology", "2024-01", 9, 1, 10.0), ("441", "Cardiology", "2024-03", 9, 1, 10.0),
            ("441", "Neurology", "2024-01", 5, 1, 10.0), ("441", "Neurology", "2024-02", 5, 1, 10.0),
            ("441", "Neurology", "2024-06", 0, 1, 10.0), ("unknown", "Neurology", "2024-06", 50, 0, None)]
    got = {(r.specialty, r.forecast_month): r for r in forecast_demand(spark.createDataFrame(rows, ROW), 1).collect()}
    assert set(got) == {("Cardiology", "2024-07"), ("Neurology", "2024-07")}
    # Cardiology: 9, 0, 9, 0, 0, 0 (no rows for 2024-02 and 2024-04..06): 6 months, naive 0.
    assert got["Cardiology", "2024-07"].history_months == 6 and got["Cardiology", "2024-07"].baseline_forecast == 0
    assert got["Neurology", "2024-07"].history_months == 6


@pytest.mark.parametrize(("providers", "capacity", "demand", "reason"), [
    (2, 10.0, 30, "forecast utilisation above 2"),   # 30 / 10 = 3 > 2
    (2, 20.0, 30, None),                              # 1.5
    (0, None, 30, "no active provider"),
    (0, None, 2, None),                               # below min_demand 5
])
def test_expansion_in_the_horizon(spark, providers, capacity, demand, reason):
    rows = [("981", "Dermatology", m, demand, providers, capacity) for m in _months(3, 2024)]
    [row] = demand_forecast(spark.createDataFrame(rows, ROW), 1, AdequacySettings()).collect()
    assert row.demand_forecast == pytest.approx(demand) and row.method == METHOD_MEAN
    assert row.expansion_reason == reason and row.expand_network is (reason is not None)
