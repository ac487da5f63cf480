"""The three provider models, their baselines and metrics (pandas + scikit-learn).

Why scikit-learn and not Spark ML: the training sets are small once built — a few thousand
providers x a few dates, and the outcome model's rows are case-mix cells weighted by their case
count rather than single encounters — so they fit in the driver, train in seconds, and log as a
plain MLflow sklearn model that scores anywhere. Spark does the heavy part: building the
point-in-time sets from the facts.

Why the outcome model is trained on encounter cells and not on provider-procedure rows: a
readmission or complication happens to one encounter, so a yes/no label per case makes a real
classification problem (and a meaningful AUC), while a provider-procedure rate is a noisy
regression target at small volumes. A provider's score is the mean predicted probability over
its own recent case mix.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import mean_absolute_error, r2_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from threadpoolctl import threadpool_limits

from carelake.ml.training import NUMERIC_FEATURES, UNKNOWN_CATEGORY

REGRESSION, CLASSIFICATION = "regression", "classification"


def one_thread() -> threadpool_limits:
    """A context in which OpenMP runs on one thread: on driver-sized sets the boosted trees' threads
    cost more than they save, and on a busy 2-core machine (Spark, other jobs) they spin-wait —
    a 40-row fit measured 5.4 s with 2 threads against 0.26 s with one."""
    return threadpool_limits(limits=1, user_api="openmp")
# Costs and opportunity values are non-negative and right-skewed: a Poisson loss predicts their
# mean without going below 0 (squared error predicted negative costs and lost to the specialty
# mean on opportunity value at scale 0.1; Poisson beat it on MAE for both, see docs/ml.md).
POISSON = "poisson"
VALIDATION_SHARE_BUCKETS = 4  # one date only: NPIs whose hash falls in bucket 0 of 4 validate


@dataclass(frozen=True)
class ModelSpec:
    """What one model predicts, from which columns, and how it is judged."""

    key: str
    registered_name: str
    task: str
    label: str
    metric: str  # the validation metric the champion is chosen on
    greater_is_better: bool
    categorical: tuple[str, ...] = ("specialty",)
    weight: str | None = None
    loss: str | None = None  # the trees' loss; None: scikit-learn's default for the task
    description: str = ""

    @property
    def features(self) -> tuple[str, ...]:
        return (*self.categorical, *NUMERIC_FEATURES)


MODELS: dict[str, ModelSpec] = {
    "cost_per_case": ModelSpec(
        "cost_per_case", "carelake_cost_per_case", REGRESSION, "label_cost_per_case", "mae", False, loss=POISSON,
        description="Expected mean encounter cost of a provider over the next window, given its case mix "
        "and history (regression)",
    ),
    "poor_outcome": ModelSpec(
        "poor_outcome", "carelake_poor_outcome", CLASSIFICATION, "poor_outcome", "auc", True,
        categorical=("specialty", "encounter_type", "diagnosis_chapter"), weight="cases",
        description="Probability that a case is readmitted within 30 days or has a complication "
        "(classification on case-mix cells with provider features)",
    ),
    "referral_value": ModelSpec(
        "referral_value", "carelake_referral_value", REGRESSION, "label_opportunity_value", "mae", False,
        loss=POISSON,
        description="CRM opportunity value of a provider over the next window (regression)",
    ),
}


def model_frame(df: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """The model inputs of ``spec`` in a fixed order: categories as strings (``?`` when missing),
    numbers as float64 (NaN when missing; the boosted trees handle it)."""
    missing = [c for c in spec.features if c not in df.columns]
    if missing:
        raise ValueError(f"model {spec.key}: input is missing column(s) {', '.join(missing)}")
    out = pd.DataFrame(index=df.index)
    for column in spec.categorical:
        out[column] = df[column].astype(object).where(df[column].notna(), UNKNOWN_CATEGORY).astype(str)
    for column in NUMERIC_FEATURES:
        out[column] = pd.to_numeric(df[column], errors="coerce").astype("float64")
    return out


def weights(df: pd.DataFrame, spec: ModelSpec) -> np.ndarray:
    """Row weights: the ``spec.weight`` column, or 1 per row."""
    return df[spec.weight].to_numpy(dtype="float64") if spec.weight else np.ones(len(df))


def labelled(df: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """Rows that have the label (e.g. cost per case needs encounters in the label window)."""
    return df[df[spec.label].notna()]


def split(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, validation): the latest ``as_of`` validates when there are several dates (the
    model is judged on a later period than it learnt from); with one date, a stable quarter of
    the NPIs (crc32 of the NPI) validates."""
    dates = sorted(df["as_of"].unique())
    if len(dates) > 1:
        late = df["as_of"] == dates[-1]
    else:
        late = df["npi"].map(lambda npi: zlib.crc32(str(npi).encode()) % VALIDATION_SHARE_BUCKETS == 0)
    return df[~late], df[late]


