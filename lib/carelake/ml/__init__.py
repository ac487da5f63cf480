"""Provider models on the feature store: point-in-time training sets, MLflow-tracked training
with a champion alias, and batch scoring into curated ``provider_scores``."""

from carelake.ml.models import MODELS, ModelSpec
from carelake.ml.stage import run_score, run_train
from carelake.ml.tracking import tracking_uri, use_mlflow
from carelake.ml.training import outcome_training_set, training_set

__all__ = ["MODELS", "ModelSpec", "outcome_training_set", "run_score", "run_train", "tracking_uri", "training_set", "use_mlflow"]
