"""The train and score stages on Delta tables: models registered with a champion and loadable by
alias, one score per current NPI, re-scoring without duplicates. (Promotion only when better is
tested on pandas frames in tests/test_ml_models.py, without Spark.)"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from decimal import Decimal as D

import mlflow
import numpy as np
import pandas as pd
import pytest
from chispa import assert_df_equality
from mlflow.tracking import MlflowClient
from pyspark.sql import SparkSession

from carelake.config import Config
from carelake.curated.features import COLUMNS as FEATURE_COLUMNS
from carelake.curated.features import provider_features
from carelake.delta import DeltaTables
from carelake.ml.models import MODELS, model_frame
from carelake.ml.stage import (
    SCORES_TABLE,
    history_needed,
    provider_scores,
    run_score,
    run_train,
    training_dates,
)
from carelake.ml.tracking import CHAMPION
from carelake.ml.training import NUMERIC_FEATURES, training_set
from carelake.storage import table_uri
from tests.test_curated_data import (
    CLAIM_SCHEMA,
    CRM_SCHEMA,
    ENCOUNTER_SCHEMA,
    OPEN,
    PROCEDURE_SCHEMA,
    PROVIDER_SCHEMA,
    REFERRAL_SCHEMA,
    START,
    month,
)

AS_OF = date(2024, 6, 30)
HISTORY_START = date(2022, 10, 1)
PROVIDERS = 24


def lakehouse_rows() -> dict[str, list[tuple]]:
    """24 providers seen every 12 days over 21 months (two training dates with a full year of
    features before them, then a label window and its follow-up). Provider i has its own cost level, poor-outcome
    odds and CRM opportunity value, so the past predicts the next window. Provider 0 changed
    specialty in 2024 (two dim_provider versions, one current)."""
    rng = random.Random(7)
    rows: dict[str, list[tuple]] = {k: [] for k in ("providers", "encounters", "procedures", "claims", "referrals", "crm")}
    rows["providers"].append(("0", "Dermatology", "44101", "NET-2", "E2", True, START, datetime(2024, 1, 1), False, 100))
    for i in range(PROVIDERS):
        specialty = "Cardiology" if i % 2 else "Dermatology"
        valid_from = datetime(2024, 1, 1) if i == 0 else START
        rows["providers"].append((str(i), specialty, f"606{i:02d}", "NET-1", "E1", True, valid_from, OPEN, True, i + 1))
        day, k = HISTORY_START + timedelta(days=i % 12), 0
        while day <= AS_OF:
            key, poor = f"e{i}-{k}", rng.random() < 0.05 + 0.6 * i / PROVIDERS
            cost = D(100 + 40 * i + rng.randint(0, 50))
            etype = "inpatient" if k % 3 == 0 else "outpatient"
            rows["encounters"].append((key, "hospital_a", "ABCD"[k % 4], str(i), specialty, etype, "I10" if k % 2 else "R07.9",
                                       day, 2, 1, cost, int(poor), int(poor and k % 2 == 0), 1 + (i + k) % 5, month(day)))
            rows["procedures"].append((f"p{i}-{k}", key, "ABCD"[k % 4], str(i), "93000", day, 1, cost, month(day)))
            rows["claims"].append((f"c{i}-{k}", "hospital_a", key, "ABCD"[k % 4], str(i), "Aetna", day, cost, cost, cost, 0, month(day)))
            if k % 10 == 0:
                rows["referrals"].append((f"r{i}-{k}", str(i), str((i + 1) % PROVIDERS), "A", "E1", specialty, "completed", day, month(day)))
                rows["crm"].append((f"a{i}-{k}", str(i), day, D(10), 1, D(25 * i)))
            day, k = day + timedelta(days=12), k + 1
    return rows


@pytest.fixture
def lakehouse(spark: SparkSession, config: Config, tables: DeltaTables) -> Config:
    """The facts, CRM and dim_provider as Delta tables plus curated provider_features as of AS_OF."""
    config = config.with_overrides(**{"ml.training_dates": 2, "ml.max_iter": 30, "ml.min_samples_leaf": 5})
    rows = lakehouse_rows()
    frames = {name: spark.createDataFrame(rows[name], schema) for name, schema in (
        ("providers", PROVIDER_SCHEMA), ("encounters", ENCOUNTER_SCHEMA), ("procedures", PROCEDURE_SCHEMA),
        ("claims", CLAIM_SCHEMA), ("referrals", REFERRAL_SCHEMA), ("crm", CRM_SCHEMA))}
    for name, (zone, table) in {
        "providers": ("curated", "dim_provider"), "encounters": ("curated", "fact_encounter"),
        "procedures": ("curated", "fact_procedure"), "claims": ("curated", "fact_claim"),
        "referrals": ("curated", "fact_referral"), "crm": ("processed", "crm_activity"),
    }.items():
        tables.write(frames[name], table_uri(config, zone, table))
    tables.write(provider_features(**frames, as_of=AS_OF), table_uri(config, "curated", "provider_features"))
    return config


def test_train_register_score_and_rescore(spark: SparkSession, lakehouse: Config, tables: DeltaTables,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = lakehouse
    trained = run_train(spark, config, tables, "run-1")
    assert trained.status == "ok", trained.notes
    assert trained.entities["provider_training_set"].rows_in == 2 * PROVIDERS
    assert sum("promoted to champion" in note for note in trained.notes) == len(MODELS), trained.notes

    client = MlflowClient()
    encounter_version = tables.version(table_uri(config, "curated", "fact_encounter"))
    for spec in MODELS.values():
        champion = client.get_model_version_by_alias(spec.registered_name, CHAMPION)
        assert int(champion.version) == 1
        run = client.get_run(champion.run_id)
        assert run.data.tags["carelake.fact_encounter_version"] == str(encounter_version)
        # 90-day label windows, then 30 days of follow-up to 2024-06-30
        assert run.data.tags["carelake.training_dates"] == "2023-12-03,2024-03-02"
        model = mlflow.pyfunc.load_model(f"models:/{spec.registered_name}@{CHAMPION}")
        assert model.metadata.signature is not None
    # The providers' next-window cost is their own level: the model beats the specialty mean.
    cost = client.get_run(client.get_model_version_by_alias("carelake_cost_per_case", CHAMPION).run_id).data.metrics
    assert cost["val_mae"] < cost["baseline_mae"]

    scores_uri = table_uri(config, "curated", SCORES_TABLE)
    first = run_score(spark, config, tables, "run-2")
    assert first.status == "ok", first.notes
    scores = tables.read(scores_uri).toPandas()
    current = {str(i) for i in range(PROVIDERS)}
    assert len(scores) == len(MODELS) * PROVIDERS
    for spec in MODELS.values():
        mine = scores[scores["model_name"] == spec.registered_name]
        assert sorted(mine["npi"]) == sorted(current)  # one row per current NPI, provider 0 once
    assert set(scores["as_of"]) == {AS_OF} and set(scores["model_version"]) == {1}
    outcome = scores[scores["model_name"] == "carelake_poor_outcome"]["score"]
    assert outcome.between(0, 1).all()

    again = run_score(spark, config, tables, "run-3")
    assert again.status == "ok"
    rescored = tables.read(scores_uri).toPandas()
    assert len(rescored) == len(scores) and not rescored.duplicated(["npi", "model_name", "as_of"]).any()
    assert tables.version(scores_uri) > first.tables[scores_uri]


def test_nothing_to_do_before_the_inputs_exist(spark: SparkSession, config: Config, tables: DeltaTables) -> None:
    assert run_train(spark, config, tables, "r").status == "nothing-to-do"
    assert run_score(spark, config, tables, "r").status == "nothing-to-do"


def test_training_dates_leave_a_label_window_and_the_follow_up_before_the_end() -> None:
    # The last label window ends 30 days (the readmission follow-up) before 2024-06-30, on 2024-05-31.
    assert training_dates(date(2024, 6, 30), 90, 3) == [date(2023, 9, 4), date(2023, 12, 3), date(2024, 3, 2)]


def test_training_dates_keep_only_dates_with_a_full_feature_window() -> None:
    # 2023-12-03's 365 days start on 2022-12-04; 2023-09-04's on 2022-09-05.
    dates = training_dates(date(2024, 6, 30), 90, 3, history_start=date(2022, 12, 4))
    assert dates == [date(2023, 12, 3), date(2024, 3, 2)]
    assert training_dates(date(2024, 6, 30), 90, 3, history_start=date(2022, 12, 5)) == [date(2024, 3, 2)]
    assert training_dates(date(2024, 6, 30), 90, 3, history_start=date(2023, 3, 5)) == []
    assert history_needed(90, 2) == 365 + 180 + 30


def test_too_short_a_history_is_nothing_to_do_with_what_it_needs(spark: SparkSession, lakehouse: Config,
                                                                 tables: DeltaTables) -> None:
    summary = run_train(spark, lakehouse.with_overrides(**{"ml.as_of": "2023-10-01"}), tables, "r")
    assert summary.status == "nothing-to-do"
    assert any("not trained: 366 days of history (2022-10-01 to 2023-10-01)" in n and "needs 485" in n
               for n in summary.notes), summary.notes


def test_a_training_row_equals_the_feature_store_row_of_its_date(spark: SparkSession, lakehouse: Config,
                                                                 tables: DeltaTables) -> None:
    # What the score stage reads (curated provider_features as of AS_OF) and what a training set
    # built from the same history holds for AS_OF: the same features, column for column.
    read = {name: tables.read(table_uri(lakehouse, zone, table)) for name, (zone, table) in {
        "encounters": ("curated", "fact_encounter"), "procedures": ("curated", "fact_procedure"),
        "claims": ("curated", "fact_claim"), "referrals": ("curated", "fact_referral"),
        "crm": ("processed", "crm_activity"), "providers": ("curated", "dim_provider")}.items()}
    training = training_set(*read.values(), [AS_OF], 90).select(*FEATURE_COLUMNS)
    stored = tables.read(table_uri(lakehouse, "curated", "provider_features")).select(*FEATURE_COLUMNS)
    assert stored.count() == PROVIDERS
    assert_df_equality(training, stored, ignore_row_order=True, ignore_nullable=True)


def test_outcome_score_is_the_case_weighted_mean_over_the_recent_mix() -> None:
    spec = MODELS["poor_outcome"]
    features = pd.DataFrame([{**dict.fromkeys(NUMERIC_FEATURES, np.nan), "npi": npi, "specialty": "S"} for npi in ("1", "2")])
    mix = pd.DataFrame({"npi": ["1", "1"], "encounter_type": ["inpatient", "outpatient"],
                        "diagnosis_chapter": ["I", "I"], "cases": [1, 3]})

    def predict(inputs: pd.DataFrame) -> np.ndarray:
        assert list(inputs.columns) == list(model_frame(inputs, spec).columns)
        p = inputs["encounter_type"].map({"inpatient": 0.8, "outpatient": 0.4, "?": 0.1}).to_numpy()
        return np.column_stack([1 - p, p])  # predict_proba: class 1 last

    scores = provider_scores(spec, predict, features, mix).set_index("npi")["score"]
    # npi 1: (0.8 x 1 + 0.4 x 3) / 4 = 0.5; npi 2 has no recent case: the unknown case type.
    assert scores.to_dict() == pytest.approx({"1": 0.5, "2": 0.1})