def build_estimator(
    spec: ModelSpec, max_iter: int = 100, min_samples_leaf: int = 20, seed: int = 42, empty: Sequence[str] = ()
) -> Pipeline:
    """One-hot categories + histogram gradient-boosted trees (regressor or classifier); the
    ``empty`` columns (no value at all in training) are dropped."""
    encode = ColumnTransformer(
        [
            ("categories", OneHotEncoder(handle_unknown="ignore", sparse_output=False), list(spec.categorical)),
            ("empty", "drop", list(empty)),
        ],
        remainder="passthrough",
    )
    trees = HistGradientBoostingRegressor if spec.task == REGRESSION else HistGradientBoostingClassifier
    loss = {"loss": spec.loss} if spec.loss else {}
    model = trees(max_iter=max_iter, min_samples_leaf=min_samples_leaf, random_state=seed, **loss)
    return Pipeline([("encode", encode), ("model", model)])


def fit(spec: ModelSpec, train: pd.DataFrame, **params: int) -> Pipeline:
    """Fit :func:`build_estimator` on the labelled rows of ``train`` (weighted when the spec says)."""
    inputs = model_frame(train, spec)
    # A feature with no value in training teaches nothing, and scikit-learn 1.9's binning fails on it.
    empty = [c for c in NUMERIC_FEATURES if inputs[c].isna().all()]
    estimator = build_estimator(spec, **params, empty=empty)
    with one_thread():
        estimator.fit(inputs, train[spec.label].to_numpy(dtype="float64"), model__sample_weight=weights(train, spec))
    return estimator


def predict(spec: ModelSpec, estimator: Pipeline, inputs: pd.DataFrame) -> np.ndarray:
    """Predictions of ``estimator``: the value (regression) or the probability of class 1."""
    with one_thread():
        if spec.task == CLASSIFICATION:
            return estimator.predict_proba(inputs)[:, 1]
        return estimator.predict(inputs)


def baseline(spec: ModelSpec, train: pd.DataFrame, rows: pd.DataFrame) -> np.ndarray:
    """The simple benchmark: the specialty's (weighted) mean label in ``train`` — the specialty
    mean cost / value, or the specialty's prior poor-outcome rate — else the overall mean."""
    w = weights(train, spec)
    overall = float(np.average(train[spec.label], weights=w)) if w.sum() > 0 else 0.0
    frame = pd.DataFrame({"specialty": train["specialty"].fillna(UNKNOWN_CATEGORY), "y": train[spec.label] * w, "w": w})
    sums = frame.groupby("specialty")[["y", "w"]].sum()
    means = (sums["y"] / sums["w"]).to_dict()
    return rows["specialty"].fillna(UNKNOWN_CATEGORY).map(lambda s: means.get(s, overall)).to_numpy(dtype="float64")


def score_metrics(spec: ModelSpec, actual: np.ndarray, predicted: np.ndarray, weight: np.ndarray) -> dict[str, float]:
    """Regression: ``mae`` and ``r2``; classification: ``auc`` (NaN when only one class occurs).
    All weighted by ``weight``."""
    if spec.task == CLASSIFICATION:
        if len(np.unique(actual)) < 2:
            return {"auc": float("nan")}
        return {"auc": float(roc_auc_score(actual, predicted, sample_weight=weight))}
    r2 = float(r2_score(actual, predicted, sample_weight=weight)) if len(actual) > 1 else float("nan")
    return {"mae": float(mean_absolute_error(actual, predicted, sample_weight=weight)), "r2": r2}


def is_better(spec: ModelSpec, candidate: float, champion: float | None) -> bool:
    """True when ``candidate`` beats ``champion`` on the spec's metric (no champion: True; an
    undefined candidate metric never wins)."""
    if candidate is None or np.isnan(candidate):
        return False
    if champion is None or np.isnan(champion):
        return True
    return candidate > champion if spec.greater_is_better else candidate < champion
