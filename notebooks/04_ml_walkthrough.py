# Databricks notebook source
# MAGIC %md
# MAGIC # Provider models: training sets, MLflow runs, champions and scores
# MAGIC
# MAGIC The `train` stage builds point-in-time training sets from the feature store (features as of
# MAGIC a date, labels from the following window), fits three scikit-learn models, logs them to
# MAGIC MLflow and promotes a `champion` only when it beats the current one. The `score` stage scores
# MAGIC every provider with each champion into curated `provider_scores`. This notebook looks at
# MAGIC what they left behind (run `make run` first), and shows how to build a training set yourself.
# MAGIC
# MAGIC Provider-level data only. Runs on Databricks or as `python notebooks/04_ml_walkthrough.py`;
# MAGIC a table or model not built yet is reported, not fatal. See docs/ml.md.

# COMMAND ----------

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from pyspark.sql import functions as F

from carelake.config import load_config
from carelake.ml import MODELS, tracking_uri, use_mlflow
from carelake.ml.stage import training_dates
from carelake.ml.tracking import CHAMPION
from carelake.ml.training import LABEL_COLUMNS, training_set
from carelake.serve.notebook import display, finish, get_spark, read_table

config = load_config()
spark = get_spark(config)
print(f"lakehouse: {config.root}")
print(f"MLflow tracking URI: {tracking_uri(config)}")
print(f"browse the runs: mlflow ui --backend-store-uri {tracking_uri(config)}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## 1. A point-in-time training set
# MAGIC Up to two dates one label window apart, each with a full year of history before it. For
# MAGIC each, the features use only what had been recorded by `as_of` and the labels only events in
# MAGIC `(as_of, as_of + window]` whose 30-day follow-up is complete, so a model never sees the
# MAGIC period it is asked to predict (docs/ml.md, "Features and labels, point in time").

# COMMAND ----------

WINDOW_DAYS = 90
inputs = {
    name: read_table(spark, config, zone, name)
    for name, zone in (("fact_encounter", "curated"), ("fact_procedure", "curated"), ("fact_claim", "curated"),
                       ("fact_referral", "curated"), ("crm_activity", "processed"), ("dim_provider", "curated"))
}
training, dates = None, []
if all(df is not None for df in inputs.values()):
    first_day, last_day = inputs["fact_encounter"].agg(F.min("admit_date"), F.max("admit_date")).collect()[0]
    dates = training_dates(last_day, WINDOW_DAYS, 2, history_start=first_day)
    print(f"admit dates {first_day} to {last_day}; as_of dates {', '.join(d.isoformat() for d in dates) or 'none'}")
if dates:
    training = training_set(*inputs.values(), dates, WINDOW_DAYS, follow_up_end=last_day).localCheckpoint(eager=True)
    display(
        training.groupBy("as_of").agg(
            F.count(F.lit(1)).alias("providers"),
            F.sum("encounters_365d").alias("encounters_365d (features)"),
            F.sum("label_encounters").alias("label_encounters (next window)"),
            F.round(F.avg("label_cost_per_case"), 2).alias("mean label_cost_per_case"),
        ).orderBy("as_of")
    )
    display(training.select("npi", "as_of", "specialty", "encounters_365d", "cost_per_case", *LABEL_COLUMNS).limit(10))

# COMMAND ----------

# MAGIC %md
# MAGIC ## 2. The MLflow runs: each model against its baseline
# MAGIC The baseline is the specialty's mean label in the training rows. Regressions report MAE and
# MAGIC R², the poor-outcome classifier AUC, all on the validation rows (the latest `as_of`).

# COMMAND ----------

use_mlflow(config)
client = MlflowClient()
runs = mlflow.search_runs(order_by=["attributes.start_time DESC"])
if runs.empty:
    print("no MLflow run yet — run make run (or carelake train)")
else:
    metrics = [c for c in runs.columns if c.startswith(("metrics.val_", "metrics.baseline_"))]
    display(runs[["tags.carelake.model", "start_time", *metrics, "tags.carelake.fact_encounter_version"]], n=12)

# COMMAND ----------

# MAGIC %md
# MAGIC ## 3. Registered models and their champions
# MAGIC A new version becomes `champion` only when it beats the current champion on the same
# MAGIC validation rows (lower MAE, higher AUC). The score stage loads `models:/<name>@champion`.

# COMMAND ----------

for spec in MODELS.values():
    try:
        champion = client.get_model_version_by_alias(spec.registered_name, CHAMPION)
    except MlflowException:
        print(f"{spec.registered_name}: no {CHAMPION} yet")
        continue
    versions = client.search_model_versions(f"name='{spec.registered_name}'")
    metric = client.get_run(champion.run_id).data.metrics.get(f"val_{spec.metric}")
    print(f"{spec.registered_name}: {len(versions)} version(s), {CHAMPION} v{champion.version} "
          f"(val_{spec.metric} {metric:.4g}) — {spec.description}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## 4. The scores in the lakehouse
# MAGIC One row per provider, model and `as_of` in curated `provider_scores`; re-scoring replaces.

# COMMAND ----------

scores = read_table(spark, config, "curated", "provider_scores")
if scores is not None:
    display(scores.groupBy("model_name", "model_version", "as_of").agg(
        F.count(F.lit(1)).alias("providers"), F.round(F.avg("score"), 4).alias("mean score"),
        F.round(F.min("score"), 4).alias("min"), F.round(F.max("score"), 4).alias("max"),
    ).orderBy("model_name", "as_of"))
    wide = scores.groupBy("npi", "as_of").pivot("model_name").agg(F.first("score"))
    display(wide.orderBy(F.col("carelake_poor_outcome").desc_nulls_last()).limit(10)
            if "carelake_poor_outcome" in wide.columns else wide.limit(10))

# COMMAND ----------

finish(spark)
