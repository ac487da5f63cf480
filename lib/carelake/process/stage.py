"""The process stage: raw batches -> conformed, validated, de-duplicated ``processed/<entity>``.

Per entity, in dependency order (``ENTITY_ORDER``): read only the raw batches not yet
processed, conform every configured source system, apply the row rules and the referential
rules (against the processed tables, which by then hold this run's valid rows of the entities
referenced), quarantine failing rows, drop duplicates, validate the result with the entity's
Great Expectations suite, merge it by business key, then record the batches as processed.

Tables written: ``processed/<entity>`` (merge), ``processed/<entity>_history`` for the entities
behind a dimension (merge: the row each source file states per key, :mod:`carelake.process.history`),
``processed/_quarantine`` (append),
``processed/_batches`` (append: entity, batch_id, rows, run_id, processed_at). GX results go
to ``<root>/_runs/<run_id>/gx/<entity>.json`` and data docs to ``<root>/_quality/data_docs``.

Config read (section ``quality``): ``max_quarantine_rate`` (default 0.25),
``entities.<entity>.max_quarantine_rate``, and ``great_expectations`` (default true).
A breached quarantine rate or a failed suite makes the stage ``failed``; valid rows are
written either way.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import reduce
from typing import TYPE_CHECKING

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from carelake.config import Config, SourceSystem
from carelake.delta import DeltaTables, MergeSpec, Rows
from carelake.privacy.restricted import restricted_table, split_identifiers
from carelake.process.history import file_versions, history_keys, history_table
from carelake.quality.quarantine import (
    DUPLICATE,
    failed_rows,
    mark_duplicates,
    max_quarantine_rate,
    quarantine_records,
    unconfigured_rows,
    valid_rows,
)
from carelake.quality.rules import (
    ENTITY_ORDER,
    FAILED_RULES,
    check_references,
    check_rows,
    entity_rules,
)
from carelake.run import StageSummary
from carelake.sources import fhir
from carelake.sources.canonical import BUSINESS_KEYS, canonical_schema
from carelake.sources.conform import CORRUPT_RECORD, RAW_PAYLOAD, canonical_columns, conform
from carelake.storage import filesystem_for, is_remote, join_uri, table_uri

if TYPE_CHECKING:
    from carelake.quality.gx import SuiteOutcome, SuiteRunner

log = logging.getLogger(__name__)

# A version that arrives in a later batch but is older at the source must not replace a newer one.
QUARANTINE_TABLE = "_quarantine"
BATCHES_TABLE = "_batches"

BATCHES_SCHEMA = StructType(
    [
        StructField("entity", StringType(), False),
        StructField("batch_id", StringType(), False),
        StructField("rows", LongType(), False),
        StructField("run_id", StringType(), False),
        StructField("processed_at", TimestampType(), False),
    ]
)


def run_process(spark: SparkSession, config: Config, tables: DeltaTables, run_id: str) -> StageSummary:
    """Process every raw batch not processed yet; returns the stage summary.

    Per entity: rows_in (new raw rows) = rows_valid + rows_quarantined + duplicates_dropped,
    rows_written = rows merged into ``processed/<entity>``. A re-run with no new raw batches
    writes nothing and returns status ``nothing-to-do``.
    """
    summary = StageSummary("process")
    batches_uri = table_uri(config, "processed", BATCHES_TABLE)
    done: dict[str, set[str]] = {}
    if tables.exists(batches_uri):
        # One row per processed batch: a short list, read once for every entity.
        for row in tables.read(batches_uri).select("entity", "batch_id").collect():
            done.setdefault(row["entity"], set()).add(row["batch_id"])
    validate = bool(config.section("quality").get("great_expectations", True))
    suites: SuiteRunner | None = None
    failed = False
    for entity in ENTITY_ORDER:
        new = _new_raw_rows(tables, config, entity, done)
        if new is None:
            continue
        if validate and suites is None:
            # Imported only here: Great Expectations takes seconds to import, and a run with
            # the suites off (or with nothing to process) does not need it.
            from carelake.quality.gx import SuiteRunner

            suites = SuiteRunner(_docs_dir(config, summary))
        failed |= _process_entity(spark, config, tables, run_id, entity, new, suites, summary)
    if not summary.entities:
        summary.notes.append("no new raw batches to process")
        return summary.finish("nothing-to-do")
    return summary.finish("failed" if failed else "ok")


@dataclass(frozen=True)
class _NewRows:
    raw: DataFrame
    batch_rows: dict[str, int]  # batch id -> rows
    senders: set[str]  # source systems with rows in those batches


def _new_raw_rows(tables: DeltaTables, config: Config, entity: str, done: dict[str, set[str]]) -> _NewRows | None:
    """The raw rows of ``entity`` in batches not processed yet (``done``: entity -> processed
    batch ids), or None when there are none."""
    raw_uri = table_uri(config, "raw", entity)
    if not tables.exists(raw_uri):
        return None
    raw = tables.read(raw_uri)
    if done.get(entity):
        # A filter on the listed ids, not a join with the batches table: no shuffle or broadcast.
        # Rows.column() is one call into the JVM however long the list grows (a stream adds a
        # batch every trigger); Column.isin would be one call per id.
        raw = raw.where(F.col("_batch_id").isNull() | ~Rows.where(_batch_id=sorted(done[entity])).column())
    per_batch = raw.groupBy("_batch_id", "_source_system").count().collect()
    if not per_batch:
        return None
    batch_rows: Counter[str] = Counter()
    for row in per_batch:
        batch_rows[row["_batch_id"]] += row["count"]
    return _NewRows(raw, dict(batch_rows), {row["_source_system"] for row in per_batch})


def _process_entity(
    spark: SparkSession,
    config: Config,
    tables: DeltaTables,
    run_id: str,
    entity: str,
    new: _NewRows,
    suites: SuiteRunner | None,
    summary: StageSummary,
) -> bool:
    """Check, quarantine, de-duplicate, validate and merge one entity's new rows; True when it failed."""
    counts = summary.counts(entity)
    counts.rows_in = sum(new.batch_rows.values())
    log.info("process %s: %d new row(s) in %d batch(es)", entity, counts.rows_in, len(new.batch_rows))
    checked = _check(spark, config, tables, new.raw, entity, new.senders).persist(StorageLevel.MEMORY_AND_DISK)
    bad = failed_rows(checked)
    marked = mark_duplicates(valid_rows(checked), entity).persist(StorageLevel.MEMORY_AND_DISK)
    kinds, reasons, counts.rows_quarantined = _tally(marked, bad)
    counts.rows_valid = kinds.get(None, 0)
    counts.duplicates_dropped = kinds["exact"] + kinds["conflict"]
    failed = not counts.reconciles
    if failed:
        summary.notes.append(f"{entity}: counts do not reconcile: {counts}")
    metadata = {"carelake.run_id": run_id, "carelake.batches": json.dumps(sorted(new.batch_rows))}

    if counts.rows_valid:
        kept = canonical_columns(marked.where(F.col(DUPLICATE).isNull()), entity)
        if suites is not None:
            failed |= not _validate(suites, kept, entity, config, run_id, summary)
        # A late, older record of a key never overwrites the newer one already stored.
        spec = MergeSpec(BUSINESS_KEYS[entity], update_if_newer="updated_at" if "updated_at" in kept.columns else None)
        history = history_table(entity)
        if history is not None:
            _merge_history(tables, config, marked, entity, history, metadata, summary)
        kept, identifiers = split_identifiers(kept, entity)
        if identifiers is not None:
            # Direct identifiers go to their restricted table first: a crash between the two
            # merges leaves the batch unrecorded, and the rerun's merges are idempotent.
            pii_uri = table_uri(config, "processed", restricted_table(entity))
            summary.tables[pii_uri] = tables.merge(identifiers, pii_uri, spec, commit_metadata=metadata).version
        uri = table_uri(config, "processed", entity)
        result = tables.merge(kept, uri, spec, commit_metadata=metadata)
        counts.rows_written = counts.rows_valid
        counts.delta_version = summary.tables[uri] = result.version
    else:
        summary.notes.append(f"{entity}: no valid rows in this batch")
    uri = table_uri(config, "processed", QUARANTINE_TABLE)
    _forget_unrecorded_quarantine(tables, uri, entity, new.batch_rows)
    if counts.rows_quarantined:
        summary.tables[uri] = tables.write(quarantine_records(bad, entity, run_id), uri, mode="append", commit_metadata=metadata).version
    # Recorded last: a run that died before this point left the batches unrecorded, so they are
    # processed again; the merge is idempotent and their earlier quarantine rows were removed above.
    uri = table_uri(config, "processed", BATCHES_TABLE)
    summary.tables[uri] = tables.write(_batches_frame(spark, entity, new.batch_rows, run_id), uri, mode="append", commit_metadata=metadata).version

    failed |= _note_entity(summary, entity, config.section("quality"), reasons, kinds)
    marked.unpersist()
    checked.unpersist()
    return failed


