"""Models, baselines and MLflow tracking on hand-built pandas frames (no Spark needed)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from carelake.config import Config, ConfigError
from carelake.ml.models import MODELS, baseline, is_better, model_frame, score_metrics, split
from carelake.ml.tracking import CHAMPION, tracking_uri, train_and_register, use_mlflow
from carelake.ml.training import NUMERIC_FEATURES

COST = MODELS["cost_per_case"]
OUTCOME = MODELS["poor_outcome"]


def providers_frame(n: int = 40) -> pd.DataFrame:
    """Two dates x n providers; next-window cost = 10 x past cost_per_case + 5 exactly."""
    rows = []
    for as_of in (date(2024, 1, 1), date(2024, 4, 1)):
        for i in range(n):
            row = dict.fromkeys(NUMERIC_FEATURES, np.nan)
            row.update(npi=str(1000 + i), as_of=as_of, specialty="Cardiology" if i % 2 else "Dermatology",
                       cost_per_case=float(i), label_cost_per_case=10.0 * i + 5)
            rows.append(row)
    return pd.DataFrame(rows)


def test_tracking_uri_default_conf_and_environment(config: Config) -> None:
    root = Path(config.root).resolve()
    assert tracking_uri(config, env={}) == f"sqlite:///{root}/_mlflow/mlflow.db"
    assert tracking_uri(config, env={"MLFLOW_TRACKING_URI": "http://mlflow:5000"}) == "http://mlflow:5000"
    configured = config.with_overrides(**{"ml.tracking_uri": "sqlite:////data/ml.db"})
    assert tracking_uri(configured, env={"MLFLOW_TRACKING_URI": "http://mlflow:5000"}) == "sqlite:////data/ml.db"
    with pytest.raises(ConfigError, match="ml.tracking_uri is required"):
        tracking_uri(config.with_overrides(**{"lakehouse.root": "s3://bucket/lake"}), env={})


def test_latest_date_validates_and_one_date_splits_by_npi() -> None:
    frame = providers_frame(8)
    train, validation = split(frame)
    assert set(train["as_of"]) == {date(2024, 1, 1)} and set(validation["as_of"]) == {date(2024, 4, 1)}
    one_date = frame[frame["as_of"] == date(2024, 1, 1)]
    train, validation = split(one_date)
    assert len(train) + len(validation) == 8 and not set(train["npi"]) & set(validation["npi"])


def test_baseline_is_the_weighted_specialty_mean_from_training() -> None:
    train = pd.DataFrame({"specialty": ["A", "A", "B"], "poor_outcome": [1.0, 0.0, 1.0], "cases": [1, 3, 2]})
    rows = pd.DataFrame({"specialty": ["A", "B", "C"]})
    # A: 1 poor of 4 cases = 0.25; B: 1.0; unseen C: overall 3 of 6 = 0.5.
    assert baseline(OUTCOME, train, rows).tolist() == [0.25, 1.0, 0.5]


def test_metrics_by_hand() -> None:
    m = score_metrics(COST, np.array([10.0, 20.0, 30.0]), np.array([12.0, 18.0, 33.0]), np.ones(3))
    # MAE (2 + 2 + 3) / 3; R2 = 1 - (4 + 4 + 9) / 200.
    assert m == pytest.approx({"mae": 7 / 3, "r2": 1 - 17 / 200})
    auc = score_metrics(OUTCOME, np.array([0.0, 0.0, 1.0, 1.0]), np.array([0.1, 0.6, 0.4, 0.9]), np.ones(4))
    assert auc["auc"] == pytest.approx(0.75)  # 3 of the 4 (positive, negative) pairs ordered right
    assert np.isnan(score_metrics(OUTCOME, np.array([1.0, 1.0]), np.array([0.2, 0.3]), np.ones(2))["auc"])


def test_is_better_follows_the_metric_direction() -> None:
    assert is_better(COST, 5.0, 6.0) and not is_better(COST, 6.0, 5.0)
    assert is_better(OUTCOME, 0.8, 0.7) and not is_better(OUTCOME, 0.7, 0.8)
    assert is_better(COST, 5.0, None) and not is_better(COST, float("nan"), None)


def test_model_frame_fills_categories_and_floats_numbers() -> None:
    frame = providers_frame(2).assign(specialty=[None, "X", "Y", "Z"])
    inputs = model_frame(frame, COST)
    assert list(inputs.columns) == ["specialty", *NUMERIC_FEATURES]
    assert inputs["specialty"].tolist() == ["?", "X", "Y", "Z"]
    assert inputs["cost_per_case"].dtype == np.float64
    with pytest.raises(ValueError, match="missing column"):
        model_frame(frame.drop(columns=["cost_index"]), COST)


def test_better_model_is_promoted_worse_one_registered_only(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    use_mlflow(config)
    frame = providers_frame()
    tags = {"carelake.fact_encounter_version": "7"}
    weak, strong = {"max_iter": 1, "min_samples_leaf": 2}, {"max_iter": 60, "min_samples_leaf": 2}

    first = train_and_register(COST, frame, weak, tags)
    assert (first.version, first.champion_metric, first.promoted) == (1, None, True)
    second = train_and_register(COST, frame, strong, tags)
    assert second.metrics["val_mae"] < first.metrics["val_mae"]
    assert (second.version, second.promoted) == (2, True)
    assert second.champion_metric == pytest.approx(first.metrics["val_mae"])
    third = train_and_register(COST, frame, weak, tags)
    assert (third.version, third.promoted) == (3, False)

    client = MlflowClient()
    assert int(client.get_model_version_by_alias(COST.registered_name, CHAMPION).version) == 2
    assert sorted(int(v.version) for v in client.search_model_versions(f"name='{COST.registered_name}'")) == [1, 2, 3]
    run = client.get_run(third.run_id)
    assert run.data.tags["carelake.fact_encounter_version"] == "7"
    assert {"val_mae", "val_r2", "baseline_mae", "baseline_r2"} <= set(run.data.metrics)
    # The strong model learnt the rule, the specialty-mean baseline cannot (labels 5..395 within each).
    assert second.metrics["val_mae"] < second.metrics["baseline_mae"]

    champion = mlflow.pyfunc.load_model(f"models:/{COST.registered_name}@{CHAMPION}")
    assert champion.metadata.signature is not None
    predicted = np.asarray(champion.predict(model_frame(frame.head(2), COST)))
    assert len(predicted) == 2 and (predicted > 0).all()  # Poisson loss: a cost is never negative
    artifacts = Path(config.root).resolve() / "_mlflow" / "artifacts"
    assert any(artifacts.rglob("MLmodel"))


def test_a_first_model_no_better_than_the_baseline_is_not_promoted(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    # The next-window cost is the specialty's level plus noise; cost_per_case is noise too, so the
    # specialty mean is the best guess and deep trees only fit the noise.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    use_mlflow(config)
    rng = np.random.default_rng(5)
    rows = []
    for as_of in (date(2024, 1, 1), date(2024, 4, 1)):
        for i in range(60):
            row = dict.fromkeys(NUMERIC_FEATURES, np.nan)
            cardiology = i % 2 == 1
            row.update(npi=str(2000 + i), as_of=as_of, specialty="Cardiology" if cardiology else "Dermatology",
                       cost_per_case=float(rng.uniform(0, 100)),
                       label_cost_per_case=(300.0 if cardiology else 100.0) + float(rng.uniform(0, 40)))
            rows.append(row)
    trained = train_and_register(COST, pd.DataFrame(rows), {"max_iter": 60, "min_samples_leaf": 2}, {})
    assert trained.metrics["val_mae"] >= trained.metrics["baseline_mae"], trained.metrics  # the premise
    assert (trained.version, trained.champion_metric, trained.promoted) == (1, None, False)
    assert "no better than the baseline" in trained.describe()
    with pytest.raises(MlflowException):
        MlflowClient().get_model_version_by_alias(COST.registered_name, CHAMPION)


def test_classifier_logs_probabilities(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    use_mlflow(config)
    rows = []
    for as_of in (date(2024, 1, 1), date(2024, 4, 1)):
        for i in range(20):
            for poor in (0, 1):
                row = dict.fromkeys(NUMERIC_FEATURES, np.nan)
                # Providers with a high past complication rate have more poor outcomes next.
                row.update(npi=str(i), as_of=as_of, specialty="S", encounter_type="inpatient", diagnosis_chapter="I",
                           complication_rate=i / 20, poor_outcome=poor, cases=(1 + i) if poor else (21 - i))
                rows.append(row)
    trained = train_and_register(OUTCOME, pd.DataFrame(rows), {"max_iter": 20, "min_samples_leaf": 2}, {})
    assert trained.promoted and trained.metrics["val_auc"] > trained.metrics["baseline_auc"]
    assert trained.metrics["baseline_auc"] == pytest.approx(0.5)  # one specialty: a constant guess
    model = mlflow.pyfunc.load_model(f"models:/{OUTCOME.registered_name}@{CHAMPION}")
    probabilities = np.asarray(model.predict(model_frame(pd.DataFrame(rows[:2]), OUTCOME)))
    assert probabilities.shape == (2, 2) and np.allclose(probabilities.sum(axis=1), 1.0)
