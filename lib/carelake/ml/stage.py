"""The ``train`` and ``score`` stages.

``train``: point-in-time training sets from the curated facts, processed CRM activity and
dim_provider at the Delta versions read (recorded as run tags), one MLflow run per model,
registered and promoted when better. ``score``: each model's ``champion`` scores the providers
of the curated ``provider_features`` (the feature store, one as_of) into curated
``provider_scores``, merged on (npi, model_name, as_of) so re-scoring replaces, never duplicates.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DecimalType

from carelake.config import Config
from carelake.curated.features import LONG_DAYS
from carelake.delta import MergeSpec
from carelake.ml.models import MODELS, ModelSpec, model_frame
from carelake.ml.tracking import CHAMPION, train_and_register, use_mlflow
from carelake.ml.training import (
    FOLLOW_UP_DAYS,
    NUMERIC_FEATURES,
    UNKNOWN_CATEGORY,
    outcome_training_set,
    recent_case_mix,
    training_set,
)
from carelake.run import StageSummary
from carelake.storage import table_uri

if TYPE_CHECKING:
    from carelake.delta import DeltaTables

log = logging.getLogger(__name__)

INPUTS: dict[str, str] = {  # input -> zone
    "fact_encounter": "curated", "fact_procedure": "curated", "fact_claim": "curated", "fact_referral": "curated",
    "crm_activity": "processed", "dim_provider": "curated",
}
SCORES_TABLE = "provider_scores"
SCORES_KEYS = ["npi", "model_name", "as_of"]
SCORES_SCHEMA = "npi string, model_name string, model_version long, score double, as_of date, scored_at timestamp"
DEFAULTS = {"label_window_days": 90, "training_dates": 4, "max_iter": 100, "min_samples_leaf": 20}


def training_dates(
    end: date, window_days: int, count: int, history_start: date | None = None,
    feature_days: int = LONG_DAYS, follow_up_days: int = FOLLOW_UP_DAYS,
) -> list[date]:
    """Up to ``count`` as_of dates one label window apart (oldest first), the last one a label
    window and a follow-up period before ``end``, so every label window and the 30-day
    readmission follow-up of its stays are complete and no two label windows overlap. With
    ``history_start`` (the first event date), only dates whose ``feature_days`` feature window
    lies wholly after it are kept: a training row has as much history as the row it is scored on."""
    last = end - timedelta(days=follow_up_days)
    dates = [last - timedelta(days=window_days * k) for k in range(count, 0, -1)]
    if history_start is None:
        return dates
    return [d for d in dates if d - timedelta(days=feature_days - 1) >= history_start]


def history_needed(window_days: int, dates: int = 1, feature_days: int = LONG_DAYS, follow_up_days: int = FOLLOW_UP_DAYS) -> int:
    """Days of history (first to last event date, both included) that ``dates`` full training
    dates need: a feature window, the label windows, the follow-up."""
    return feature_days + window_days * dates + follow_up_days


def selected_models(config: Config) -> list[ModelSpec]:
    """The models named in ``ml.models`` (default: all of :data:`MODELS`)."""
    names = config.section("ml").get("models") or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ValueError(f"ml.models: unknown model(s) {', '.join(unknown)}; expected some of {', '.join(MODELS)}")
    return [MODELS[n] for n in names]


def to_pandas(df: DataFrame) -> pd.DataFrame:
    """``df`` as pandas with decimals as doubles (models take floats, not Decimal objects)."""
    return df.select(
        *[F.col(f.name).cast("double") if isinstance(f.dataType, DecimalType) else F.col(f.name) for f in df.schema.fields]
    ).toPandas()


def _setting(config: Config, key: str) -> int:
    return int(config.section("ml").get(key) or DEFAULTS[key])


def _admit_date_range(encounters: DataFrame, today: date) -> tuple[date | None, date | None]:
    """The first and the latest admit date on/before ``today`` (None, None without any)."""
    row = encounters.where(F.col("admit_date") <= F.lit(today)).agg(F.min("admit_date"), F.max("admit_date")).collect()[0]
    return row[0], row[1]


def _missing(tables: DeltaTables, config: Config, names: dict[str, str]) -> list[str]:
    return [f"{zone}.{name}" for name, zone in names.items() if not tables.exists(table_uri(config, zone, name))]


def run_train(spark: SparkSession, config: Config, tables: DeltaTables, run_id: str) -> StageSummary:
    """Build the point-in-time training sets and train, log, register and (when better) promote
    every model of ``ml.models``. Settings (``ml.*``): ``label_window_days``, ``training_dates``,
    ``as_of`` (end of the data the labels and their follow-up may use; default the latest admit
    date), ``max_iter``, ``min_samples_leaf``. Dates without a full feature window are dropped
    (see :func:`training_dates`); none left is nothing to do, with the history it needs."""
    summary = StageSummary("train")
    missing = _missing(tables, config, INPUTS)
    if missing:
        summary.notes.extend(f"table {t} not built yet — run make run" for t in missing)
        return summary.finish("nothing-to-do")
    uris = {name: table_uri(config, zone, name) for name, zone in INPUTS.items()}
    versions = {name: tables.version(uri) for name, uri in uris.items()}
    # Read each input once: the training set computes the features for every training date, and
    # without this each date re-reads every Delta table through the data source.
    data = {name: tables.read(uri, version=versions[name]).localCheckpoint(eager=True) for name, uri in uris.items()}
    window = _setting(config, "label_window_days")
    configured_end = config.section("ml").get("as_of")
    first, latest = _admit_date_range(data["fact_encounter"], date.today())
    end = date.fromisoformat(str(configured_end)) if configured_end else latest
    if end is None or first is None:
        summary.notes.append("fact_encounter has no encounter on/before today: nothing to learn from")
        return summary.finish("nothing-to-do")
    wanted = _setting(config, "training_dates")
    dates = training_dates(end, window, wanted, history_start=first)
    if not dates:
        history = (end - first).days + 1
        summary.notes.append(
            f"not trained: {history} days of history ({first} to {end}); a training date needs "
            f"{history_needed(window)} ({LONG_DAYS} of features, a {window}-day label window, "
            f"{FOLLOW_UP_DAYS} of follow-up) — generate more months (make run MONTHS=...)"
        )
        return summary.finish("nothing-to-do")
    if len(dates) < wanted:
        summary.notes.append(
            f"{len(dates)} of {wanted} training dates have a full {LONG_DAYS}-day feature window "
            f"({history_needed(window, wanted)} days of history would give all {wanted})"
        )
    providers_set = training_set(
        data["fact_encounter"], data["fact_procedure"], data["fact_claim"], data["fact_referral"],
        data["crm_activity"], data["dim_provider"], dates, window, follow_up_end=end,
    ).localCheckpoint(eager=True)
    frames = {
        "provider": to_pandas(providers_set),
        "outcome": to_pandas(outcome_training_set(data["fact_encounter"], providers_set, window, follow_up_end=end)),
    }
    for name, frame in frames.items():
        counts = summary.counts(f"{name}_training_set")
        counts.rows_in = counts.rows_valid = len(frame)
    tags = {
        "carelake.run_id": run_id,
        "carelake.training_dates": ",".join(d.isoformat() for d in dates),
        "carelake.label_window_days": str(window),
        **{f"carelake.{name}_version": str(v) for name, v in versions.items()},
    }
    params = {"max_iter": _setting(config, "max_iter"), "min_samples_leaf": _setting(config, "min_samples_leaf")}
    use_mlflow(config)
    for spec in selected_models(config):
        frame = frames["outcome" if spec.weight else "provider"]
        try:
            trained = train_and_register(spec, frame, params, tags)
        except ValueError as exc:
            summary.notes.append(f"{spec.registered_name}: not trained — {exc}")
            continue
        summary.notes.append(trained.describe())
        log.info("train: %s", trained.describe())
    return summary.finish()


def positive_class(output: object) -> pd.Series:
    """A pyfunc model's output as one score per row: the value, or the last column (class 1) of
    class probabilities."""
    frame = pd.DataFrame(output)
    return frame.iloc[:, -1].astype("float64").reset_index(drop=True)


def provider_scores(spec: ModelSpec, predict_fn, features: pd.DataFrame, mix: pd.DataFrame) -> pd.DataFrame:
    """One score per NPI of ``features`` (pandas provider_features rows) with ``predict_fn``
    (a pyfunc ``predict``) -> DataFrame ``npi``, ``score``.

    The outcome model scores the provider's own recent case mix (``mix``: npi, encounter_type,
    diagnosis_chapter, cases; see :func:`recent_case_mix`) and averages the probabilities weighted
    by cases; a provider without recent cases is scored on an unknown case type."""
    if not spec.weight:
        scores = positive_class(predict_fn(model_frame(features, spec)))
        return pd.DataFrame({"npi": features["npi"].reset_index(drop=True), "score": scores})
    rows = features[["npi", "specialty", *NUMERIC_FEATURES]].merge(mix, on="npi", how="left")
    rows[spec.weight] = rows[spec.weight].fillna(1).astype("float64")
    for column in ("encounter_type", "diagnosis_chapter"):
        rows[column] = rows[column].fillna(UNKNOWN_CATEGORY)
    rows = rows.reset_index(drop=True)
    rows["_weighted"] = positive_class(predict_fn(model_frame(rows, spec))) * rows[spec.weight]
    totals = rows.groupby("npi", sort=True)[["_weighted", spec.weight]].sum()
    return pd.DataFrame({"npi": totals.index, "score": (totals["_weighted"] / totals[spec.weight]).to_numpy()})


def run_score(spark: SparkSession, config: Config, tables: DeltaTables, run_id: str) -> StageSummary:
    """Score the providers of curated ``provider_features`` with each model's ``champion`` and
    merge the scores into curated ``provider_scores`` on (npi, model_name, as_of)."""
    summary = StageSummary("score")
    missing = _missing(tables, config, {"provider_features": "curated", "fact_encounter": "curated"})
    if missing:
        summary.notes.extend(f"table {t} not built yet — run make run" for t in missing)
        return summary.finish("nothing-to-do")
    features_uri = table_uri(config, "curated", "provider_features")
    features_version = tables.version(features_uri)
    features_df = tables.read(features_uri, version=features_version)
    as_of = features_df.agg(F.max("as_of")).collect()[0][0]
    if as_of is None:
        summary.notes.append("provider_features is empty: nothing to score")
        return summary.finish("nothing-to-do")
    features = to_pandas(features_df.where(F.col("as_of") == F.lit(as_of)))
    mix = to_pandas(recent_case_mix(tables.read(table_uri(config, "curated", "fact_encounter")), as_of))
    use_mlflow(config)
    client = MlflowClient()
    scored_at = datetime.now(timezone.utc).replace(tzinfo=None)
    parts = []
    for spec in selected_models(config):
        try:
            version = int(client.get_model_version_by_alias(spec.registered_name, CHAMPION).version)
        except MlflowException:
            summary.notes.append(f"{spec.registered_name}: no {CHAMPION} registered yet — run the train stage")
            continue
        model = mlflow.pyfunc.load_model(f"models:/{spec.registered_name}@{CHAMPION}")
        scores = provider_scores(spec, model.predict, features, mix)
        parts.append(scores.assign(model_name=spec.registered_name, model_version=version))
        summary.notes.append(f"{spec.registered_name} v{version}: {len(scores)} providers scored as of {as_of}")
    if not parts:
        return summary.finish("nothing-to-do")
    rows = pd.concat(parts, ignore_index=True).assign(as_of=as_of, scored_at=scored_at)
    scores_df = spark.createDataFrame(rows[["npi", "model_name", "model_version", "score", "as_of", "scored_at"]], SCORES_SCHEMA)
    uri = table_uri(config, "curated", SCORES_TABLE)
    meta = {"carelake.run_id": run_id, "carelake.provider_features_version": str(features_version)}
    tables.merge(scores_df, uri, MergeSpec(SCORES_KEYS), commit_metadata=meta)
    counts = summary.counts(SCORES_TABLE)
    counts.rows_in = counts.rows_valid = counts.rows_written = len(rows)
    counts.delta_version = tables.version(uri)
    summary.tables[uri] = counts.delta_version
    return summary.finish()