def _merge_history(
    tables: DeltaTables, config: Config, marked: DataFrame, entity: str, table: str, metadata: dict[str, str], summary: StageSummary,
) -> None:
    """Merge the row each source file states per key (of the valid rows, superseded ones
    included) into ``processed/<table>``, without direct identifiers; note how many versions."""
    versions, _ = split_identifiers(file_versions(canonical_columns(marked, entity), entity), entity)
    versions = versions.localCheckpoint(eager=True)  # counted, then merged: computed once
    uri = table_uri(config, "processed", table)
    summary.tables[uri] = tables.merge(versions, uri, MergeSpec(history_keys(entity)), commit_metadata=metadata).version
    summary.notes.append(f"{entity}: {versions.count()} version(s) by source file kept in {table}")


def _tally(marked: DataFrame, bad: DataFrame) -> tuple[Counter, Counter, int]:
    """(rows per duplicate kind among ``marked``, rows per failed rule among ``bad``, rows in
    ``bad``) in one query: a query each cost its own jobs, and both read the same checked rows."""
    kind, rules = F.col(DUPLICATE).alias("kind"), F.col(FAILED_RULES).alias("rules")
    groups = (
        marked.select(F.lit(True).alias("valid"), kind, F.lit(None).cast(bad.schema[FAILED_RULES].dataType).alias("rules"))
        .unionByName(bad.select(F.lit(False).alias("valid"), F.lit(None).cast("string").alias("kind"), rules))
        .groupBy("valid", "kind", "rules").count().collect()
    )
    kinds, reasons, quarantined = Counter(), Counter(), 0
    for group in groups:
        if group["valid"]:
            kinds[group["kind"]] += group["count"]
        else:
            quarantined += group["count"]
            for reason in group["rules"]:
                reasons[reason] += group["count"]
    return kinds, reasons, quarantined


