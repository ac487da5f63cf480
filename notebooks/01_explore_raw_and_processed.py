# Databricks notebook source
# MAGIC %md
# MAGIC # Explore the raw and processed zones
# MAGIC
# MAGIC Which tables exist in each zone, how many rows and which columns they hold, a preview of
# MAGIC providers and encounters as received (raw) and as conformed (processed), and how many rows
# MAGIC each source system contributed. Runs on Databricks or as `python notebooks/01_explore_raw_and_processed.py`
# MAGIC (set `CARELAKE_CONFIG` or `CARELAKE_LAKEHOUSE__ROOT` to pick the lakehouse).
# MAGIC Person-identifying columns are dropped from previews.

# COMMAND ----------

from pyspark.sql import functions as F

from carelake.config import load_config
from carelake.serve.notebook import display, finish, get_spark, read_table, without_pii, zone_tables

config = load_config()
spark = get_spark(config)
print(f"lakehouse: {config.root}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Tables per zone: row counts and schemas

# COMMAND ----------

for zone in ("raw", "processed", "curated"):
    names = zone_tables(config, zone)
    if not names:
        print(f"zone {zone}: no tables built yet — run make run")
        continue
    print(f"zone {zone}: {len(names)} tables")
    for name in names:
        df = read_table(spark, config, zone, name)
        if df is not None:
            print(f"  {zone}.{name}: {df.count()} rows")
            print(f"    {df.schema.simpleString()}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Providers and encounters, raw and processed

# COMMAND ----------

for zone in ("raw", "processed"):
    for name in ("providers", "encounters"):
        df = read_table(spark, config, zone, name)
        if df is not None:
            print(f"preview of {zone}.{name}")
            display(without_pii(df), n=5)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Rows per source system
# MAGIC Raw tables carry `_source_system`; processed tables `source_system` when they keep it.

# COMMAND ----------

for zone in ("raw", "processed"):
    for name in zone_tables(config, zone):
        if name.startswith("_"):
            continue
        df = read_table(spark, config, zone, name)
        column = next((c for c in ("_source_system", "source_system") if df is not None and c in df.columns), None)
        if column is None:
            continue
        print(f"rows per source system in {zone}.{name}")
        display(df.groupBy(F.col(column).alias("source_system")).count().orderBy("source_system"))

# COMMAND ----------

finish(spark)
