# Databricks notebook source
# MAGIC %md
# MAGIC # Data quality review
# MAGIC
# MAGIC Rows the process stage quarantined (`processed._quarantine`): counts by entity and reason,
# MAGIC and sample rows showing only entity, source system, file and reasons — never the raw
# MAGIC payload, which may hold patient details. Then the landing files the ingest stage rejected
# MAGIC whole (`raw._ingest_log`). Runs on Databricks or as `python notebooks/02_data_quality_review.py`.

# COMMAND ----------

from pyspark.sql import functions as F

from carelake.config import load_config
from carelake.serve.notebook import display, finish, get_spark, read_table

config = load_config()
spark = get_spark(config)
print(f"lakehouse: {config.root}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Quarantined rows by entity and reason

# COMMAND ----------

quarantine = read_table(spark, config, "processed", "_quarantine")
if quarantine is not None:
    print(f"quarantined rows: {quarantine.count()}")
    display(quarantine.groupBy("entity").count().orderBy(F.desc("count"), "entity"))
    reasons = quarantine.select("entity", F.explode_outer("reasons").alias("reason"))
    display(reasons.groupBy("entity", "reason").count().orderBy(F.desc("count"), "entity", "reason"))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Sample quarantined rows (no payload)

# COMMAND ----------

if quarantine is not None:
    sample = quarantine.select(
        "entity", "source_system", "source_file", F.array_join("reasons", ", ").alias("reasons")
    )
    display(sample.orderBy("entity", "source_file"), n=10)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Landing files rejected at ingest

# COMMAND ----------

ingest_log = read_table(spark, config, "raw", "_ingest_log")
if ingest_log is not None:
    rejected = ingest_log.where(F.col("status") == "rejected")
    print(f"rejected files: {rejected.count()} of {ingest_log.count()} logged")
    display(rejected.select("file_name", "source_system", "entity", "reason", "logged_at").orderBy("logged_at"), n=20)

# COMMAND ----------

finish(spark)
