"""``carelake replay``: a FHIR entity's raw rows mapped again from their stored resources, then processed again.

After a mapping change in conf (a new column, a fixed path, a new check), the resources already
in raw take the new mapping without landing being read again: raw is rewritten in one commit
(:func:`carelake.ingest.fhir_replay.replay_resources`), the source's processed rows of the
entity (and of the entities that join or resolve references from it) are taken out, their
batches forgotten, and the process stage runs them again. Curated tables are not touched: run
the model stage after.
"""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from carelake.config import Config
from carelake.delta import DeltaTables, Rows
from carelake.ingest.fhir_replay import replay_resources
from carelake.privacy.restricted import restricted_table
from carelake.process import run_process
from carelake.process.history import history_table
from carelake.process.stage import BATCHES_TABLE
from carelake.quality.rules import ENTITY_ORDER
from carelake.run.summary import StageSummary
from carelake.storage import table_uri


def dependents(config: Config, source: str, entity: str) -> list[str]:
    """``entity`` and the processed entities of ``source`` whose rows take values from it (joined
    columns, resolved references): those a replay of ``entity`` processes again."""
    system = config.sources[source]
    using = {name for name, e in system.entities.items()
             if any(j.entity == entity for j in e.joined.values()) or any(t.split(".")[0] == entity for t in e.references.values())}
    return [e for e in ENTITY_ORDER if e in using | {entity}]


def replay_entity(spark: SparkSession, config: Config, tables: DeltaTables, source: str, entity: str, run_id: str
                  ) -> tuple[int, StageSummary]:
    """Map ``source``'s raw rows of ``entity`` again and process them again; (rows replayed, process summary)."""
    system = config.sources.get(source)
    if system is None or entity not in system.entities:
        raise ValueError(f"replay: sources.{source}.entities.{entity} is not configured")
    if system.format != "fhir":
        raise ValueError(f"replay: sources.{source} is {system.format}, not fhir: its raw rows keep no resource to map again")
    uri = table_uri(config, "raw", entity)
    if not tables.exists(uri):
        raise ValueError(f"replay: {uri} does not exist: nothing of {entity} has been ingested")
    # Materialised on the executors before the overwrite, which replaces the files it is read from.
    replayed = replay_resources(tables.read(uri), system, system.entities[entity]).localCheckpoint()
    rows = replayed.where(F.col("_source_system") == source).count()
    tables.write(replayed, uri, mode="overwrite", schema_mode="merge",
                 commit_metadata={"carelake.replay": f"{source}.{entity}", "carelake.run_id": run_id})
    batches_uri = table_uri(config, "processed", BATCHES_TABLE)
    for name in dependents(config, source, entity):
        raw_uri = table_uri(config, "raw", name)
        if not tables.exists(raw_uri):
            continue
        batches = sorted(r["_batch_id"] for r in tables.read(raw_uri).where(F.col("_source_system") == source)
                         .select("_batch_id").distinct().collect())
        # Taken out first: a row the new mapping quarantines must not stay in processed.
        for table in filter(None, (name, restricted_table(name), history_table(name))):
            if tables.exists(table_uri(config, "processed", table)):
                tables.delete(table_uri(config, "processed", table), Rows.where(_source_system=[source]))
        if batches and tables.exists(batches_uri):
            tables.delete(batches_uri, Rows.where(entity=[name], batch_id=batches))
    return rows, run_process(spark, config, tables, run_id)
