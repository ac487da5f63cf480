"""The provider aggregates computed three ways over the same processed tables: DuckDB SQL over
the tables' committed Parquet files, pandas, and Spark through carelake's table API.

The metrics follow ``carelake.curated.features`` (the 365-day window ending on ``as_of``:
``as_of - 365 < event date <= as_of``): per NPI encounters, distinct patients, procedures,
total and mean encounter cost (an encounter's cost is the sum of all its procedures' charges,
0 without procedures), readmission and complication rates (a null flag counts as 0), claims,
denial rate (status ``denied``, case and spaces ignored) and paid / billed. Rates are left
unrounded here; curated rounds them to 4 digits and money to cents.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession

WINDOW_DAYS = 365
TABLES = ("encounters", "procedures", "claims")
COLUMNS: dict[str, tuple[str, ...]] = {
    "encounters": ("encounter_key", "npi", "patient_key", "admit_date", "readmitted_30d", "complication"),
    "procedures": ("encounter_key", "npi", "procedure_date", "charge_amount"),
    "claims": ("npi", "status", "service_date", "billed_amount", "paid_amount"),
}
METRICS = ("encounters", "patients", "procedures", "total_cost", "cost_per_case", "readmission_rate",
           "complication_rate", "claims", "denial_rate", "paid_billed_ratio")
COUNTS = ("encounters", "patients", "procedures", "claims")
# baseline metric -> provider_features column, and how close a rounded curated value must be
CURATED_COLUMNS: dict[str, tuple[str, float]] = {
    "encounters": ("encounters_365d", 0.0),
    "patients": ("patients_365d", 0.0),
    "procedures": ("procedures_365d", 0.0),
    "cost_per_case": ("cost_per_case", 0.005),
    "readmission_rate": ("readmission_rate", 0.5e-4),
    "complication_rate": ("complication_rate", 0.5e-4),
    "claims": ("claims_365d", 0.0),
    "denial_rate": ("denial_rate", 0.5e-4),
    "paid_billed_ratio": ("paid_billed_ratio", 0.5e-4),
}


def window(as_of: date) -> tuple[date, date]:
    """The exclusive start and inclusive end of the 365-day window ending on ``as_of``."""
    return as_of - timedelta(days=WINDOW_DAYS), as_of


def provider_sql(as_of: date) -> str:
    """The aggregate as one SQL query over views ``encounters``, ``procedures`` and ``claims``;
    the same text runs on DuckDB and Spark SQL. Rates average doubles: Spark reads ``1.0`` as
    decimal(2,1) and its average keeps only 5 decimals."""
    start, end = window(as_of)
    return f"""
