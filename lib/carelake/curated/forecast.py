"""Monthly demand forecast per patient area and specialty, and its backtest against a naive one.

The model is statsmodels' exponential smoothing (ETS): additive damped trend, plus an additive
yearly season once a cell has two years of history (one year says nothing about a season).
Each cell is fitted on an executor (``applyInPandas``, one group per zip3 x specialty). The
baseline it must beat is the seasonal naive forecast (the same month a year earlier) when a year
of history exists, else the naive one (the last month, repeated).

``demand_forecast`` then sets the forecast against the cell's latest capacity (the providers
active now at the specialty's sustained throughput): the network must grow before the demand
arrives when the forecast utilisation passes the adequacy threshold in the horizon.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from carelake.curated.adequacy import REASON_NO_PROVIDER, UNKNOWN_AREA, AdequacySettings
from carelake.curated.column_sources import NETWORK_ADEQUACY, ColumnSources, union
from carelake.curated.metrics import RATIO_DIGITS, ratio

SEASON = 12
MIN_MONTHS_FOR_TREND = 4  # fewer: the forecast is the cell's mean, said in ``method``
METHOD_SEASONAL, METHOD_TREND, METHOD_MEAN = "ets damped trend + season", "ets damped trend", "mean"
CELL = ["zip3", "specialty"]
SERIES_SCHEMA = "zip3 string, specialty string, forecast_month string, demand_forecast double, " \
                "baseline_forecast double, method string, history_months int"
SERIES_SCHEMA_COLUMNS = [c.split()[0] for c in SERIES_SCHEMA.split(", ")]

COLUMNS: dict[str, str] = {
    "zip3": "Patients' home area (as in network_adequacy)",
    "specialty": "Specialty (as in network_adequacy)",
    "forecast_month": "Month (yyyy-MM) forecast: the months after the last one of network_adequacy",
    "demand_forecast": "Forecast demand (encounters + referrals of the area's residents): statsmodels ETS, see method",
    "baseline_forecast": "Seasonal naive (same month a year earlier) with a year of history, else the last month's demand",
    "method": "'ets damped trend + season' (24+ months), 'ets damped trend' (4+), 'mean' (fewer)",
    "history_months": "Months of history the forecast was fitted on",
    "capacity": "The cell's capacity in its latest month (network_adequacy.capacity)",
    "utilisation_forecast": "demand_forecast / capacity; null without capacity",
    "expand_network": "True when utilisation_forecast passes curated.adequacy.utilisation_threshold "
    "(demand_forecast of at least min_demand), or demand is forecast where no provider is active",
    "expansion_reason": "'forecast utilisation above <threshold>' or 'no active provider'; null otherwise",
}


# Each column's input columns (the rules: carelake.curated.column_sources).
_DEMAND, _CAPACITY = ((NETWORK_ADEQUACY, "demand"),), ((NETWORK_ADEQUACY, "capacity"),)
_SIGNAL = union(_DEMAND, _CAPACITY, ((NETWORK_ADEQUACY, "active_providers"),))
SOURCES: ColumnSources = {
    "zip3": ((NETWORK_ADEQUACY, "zip3"),),
    "specialty": ((NETWORK_ADEQUACY, "specialty"),),
    "forecast_month": ((NETWORK_ADEQUACY, "service_month"),),
    "demand_forecast": _DEMAND,
    "baseline_forecast": _DEMAND,
    "capacity": _CAPACITY,
    "utilisation_forecast": union(_DEMAND, _CAPACITY),
    "expand_network": _SIGNAL,
    "expansion_reason": _SIGNAL,
}


def _month_index(months: pd.Series) -> pd.PeriodIndex:
    return pd.PeriodIndex(months, freq="M")


def forecast_series(history: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Monthly values (oldest first, no gaps) -> (forecast, baseline, method) for ``horizon`` months."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    n = len(history)
    if n >= SEASON:
        baseline = np.array([history[n - SEASON + (h % SEASON)] for h in range(horizon)], dtype=float)
    else:
        baseline = np.repeat(float(history[-1]), horizon)
    if n < MIN_MONTHS_FOR_TREND:
        return np.repeat(float(history.mean()), horizon), baseline, METHOD_MEAN
    seasonal = n >= 2 * SEASON
    with warnings.catch_warnings():
        # Short, noisy series often end the optimiser early; its estimate is still the best it found.
        warnings.simplefilter("ignore")
        fitted = ExponentialSmoothing(
            history.astype(float), trend="add", damped_trend=True,
            seasonal="add" if seasonal else None, seasonal_periods=SEASON if seasonal else None,
            initialization_method="estimated",
        ).fit()
    forecast = np.clip(fitted.forecast(horizon), 0.0, None)  # demand is never negative
    return forecast, baseline, METHOD_SEASONAL if seasonal else METHOD_TREND


def _forecast_cell(horizon: int, holdout: int):
    def run(cell: pd.DataFrame) -> pd.DataFrame:
        months = _month_index(cell["service_month"])
        full = pd.period_range(months.min(), months.max(), freq="M")
        demand = pd.Series(cell["demand"].to_numpy(dtype=float), index=months).reindex(full, fill_value=0.0)
        history = demand.to_numpy()[: len(demand) - holdout] if holdout else demand.to_numpy()
        if len(history) == 0:
            return pd.DataFrame(columns=SERIES_SCHEMA_COLUMNS)
        forecast, baseline, method = forecast_series(history, horizon)
        ahead = pd.period_range(full[len(history) - 1] + 1, periods=horizon, freq="M")
        return pd.DataFrame({
            "zip3": cell["zip3"].iloc[0], "specialty": cell["specialty"].iloc[0],
            "forecast_month": [str(m) for m in ahead],
            "demand_forecast": np.round(forecast, RATIO_DIGITS), "baseline_forecast": baseline,
            "method": method, "history_months": len(history),
        })
    return run


def forecast_demand(adequacy: DataFrame, horizon: int, holdout: int = 0) -> DataFrame:
    """``network_adequacy`` rows (zip3, specialty, service_month, demand) -> ``horizon`` months of
    forecast per zip3 x specialty (:data:`SERIES_SCHEMA`), fitted on each cell's months from its
    first to the table's last (months a cell lacks count as no demand). ``holdout`` > 0 leaves
    that many last months out of the fit, for the backtest; cells of the unknown area are left out.
    """
    if horizon < 1 or holdout < 0:
        raise ValueError(f"expected horizon >= 1 and holdout >= 0, found {horizon} and {holdout}")
    last = adequacy.agg(F.max("service_month").alias("_last"))
    rows = (
        adequacy.where(F.col("zip3") != UNKNOWN_AREA).select(*CELL, "service_month", "demand")
        # Every cell's series runs to the table's last month: a cell without recent demand has none.
        .unionByName(adequacy.where(F.col("zip3") != UNKNOWN_AREA).select(*CELL).distinct()
                     .crossJoin(last).select(*CELL, F.col("_last").alias("service_month"), F.lit(0).alias("demand")))
        .groupBy(*CELL, "service_month").agg(F.max("demand").alias("demand"))
    )
    return rows.groupBy(*CELL).applyInPandas(_forecast_cell(horizon, holdout), SERIES_SCHEMA)


def backtest(adequacy: DataFrame, holdout: int) -> pd.DataFrame:
    """Forecast the last ``holdout`` months from the months before them and compare with what
    happened -> one row per method group: cells, mean absolute error of the forecast and of the
    baseline over every cell x held-out month, and their ratio (below 1: the forecast wins)."""
    predicted = forecast_demand(adequacy, holdout, holdout=holdout)
    actual = adequacy.select(*CELL, F.col("service_month").alias("forecast_month"), F.col("demand").alias("actual"))
    joined = (predicted.join(actual, [*CELL, "forecast_month"], "left")
              .withColumn("actual", F.coalesce(F.col("actual").cast("double"), F.lit(0.0))).toPandas())
    out = []
    for method, group in [("all", joined), *joined.groupby("method")]:
        forecast_mae = float((group["demand_forecast"] - group["actual"]).abs().mean())
        baseline_mae = float((group["baseline_forecast"] - group["actual"]).abs().mean())
        out.append({"method": method, "cells": int(group[CELL].drop_duplicates().shape[0]),
                    "forecast_mae": round(forecast_mae, 3), "baseline_mae": round(baseline_mae, 3),
                    "mae_ratio": round(forecast_mae / baseline_mae, 3) if baseline_mae else None})
    return pd.DataFrame(out)


def demand_forecast(adequacy: DataFrame, horizon: int, settings: AdequacySettings) -> DataFrame:
    """``network_adequacy`` -> the curated ``demand_forecast`` table (:data:`COLUMNS`): each
    cell's forecast for ``horizon`` months against its latest month's capacity."""
    latest = (
        adequacy.withColumn("_r", F.row_number().over(Window.partitionBy(*CELL).orderBy(F.col("service_month").desc())))
        .where(F.col("_r") == 1).select(*CELL, "capacity", "active_providers")
    )
    forecast = forecast_demand(adequacy, horizon).join(latest, CELL, "left")
    utilisation = ratio(F.col("demand_forecast"), F.col("capacity"))
    threshold = settings.utilisation_threshold
    reason = (
        F.when(F.col("demand_forecast") < settings.min_demand, F.lit(None).cast("string"))
        .when(F.coalesce(F.col("active_providers"), F.lit(0)) == 0, F.lit(REASON_NO_PROVIDER))
        .when(utilisation > threshold, F.lit(f"forecast utilisation above {threshold:g}"))
    )
    return forecast.select(
        *CELL, "forecast_month", "demand_forecast", "baseline_forecast", "method", "history_months", "capacity",
        utilisation.alias("utilisation_forecast"), reason.isNotNull().alias("expand_network"),
        reason.alias("expansion_reason"),
    )
