"""The model stage: processed tables -> SCD2 dimensions, ``dim_date`` and partitioned facts.

Incremental: a processed row is new when its ``_batch_id`` is not yet in ``curated/_model_batches``
(the batches the model has consumed, per entity). The dimensions read every version of a batch
from ``processed/providers_history`` and ``processed/patients_history`` (each state a source
file stated), not only the latest row per key, so their SCD2 history follows the sources'
``updated_at`` however the files were grouped into batches. Only new rows are modelled; the consumed
batches are logged last, so a run that fails half-way is redone whole next time — every write
here is idempotent (SCD2 re-plans to nothing, fact partitions are replaced with the same rows).
A run with no new batches writes nothing.

De-identification happens on the way in and out: ``patient_key`` is replaced by the keyed
``patient_token`` as processed rows are read, and fact dates are kept to ``privacy.date_grain``.

Every run also brings ``curated/patient_enterprise_tokens`` (the person behind each record, from
the match stage's links; :mod:`carelake.model.persons`) in line with the processed patients and
the latest links, batches or not: a match run may relink records without a new patient batch.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from functools import reduce
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType, TimestampType

from carelake.config import Config
from carelake.delta.scd2 import apply_scd2
from carelake.matching.linkage import MatchSettings
from carelake.model.dim_date import DEFAULT_FISCAL_START_MONTH, build_dim_date, date_span
from carelake.model.dimensions import dimension_spec, patient_updates, provider_updates
from carelake.model.facts import (
    FACTS,
    NPI_BUCKET,
    PARTITION_COLUMNS,
    SERVICE_MONTH,
    build_fact_claim,
    build_fact_encounter,
    build_fact_procedure,
    build_fact_referral,
    replace_partitions,
    touched_partitions,
    version_lookup,
)
from carelake.model.persons import (
    ENTERPRISE_TOKENS_TABLE,
    enterprise_tokens,
    sync_enterprise_tokens,
)
from carelake.privacy import coarsen_dates, date_grain, resolve_token_key, tokenise_patient_key
from carelake.privacy.restricted import MATCHING_TABLES
from carelake.process.history import history_table
from carelake.run import StageSummary
from carelake.sources.canonical import canonical_schema
from carelake.storage import table_uri

if TYPE_CHECKING:
    from carelake.delta import CommitResult, DeltaTables

log = logging.getLogger(__name__)

MODEL_BATCHES_TABLE = "_model_batches"
MODEL_INPUTS = ("providers", "patients", "encounters", "procedures", "claims", "referrals")
BATCH_LOG_SCHEMA = StructType(
    [
        StructField("entity", StringType()),
        StructField("batch_id", StringType()),
        StructField("run_id", StringType()),
        StructField("consumed_at", TimestampType()),
    ]
)
EVENT_DATES = {
    "fact_encounter": "admit_date", "fact_procedure": "procedure_date",
    "fact_claim": "service_date", "fact_referral": "referral_date",
}


def upsert_fact(
    tables: DeltaTables, uri: str, batch: DataFrame, business_key: list[str],
    commit_metadata: dict[str, str] | None = None, rows: int | None = None,
) -> CommitResult | None:
    """Merge-upsert fact rows by business key, rewriting only the partitions the batch touches.

    The touched (``service_month``, ``npi_bucket``) pairs are collected (a short list), those
    partitions of the table are read, combined with the batch (batch rows win) and written back
    with ``replace_where`` on exactly the months and buckets read. ``replace_where`` takes the
    product of the listed months and buckets, so that product is what is read and rewritten.
    Returns ``None`` for an empty batch (nothing committed). ``rows``: the batch's row count
    when the caller has counted a local checkpoint of it, which is then used as it is.
    """
    if rows is None:
        batch = batch.localCheckpoint(eager=True)  # read three times below; compute it once
        empty = batch.isEmpty()
    else:
        empty = rows == 0
    if empty:
        return None
    partition_by = list(PARTITION_COLUMNS)
    if not tables.exists(uri):
        return tables.write(batch, uri, mode="append", partition_by=partition_by, commit_metadata=commit_metadata)
    current = tables.read(uri, version=tables.version(uri))
    touched = touched_partitions(batch, current.select(*business_key, *PARTITION_COLUMNS), business_key).collect()
    months = sorted({r[SERVICE_MONTH] for r in touched})
    buckets = sorted({r[NPI_BUCKET] for r in touched})
    in_scope = current.where(F.col(SERVICE_MONTH).isin(months) & F.col(NPI_BUCKET).isin(buckets))
    return tables.write(
        replace_partitions(in_scope, batch, business_key),
        uri,
        mode="overwrite",
        partition_by=partition_by,
        replace_where={SERVICE_MONTH: months, NPI_BUCKET: buckets},
        commit_metadata=commit_metadata,
    )


def _consumed(spark: SparkSession, tables: DeltaTables, log_uri: str) -> DataFrame:
    if tables.exists(log_uri):
        return tables.read(log_uri).select("entity", "batch_id")
    return spark.createDataFrame([], BATCH_LOG_SCHEMA).select("entity", "batch_id")


def _new_batches(full: dict[str, DataFrame], consumed: DataFrame) -> list[tuple[str, str]]:
    """(entity, batch id) of the processed batches not consumed yet, in one query over every
    input (a query per input cost its own scans, shuffles and broadcasts)."""
    batch_ids = reduce(DataFrame.unionByName, (
        frame.select(F.lit(entity).alias("entity"), F.col("_batch_id").alias("batch_id")) for entity, frame in full.items()
    )).distinct()
    fresh = batch_ids.join(
        consumed, (batch_ids["entity"] == consumed["entity"]) & batch_ids["batch_id"].eqNullSafe(consumed["batch_id"]), "left_anti"
    )
    order = list(full)
    return sorted(((r["entity"], r["batch_id"]) for r in fresh.collect()), key=lambda eb: (order.index(eb[0]), eb[1] or ""))


def _record(summary: StageSummary, table: str, uri: str, rows_in: int, rows_written: int,
            result: CommitResult | None, tables: DeltaTables) -> None:
    counts = summary.counts(table)
    counts.rows_in = counts.rows_valid = rows_in
    counts.rows_written = rows_written if result is not None else 0
    counts.delta_version = result.version if result is not None else (tables.version(uri) if tables.exists(uri) else None)
    if result is not None:
        summary.tables[uri] = result.version


def run_model(spark: SparkSession, config: Config, tables: DeltaTables, run_id: str) -> StageSummary:
    """Model the processed batches not yet consumed; returns the ``model`` stage summary.

    Per table: rows_in = rows_valid = rows modelled from the new batches (dimension updates or
    fact rows), rows_written = rows the commit inserted or updated, delta_version = the table's
    version after the run. Status ``nothing-to-do`` when no processed batch is new.
    """
    summary = StageSummary("model")
    token_key = resolve_token_key(config)
    grain = date_grain(config)
    meta = {"carelake.run_id": run_id, "carelake.stage": "model"}
    curated = {name: table_uri(config, "curated", name) for name in (*FACTS, "dim_provider", "dim_patient", "dim_date")}
    log_uri = table_uri(config, "curated", MODEL_BATCHES_TABLE)
    consumed = _consumed(spark, tables, log_uri)

    full: dict[str, DataFrame] = {}
    for entity in MODEL_INPUTS:
        uri = table_uri(config, "processed", entity)
        if not tables.exists(uri):
            full[entity] = tokenise_patient_key(spark.createDataFrame([], canonical_schema(entity)), token_key)
            summary.notes.append(f"{entity}: no processed table at {uri} yet")
            continue
        # Pin one version so the batches listed and the rows read agree.
        full[entity] = tokenise_patient_key(_with_history(tables, config, entity, tables.read(uri, version=tables.version(uri))), token_key)
    new_batches = _new_batches(full, consumed)
    relinked = _sync_persons(spark, config, tables, token_key, summary, meta)
    new: dict[str, DataFrame] = {}
    for entity, frame in full.items():
        batches = [b for e, b in new_batches if e == entity]
        new[entity] = frame.where(F.col("_batch_id").isin(batches) if batches else F.lit(False))
    if not new_batches:
        summary.notes.append("no new processed batches")
        return summary.finish("ok" if relinked else "nothing-to-do")
    log.info("model: %d new processed batch(es)", len(new_batches))

    for dim, entity, prepare in (("dim_provider", "providers", provider_updates), ("dim_patient", "patients", patient_updates)):
        spec = dimension_spec(config, dim)
        updates = prepare(full[entity] if spec.snapshot else new[entity])
        result = apply_scd2(tables, curated[dim], updates, spec, commit_metadata=meta)
        written = (result.rows_inserted or 0) + (result.rows_updated or 0) if result is not None else 0
        _record(summary, dim, curated[dim], updates.count(), written, result, tables)

    lookups = {
        dim: version_lookup(tables.read(curated[dim]), key, sk)
        if tables.exists(curated[dim])
        else version_lookup(spark.createDataFrame([], f"{key} string, valid_from timestamp, valid_to timestamp, {sk} bigint"), key, sk)
        for dim, key, sk in (("dim_provider", "npi", "provider_sk"), ("dim_patient", "patient_token", "patient_sk"))
    }
    providers, patients = lookups["dim_provider"], lookups["dim_patient"]
    buckets = config.npi_buckets

    # An encounter's cost and patient come from other tables: rebuild encounters whose procedures
    # are new, and procedures whose encounter is new.
    encounter_keys = new["encounters"].select("encounter_key").unionByName(new["procedures"].select("encounter_key"))
    encounters = full["encounters"].join(encounter_keys, "encounter_key", "left_semi")
    procedures_new = new["procedures"].unionByName(
        full["procedures"].join(new["encounters"].select("encounter_key"), "encounter_key", "left_semi")
    ).dropDuplicates(["procedure_key"])
    batches = {
        "fact_encounter": build_fact_encounter(
            encounters, full["procedures"].join(encounter_keys, "encounter_key", "left_semi"), providers, patients, buckets
        ),
        "fact_procedure": build_fact_procedure(
            procedures_new, full["encounters"].join(procedures_new.select("encounter_key"), "encounter_key", "left_semi"),
            providers, patients, buckets,
        ),
        "fact_claim": build_fact_claim(new["claims"], providers, patients, buckets),
        "fact_referral": build_fact_referral(new["referrals"], providers, patients, buckets),
    }
    event_dates = []
    for name, batch in batches.items():
        batch = coarsen_dates(batch, grain).localCheckpoint(eager=True)
        rows = batch.count()
        result = upsert_fact(tables, curated[name], batch, list(FACTS[name].business_key), commit_metadata=meta, rows=rows)
        _record(summary, name, curated[name], rows, rows, result, tables)
        event_dates.append(batch.select(F.col(EVENT_DATES[name]).alias("date")))

    _rebuild_dim_date(spark, config, tables, curated["dim_date"], reduce(DataFrame.unionByName, event_dates), summary, meta)

    log_rows = [(entity, batch_id, run_id, datetime.now(timezone.utc)) for entity, batch_id in new_batches]
    result = tables.write(spark.createDataFrame(log_rows, BATCH_LOG_SCHEMA), log_uri, mode="append", commit_metadata=meta)
    summary.tables[log_uri] = result.version
    summary.notes.insert(0, f"{len(new_batches)} new processed batch(es) modelled")
    return summary.finish()


def _with_history(tables: DeltaTables, config: Config, entity: str, latest: DataFrame) -> DataFrame:
    """A dimension's input rows: the latest processed rows and every version of the entity's
    history table (:mod:`carelake.process.history`), so the SCD2 plan sees each state a batch
    carried, not only its last. The latest rows are versions of the history too (the planner
    drops the repeats); they are read as well so that tables processed before the history
    table existed still model. Other entities: ``latest`` unchanged."""
    history = history_table(entity)
    uri = table_uri(config, "processed", history) if history else None
    if uri is None or not tables.exists(uri):
        return latest
    return latest.unionByName(tables.read(uri, version=tables.version(uri)).select(*latest.columns))


def _sync_persons(
    spark: SparkSession, config: Config, tables: DeltaTables, key: bytes, summary: StageSummary, meta: dict[str, str],
) -> int:
    """Sync ``curated/patient_enterprise_tokens`` with the processed patients and the links (read
    only when matching is enabled); the rows written."""
    patients_uri = table_uri(config, "processed", "patients")
    uri = table_uri(config, "curated", ENTERPRISE_TOKENS_TABLE)
    if not tables.exists(patients_uri):
        return 0
    links_uri = table_uri(config, "processed", MATCHING_TABLES[0])
    links = None
    if MatchSettings.from_config(config).enabled and tables.exists(links_uri):
        links = tables.read(links_uri, version=tables.version(links_uri))
    else:
        summary.notes.append("no patient links (matching off or not run): each patient record is its own person")
    fresh = enterprise_tokens(tables.read(patients_uri, version=tables.version(patients_uri)), links, key)
    written, result = sync_enterprise_tokens(tables, uri, fresh, commit_metadata=meta)
    counts = summary.counts(ENTERPRISE_TOKENS_TABLE)
    counts.rows_in = counts.rows_valid = fresh.count()
    counts.rows_written = written
    counts.delta_version = tables.version(uri) if tables.exists(uri) else None
    if result is not None:
        summary.tables[uri] = tables.version(uri)
    return written


def _rebuild_dim_date(
    spark: SparkSession, config: Config, tables: DeltaTables, uri: str, event_dates: DataFrame,
    summary: StageSummary, meta: dict[str, str],
) -> None:
    """Overwrite ``dim_date`` when the events reach outside the years it covers; else leave it."""
    dates = event_dates
    if tables.exists(uri):
        dates = dates.unionByName(tables.read(uri).select("date"))
    span = date_span(dates, "date").collect()[0]
    counts = summary.counts("dim_date")
    if span["start_date"] is None:
        return
    if tables.exists(uri):
        have = tables.read(uri).agg(F.min("date").alias("lo"), F.max("date").alias("hi")).collect()[0]
        if (have["lo"], have["hi"]) == (span["start_date"], span["end_date"]):
            counts.delta_version = tables.version(uri)
            return
    fiscal_start = int(config.section("model").get("fiscal_year_start_month", DEFAULT_FISCAL_START_MONTH))
    dim_date = build_dim_date(spark.createDataFrame([tuple(span)], "start_date date, end_date date"), fiscal_start)
    result = tables.write(dim_date, uri, mode="overwrite", commit_metadata=meta)
    counts.rows_in = counts.rows_valid = counts.rows_written = dim_date.count()
    counts.delta_version = summary.tables[uri] = result.version