def _check(spark: SparkSession, config: Config, tables: DeltaTables, raw: DataFrame, entity: str, senders: set[str]) -> DataFrame:
    """Conform the raw rows of each configured system among ``senders`` and apply all rules.

    Only systems with rows in the batch are conformed: the raw table has columns only for
    systems that have sent files so far.
    """
    systems = [s for s in config.sources.values() if entity in s.entities and s.name in senders]
    if systems:
        conformed = reduce(DataFrame.unionByName, (conform(_resolve(spark, config, tables, raw, s, entity), s, entity) for s in systems))
    else:
        extra = [StructField(RAW_PAYLOAD, StringType()), StructField(CORRUPT_RECORD, StringType())]
        conformed = spark.createDataFrame([], StructType([*canonical_schema(entity).fields, *extra]))
    checked = check_rows(conformed, entity)
    references = {}
    for ref in entity_rules(entity).references:
        uri = table_uri(config, "processed", ref.entity)
        references[ref.entity] = (
            tables.read(uri) if tables.exists(uri) else spark.createDataFrame([], StructType([StructField(ref.key, StringType())]))
        )
    checked = check_references(checked, entity, references)
    unknown = unconfigured_rows(raw, [s.name for s in systems])
    return checked.unionByName(unknown, allowMissingColumns=True)