WITH cost AS (
  SELECT encounter_key, CAST(SUM(charge_amount) AS DOUBLE) AS cost FROM procedures GROUP BY encounter_key
), enc AS (
  SELECT e.npi,
         COUNT(*) AS encounters,
         COUNT(DISTINCT e.patient_key) AS patients,
         SUM(COALESCE(c.cost, 0)) AS total_cost,
         AVG(COALESCE(c.cost, 0)) AS cost_per_case,
         AVG(CASE WHEN e.readmitted_30d THEN CAST(1 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS readmission_rate,
         AVG(CASE WHEN e.complication THEN CAST(1 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS complication_rate
  FROM encounters e LEFT JOIN cost c ON e.encounter_key = c.encounter_key
  WHERE e.admit_date > DATE '{start}' AND e.admit_date <= DATE '{end}'
  GROUP BY e.npi
), proc AS (
  SELECT npi, COUNT(*) AS procedures FROM procedures
  WHERE procedure_date > DATE '{start}' AND procedure_date <= DATE '{end}'
  GROUP BY npi
), clm AS (
  SELECT npi,
         COUNT(*) AS claims,
         AVG(CASE WHEN LOWER(TRIM(status)) = 'denied' THEN CAST(1 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS denial_rate,
         CASE WHEN SUM(billed_amount) <> 0
              THEN CAST(SUM(paid_amount) AS DOUBLE) / CAST(SUM(billed_amount) AS DOUBLE) END AS paid_billed_ratio
  FROM claims
  WHERE service_date > DATE '{start}' AND service_date <= DATE '{end}'
  GROUP BY npi
)
SELECT npi, {", ".join(METRICS)}
FROM enc FULL OUTER JOIN proc USING (npi) FULL OUTER JOIN clm USING (npi)
"""


def tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per NPI sorted by NPI, counts as int64 (0 when absent), other metrics as float64."""
    out = frame.set_index("npi")[list(METRICS)].sort_index()
    for name in METRICS:
        out[name] = out[name].fillna(0).astype("int64") if name in COUNTS else out[name].astype("float64")
    return out


def by_duckdb(files: Mapping[str, list[str]], as_of: date, threads: int = 2) -> pd.DataFrame:
    """The aggregate by DuckDB over the Parquet ``files`` of each table (committed files only)."""
    con = duckdb.connect()
    try:
        con.execute(f"SET threads = {threads}")
        for table in TABLES:
            paths = ", ".join(f"'{p}'" for p in files[table])
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{paths}])")
        return tidy(con.execute(provider_sql(as_of)).df())
    finally:
        con.close()


def _read(paths: list[str], columns: tuple[str, ...]) -> pd.DataFrame:
    table = pa.concat_tables(pq.read_table(p, columns=list(columns)) for p in paths)
    # Decimals become float64: pandas would otherwise hold Python Decimal objects.
    casts = [pa.field(f.name, pa.float64()) if pa.types.is_decimal(f.type) else f for f in table.schema]
    return table.cast(pa.schema(casts)).to_pandas()


def by_pandas(files: Mapping[str, list[str]], as_of: date) -> pd.DataFrame:
    """The aggregate by pandas over the same Parquet files."""
    start, end = (pd.Timestamp(d) for d in window(as_of))
    enc, proc, clm = (_read(files[t], COLUMNS[t]) for t in TABLES)

    def within(s: pd.Series) -> pd.Series:
        s = pd.to_datetime(s)
        return (s > start) & (s <= end)

    cost = proc.groupby("encounter_key")["charge_amount"].sum().rename("cost")
    e = enc[within(enc["admit_date"])].join(cost, on="encounter_key")
    e = e.assign(cost=e["cost"].fillna(0.0), readmit=e["readmitted_30d"].astype("boolean").fillna(False).astype(float),
                 complication=e["complication"].astype("boolean").fillna(False).astype(float))
    per_enc = e.groupby("npi").agg(
        encounters=("encounter_key", "size"), patients=("patient_key", "nunique"),
        total_cost=("cost", "sum"), cost_per_case=("cost", "mean"),
        readmission_rate=("readmit", "mean"), complication_rate=("complication", "mean"))
    per_proc = proc[within(proc["procedure_date"])].groupby("npi").size().rename("procedures")
    c = clm[within(clm["service_date"])]
    c = c.assign(denied=(c["status"].str.strip().str.lower() == "denied").astype(float))
    per_clm = c.groupby("npi").agg(claims=("denied", "size"), denial_rate=("denied", "mean"),
                                   billed=("billed_amount", "sum"), paid=("paid_amount", "sum"))
    per_clm["paid_billed_ratio"] = (per_clm["paid"] / per_clm["billed"]).where(per_clm["billed"] != 0)
    joined = per_enc.join(per_proc, how="outer").join(per_clm, how="outer")
    return tidy(joined.rename_axis("npi").reset_index())


def by_spark(spark: SparkSession, frames: Mapping[str, object], as_of: date) -> pd.DataFrame:
    """The aggregate by Spark SQL over the tables as carelake reads them (``frames``: table ->
    DataFrame from ``DeltaTables.read``)."""
    for table in TABLES:
        frames[table].createOrReplaceTempView(table)
    return tidy(spark.sql(provider_sql(as_of)).toPandas())


def compare(expected: pd.DataFrame, actual: pd.DataFrame, rel: float = 1e-6,
            abs_tol: Mapping[str, float] | None = None) -> list[str]:
    """Differences between two per-NPI frames (index ``npi``) over their shared columns: NPIs in
    only one, then per column the NPIs whose values differ by more than ``rel`` relative (or
    ``abs_tol[column]`` absolute when given). Empty when they match; nulls match nulls."""
    problems = []
    only_expected = expected.index.difference(actual.index)
    only_actual = actual.index.difference(expected.index)
    if len(only_expected) or len(only_actual):
        problems.append(f"NPIs only in expected: {len(only_expected)}, only in actual: {len(only_actual)}")
    shared = expected.index.intersection(actual.index)
    for column in (c for c in expected.columns if c in actual.columns):
        a = expected.loc[shared, column].to_numpy(dtype="float64")
        b = actual.loc[shared, column].to_numpy(dtype="float64")
        tol = (abs_tol or {}).get(column)
        close = np.isclose(a, b, rtol=0.0, atol=tol) if tol is not None else np.isclose(a, b, rtol=rel, atol=0.0)
        bad = ~(close | (np.isnan(a) & np.isnan(b)))
        if bad.any():
            first = shared[bad.argmax()]
            i = int(bad.argmax())
            problems.append(f"{column}: {int(bad.sum())} NPIs differ, e.g. {first}: {a[i]!s} vs {b[i]!s}")
    return problems


def curated_view(features: pd.DataFrame) -> pd.DataFrame:
    """provider_features (pandas) renamed to the baseline metric names it shares, indexed by NPI."""
    out = features.set_index("npi")[[c for c, _ in CURATED_COLUMNS.values()]]
    out.columns = list(CURATED_COLUMNS)
    out = out.sort_index().astype("float64")
    counts = [c for c in COUNTS if c in out.columns]
    out[counts] = out[counts].fillna(0.0)  # curated leaves a count null where baselines say 0
    return out


def curated_tolerances() -> dict[str, float]:
    """Absolute tolerance per metric when comparing with curated's rounded values: half a unit
    of the last kept digit, plus a hair for binary floats (0.03125 rounds half up to 0.0313)."""
    return {name: tol + 1e-9 if tol else 0.0 for name, (_, tol) in CURATED_COLUMNS.items()}
