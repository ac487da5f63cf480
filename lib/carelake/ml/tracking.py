"""MLflow: where runs and models live, logging a trained model, and promoting champions.

Tracking store: ``ml.tracking_uri`` from the config, else ``$MLFLOW_TRACKING_URI``, else a SQLite
file ``<root>/_mlflow/mlflow.db`` for a local lakehouse root. Artifacts of the experiment go to
``ml.artifact_location``, else ``<root>/_mlflow/artifacts``. The registry uses the same store.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from carelake.config import Config, ConfigError
from carelake.ml.models import (
    CLASSIFICATION,
    ModelSpec,
    baseline,
    fit,
    is_better,
    labelled,
    model_frame,
    predict,
    score_metrics,
    split,
    weights,
)
from carelake.storage import is_remote, join_uri, to_local_path

CHAMPION = "champion"
DEFAULT_EXPERIMENT = "carelake"
# MLflow saves sklearn models with skops, which refuses types it has not been told to trust; the
# boosted trees' node arrays are ours (trained in this run), so that one type is trusted.
TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


def pip_requirements() -> list[str]:
    """The logged model's requirements, stated rather than inferred: MLflow infers them by
    importing the model in a subprocess, ~10 s per model on a busy machine."""
    return [
        *mlflow.sklearn.get_default_pip_requirements(include_skops=True),
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
    ]


def tracking_uri(config: Config, env: Mapping[str, str] = os.environ) -> str:
    """The MLflow tracking (and registry) URI for ``config`` (see the module docstring)."""
    configured = config.section("ml").get("tracking_uri") or env.get("MLFLOW_TRACKING_URI")
    if configured:
        return str(configured)
    if is_remote(config.root):
        raise ConfigError(
            f"{config.source_file}: ml.tracking_uri is required when lakehouse.root is remote ({config.root}); "
            "set it (or MLFLOW_TRACKING_URI) to an MLflow server or database"
        )
    return "sqlite:///" + to_local_path(join_uri(config.root, "_mlflow", "mlflow.db"))


def artifact_location(config: Config) -> str:
    """Where the experiment stores model artifacts: ``ml.artifact_location`` or ``<root>/_mlflow/artifacts``."""
    configured = config.section("ml").get("artifact_location")
    if configured:
        return str(configured)
    location = join_uri(config.root, "_mlflow", "artifacts")
    return location if is_remote(location) else Path(to_local_path(location)).as_uri()


def use_mlflow(config: Config) -> str:
    """Point MLflow at the configured store and experiment (created when absent); returns the
    experiment id."""
    uri = tracking_uri(config)
    # A progress bar per model load would bury the run summary of batch jobs.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    endpoint = config.section("storage").get("endpoint_url")
    if endpoint and is_remote(artifact_location(config)):
        # MLflow's S3 artifact store takes a custom endpoint (SeaweedFS, MinIO) from here only.
        os.environ.setdefault("MLFLOW_S3_ENDPOINT_URL", str(endpoint))
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name = str(config.section("ml").get("experiment") or DEFAULT_EXPERIMENT)
    experiment = mlflow.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else mlflow.create_experiment(name, artifact_location(config))
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


@dataclass
class TrainedModel:
    """One training run: where it was logged, its metrics against the baseline, and whether it
    became the champion."""

    spec: ModelSpec
    run_id: str
    version: int
    metrics: dict[str, float]
    champion_metric: float | None
    promoted: bool
    rows: dict[str, int] = field(default_factory=dict)
    beats_baseline: bool = True

    def describe(self) -> str:
        """One line for the stage notes and the notebook."""
        m = self.spec.metric
        others = ", ".join(f"{k} {v:.4g}" for k, v in sorted(self.metrics.items()))
        previous = "none" if self.champion_metric is None else f"{self.champion_metric:.4g}"
        verdict = "promoted to champion" if self.promoted else (
            "not promoted" if self.beats_baseline else f"not promoted: no better than the baseline's val_{m}"
        )
        return (
            f"{self.spec.registered_name} v{self.version}: {others} (train {self.rows.get('train', 0)}, "
            f"validation {self.rows.get('validation', 0)} rows); champion val_{m} before: {previous}; {verdict}"
        )


def champion_metric(spec: ModelSpec, client: MlflowClient, validation: pd.DataFrame) -> float | None:
    """The current champion's ``spec.metric`` on this ``validation`` set (the same rows the
    candidate is judged on); None without a champion. A champion that cannot score these rows
    (e.g. its inputs changed) is judged by the metric logged with its own run."""
    try:
        current = client.get_model_version_by_alias(spec.registered_name, CHAMPION)
    except MlflowException:
        return None
    try:
        model = mlflow.sklearn.load_model(f"models:/{spec.registered_name}@{CHAMPION}")
        predicted = predict(spec, model, model_frame(validation, spec))
    except (MlflowException, ValueError, KeyError) as exc:
        logged = client.get_run(current.run_id).data.metrics.get(f"val_{spec.metric}")
        mlflow.log_text(f"champion v{current.version} could not score this validation set: {exc}", "champion_note.txt")
        return logged
    actual = validation[spec.label].to_numpy(dtype="float64")
    return score_metrics(spec, actual, predicted, weights(validation, spec))[spec.metric]


def train_and_register(
    spec: ModelSpec, frame: pd.DataFrame, params: Mapping[str, int], tags: Mapping[str, str]
) -> TrainedModel:
    """Fit ``spec`` on ``frame`` (see :func:`carelake.ml.models.split`), log params, metrics
    (``val_*`` and ``baseline_*``), ``tags`` and the model (signature + input example) to the
    active experiment, register it as ``spec.registered_name`` and move the ``champion`` alias to
    it only when it beats both the specialty-mean baseline and the current champion on
    ``val_<metric>`` over the same validation rows."""
    train, validation = split(labelled(frame, spec))
    if train.empty or validation.empty:
        raise ValueError(
            f"model {spec.key}: {len(train)} training and {len(validation)} validation rows with a "
            f"{spec.label}; need both (more providers, dates or a longer label window)"
        )
    estimator = fit(spec, train, **params)
    inputs = model_frame(validation, spec)
    actual, w = validation[spec.label].to_numpy(dtype="float64"), weights(validation, spec)
    metrics = {f"val_{k}": v for k, v in score_metrics(spec, actual, predict(spec, estimator, inputs), w).items()}
    metrics |= {f"baseline_{k}": v for k, v in score_metrics(spec, actual, baseline(spec, train, validation), w).items()}
    client = MlflowClient()
    with mlflow.start_run(run_name=spec.key, tags={**tags, "carelake.model": spec.key}) as run:
        mlflow.log_params({**params, "task": spec.task, "loss": spec.loss or "default", "label": spec.label, "metric": spec.metric,
                           "train_rows": len(train), "validation_rows": len(validation)})
        mlflow.log_metrics(metrics)
        previous = champion_metric(spec, client, validation)
        example = model_frame(train.head(5), spec)
        info = mlflow.sklearn.log_model(
            estimator,
            name="model",
            signature=infer_signature(example, predict(spec, estimator, example)),
            input_example=example,
            registered_model_name=spec.registered_name,
            pyfunc_predict_fn="predict_proba" if spec.task == CLASSIFICATION else "predict",
            skops_trusted_types=TRUSTED_TYPES,
            pip_requirements=pip_requirements(),
        )
    version = int(info.registered_model_version)
    client.update_registered_model(spec.registered_name, spec.description)
    # A candidate that does no better than the specialty-mean baseline is never champion, even
    # the first one: scoring providers with it would only add noise to the baseline's ranking.
    candidate = metrics[f"val_{spec.metric}"]
    beats_baseline = is_better(spec, candidate, metrics.get(f"baseline_{spec.metric}"))
    promoted = beats_baseline and is_better(spec, candidate, previous)
    if promoted:
        client.set_registered_model_alias(spec.registered_name, CHAMPION, str(version))
    client.set_model_version_tag(spec.registered_name, str(version), f"val_{spec.metric}", str(metrics[f"val_{spec.metric}"]))
    return TrainedModel(spec, run.info.run_id, version, metrics, previous, promoted,
                        {"train": len(train), "validation": len(validation)}, beats_baseline)