def _resolve(spark: SparkSession, config: Config, tables: DeltaTables, raw: DataFrame, system: SourceSystem, entity: str) -> DataFrame:
    """``raw`` with a FHIR source's joined columns added and references replaced by the values
    they point to (joins on raw)."""
    mapping = system.entities[entity]
    if system.format != "fhir" or not (mapping.references or mapping.joined):
        return raw

    def raw_of(name: str, *columns: str) -> DataFrame:
        uri = table_uri(config, "raw", name)
        needed = ("_source_system", "_ingested_at", fhir.RESOURCE_ID, *columns)
        found = tables.read(uri) if tables.exists(uri) else None
        if found is None or not set(needed) <= set(found.columns):
            # Nothing of that entity has arrived from this source yet: every reference is unresolved.
            found = spark.createDataFrame([], StructType([StructField(c, TimestampType() if c == "_ingested_at" else StringType()) for c in needed]))
        return found

    if mapping.joined:
        sources = {j.entity: raw_of(j.entity, *{c for k in mapping.joined.values() if k.entity == j.entity for c in (k.column, k.by)})
                   for j in mapping.joined.values()}
        raw = fhir.join_referencing(raw, system, mapping, sources)
    targets = {name: raw_of(name, column) for name, column in (t.split(".") for t in mapping.references.values())}
    return fhir.resolve_references(raw, system, mapping, targets)


def _forget_unrecorded_quarantine(tables: DeltaTables, uri: str, entity: str, batch_rows: dict[str, int]) -> None:
    """Delete quarantine rows of these (not yet recorded) batches left by an interrupted run."""
    if not tables.exists(uri):
        return
    rows = Rows.where(entity=[entity], batch_id=sorted(batch_rows))
    if not tables.read(uri).where(rows.column()).isEmpty():
        tables.delete(uri, rows)


def _validate(suites: SuiteRunner, kept: DataFrame, entity: str, config: Config, run_id: str, summary: StageSummary) -> bool:
    """Run the entity's suite, save GX's result with the run, note the outcome; True when it passed."""
    outcome: SuiteOutcome = suites.validate(kept, entity)
    _write_json(join_uri(config.root, "_runs", run_id, "gx", f"{entity}.json"), outcome.result, config)
    verdict = "passed" if outcome.success else "FAILED " + ", ".join(outcome.failed)
    summary.notes.append(f"{entity}: expectation suite {verdict} ({outcome.seconds:.1f} s)")
    return outcome.success


def _note_entity(summary: StageSummary, entity: str, quality: dict, reasons: Counter, kinds: Counter) -> bool:
    """Add the entity's held-back rows to the notes; True when its quarantine rate breaches the limit."""
    counts = summary.counts(entity)
    if kinds["conflict"]:
        summary.notes.append(f"{entity}: {kinds['conflict']} conflicting version(s) lost to a later one (counted in duplicates_dropped)")
    if not counts.rows_quarantined:
        return False
    rate, limit = counts.rows_quarantined / counts.rows_in, max_quarantine_rate(quality, entity)
    top = ", ".join(f"{name} {n}" for name, n in reasons.most_common())
    summary.notes.append(f"{entity}: {counts.rows_quarantined} of {counts.rows_in} row(s) quarantined ({rate:.1%}; {top})")
    if rate > limit:
        summary.notes.append(f"{entity}: quarantine rate {rate:.1%} exceeds quality max_quarantine_rate {limit:.1%}")
        return True
    return False


def _docs_dir(config: Config, summary: StageSummary) -> str | None:
    if is_remote(config.root):
        summary.notes.append("GX data docs are built only for a local lakehouse root; results are still saved per run")
        return None
    _, path = filesystem_for(join_uri(config.root, "_quality", "data_docs"), config)
    return path


def _batches_frame(spark: SparkSession, entity: str, batch_rows: dict[str, int], run_id: str) -> DataFrame:
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return spark.createDataFrame([(entity, b, n, run_id, now) for b, n in sorted(batch_rows.items())], BATCHES_SCHEMA)


def _write_json(uri: str, payload: dict, config: Config) -> None:
    filesystem, path = filesystem_for(uri, config)
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with filesystem.open_output_stream(path) as out:
        out.write(json.dumps(payload, indent=2, default=str).encode("utf-8"))

