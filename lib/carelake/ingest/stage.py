"""The ingest stage: find new landing files, read them, append to ``raw/<entity>``.

Every file is matched to its source system and entity by the config's path globs. A file
already ingested (same name and SHA-256, per the ingest log) is skipped; a file that cannot be
read at all is logged as rejected with its reason and the rest of the batch goes on. Each raw
append commits the batch's file list in its commit metadata, so a crash between the raw append
and the ingest-log append is repaired on the next run instead of ingesting those files twice.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import reduce
from urllib.parse import unquote, urlparse

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from carelake.config import Config, SourceEntity, SourceSystem
from carelake.delta import DeltaTables
from carelake.ingest.drift import schema_change, schema_policy
from carelake.ingest.fhir_read import BUNDLE, NDJSON, read_fhir_files
from carelake.ingest.read import read_source_files, with_raw_metadata
from carelake.ingest.sniff import sniff_file
from carelake.run import StageSummary
from carelake.storage import FileInfo, list_files, read_head, sha256_of, table_uri

log = logging.getLogger(__name__)

INGEST_LOG_TABLE = "_ingest_log"
FILES_METADATA_KEY = "carelake.files"

INGEST_LOG_SCHEMA = StructType(
    [
        StructField("file_name", StringType(), False),
        StructField("file_uri", StringType(), False),
        StructField("sha256", StringType(), False),
        StructField("size_bytes", LongType(), False),
        StructField("source_system", StringType(), False),
        StructField("entity", StringType(), False),
        StructField("status", StringType(), False),  # ingested | rejected
        StructField("reason", StringType(), True),
        StructField("rows", LongType(), True),
        StructField("batch_id", StringType(), False),
        StructField("logged_at", TimestampType(), False),
    ]
)


@dataclass(frozen=True)
class LandedFile:
    """A new landing file, where it belongs, and what sniffing found."""

    info: FileInfo
    sha256: str
    system: SourceSystem
    entity: SourceEntity
    columns: tuple[str, ...]
    reason: str | None


def discover(config: Config) -> list[tuple[FileInfo, SourceSystem, SourceEntity]]:
    """Every landing file matched by a configured path glob, with its system and entity."""
    found = []
    for system in config.sources.values():
        bundles = list_files(config.landing, system.bundles, config) if system.bundles else []
        for entity in system.entities.values():
            found.extend((info, system, entity) for info in list_files(config.landing, entity.path, config))
            # A FHIR Bundle holds resources of several entities: each entity reads its own from it.
            found.extend((info, system, entity) for info in bundles)
    return found


def _already_logged(spark: SparkSession, tables: DeltaTables, log_uri: str) -> set[tuple[str, str, str]]:
    """(file name, SHA-256, entity) of every logged file: a FHIR Bundle is logged once per entity."""
    if not tables.exists(log_uri):
        return set()
    rows = tables.read(log_uri).select("file_name", "sha256", "entity").distinct().collect()
    return {(r.file_name, r.sha256, r.entity) for r in rows}


def _log_frame(spark: SparkSession, entries: list[dict]) -> DataFrame:
    return spark.createDataFrame(entries, INGEST_LOG_SCHEMA)


def _repair_log(spark: SparkSession, config: Config, tables: DeltaTables, logged: set[tuple[str, str, str]]) -> list[dict]:
    """Log entries for files a crashed run appended to raw but never logged."""
    repaired = []
    for entity in {e for s in config.sources.values() for e in s.entities}:
        uri = table_uri(config, "raw", entity)
        if not tables.exists(uri):
            continue
        unlogged = [
            entry
            for commit in tables.history(uri)
            for entry in json.loads(commit["metadata"].get(FILES_METADATA_KEY) or "[]")
            if (entry["file_name"], entry["sha256"], entry["entity"]) not in logged
        ]
        if not unlogged:
            continue
        raw = tables.read(uri)
        # A batch whose rows were deleted (rolled back) is not to be repaired: its files are new again.
        present = {r["_batch_id"] for r in raw.select("_batch_id").distinct().collect()}
        rows: dict[str, dict[str, int]] = {}
        for entry in unlogged:
            batch = entry["batch_id"]
            if batch in present and (entry["file_name"], entry["sha256"], entry["entity"]) not in logged:
                if batch not in rows:
                    rows[batch] = _rows_per_file(raw, batch)
                repaired.append({**entry, "rows": rows[batch].get(entry["file_uri"], 0), "logged_at": datetime.now(timezone.utc)})
                logged.add((entry["file_name"], entry["sha256"], entry["entity"]))
    return repaired


def run_ingest(
    spark: SparkSession, config: Config, tables: DeltaTables, run_id: str, only_files: Collection[str] | None = None
) -> StageSummary:
    """Ingest every new landing file into ``raw/<entity>``; returns the stage summary.

    ``only_files`` (landing file URIs, ``file:`` or plain paths) narrows the search to those
    files, as a stream's micro-batch does; the ingest log's rules hold either way. Counts per
    entity: rows_in = rows_valid = rows_written (raw keeps every row); rejected files are listed
    in the notes and in the ingest log.
    """
    summary = StageSummary("ingest")
    batch_id = run_id
    now = datetime.now(timezone.utc)
    log_uri = table_uri(config, "raw", INGEST_LOG_TABLE)
    logged = _already_logged(spark, tables, log_uri)
    entries = _repair_log(spark, config, tables, logged)
    if entries:
        summary.notes.append(f"repaired the ingest log for {len(entries)} file(s) of an interrupted run")

    new_files: list[LandedFile] = []
    skipped = 0
    wanted = None if only_files is None else {_same_file_key(u) for u in only_files}
    for info, system, entity in discover(config):
        if wanted is not None and _same_file_key(info.uri) not in wanted:
            continue
        digest = sha256_of(info.uri, config)
        if (info.relative_path, digest, entity.entity) in logged:
            skipped += 1
            continue
        sniffed = sniff_file(read_head(info.uri, config), info.size, system, entity)
        new_files.append(LandedFile(info, digest, system, entity, sniffed.columns, sniffed.reason))
    log.info("ingest: %d new file(s), %d already ingested", len(new_files), skipped)
    new_files, held = _hold_schema_changes(new_files, schema_policy(config), summary)

    by_entity: dict[str, list[LandedFile]] = defaultdict(list)
    for landed in new_files:
        if landed.reason:
            summary.notes.append(f"rejected {landed.info.relative_path}: {landed.reason}")
            entries.append(_entry(landed, "rejected", landed.reason, None, batch_id, now))
        else:
            by_entity[landed.entity.entity].append(landed)

    for entity_name, files in sorted(by_entity.items()):
        counts = summary.counts(entity_name)
        frame = _read_entity(spark, config, files, batch_id, now)
        file_meta = [_entry(f, "ingested", None, None, batch_id, now) for f in files]
        uri = table_uri(config, "raw", entity_name)
        result = tables.write(
            frame,
            uri,
            mode="append",
            schema_mode="merge",
            commit_metadata={
                "carelake.run_id": run_id,
                "carelake.batch_id": batch_id,
                FILES_METADATA_KEY: json.dumps([{k: v for k, v in e.items() if k != "logged_at"} for e in file_meta], default=str),
            },
        )
        per_file = _rows_per_file(tables.read(uri), batch_id)
        for entry, landed in zip(file_meta, files, strict=True):
            entry["rows"] = per_file.get(landed.info.uri, 0)
        written = sum(e["rows"] for e in file_meta)
        counts.rows_in = counts.rows_valid = counts.rows_written = written
        counts.delta_version = result.version
        summary.tables[uri] = result.version
        entries.extend(file_meta)

    if entries:
        result = tables.write(_log_frame(spark, entries), log_uri, mode="append",
                              commit_metadata={"carelake.run_id": run_id})
        summary.tables[log_uri] = result.version
    rejected = sum(1 for f in new_files if f.reason)
    summary.notes.insert(
        0, f"{len(new_files) - rejected} file(s) ingested, {rejected} rejected, {held} held, {skipped} already ingested"
    )
    max_rate = float(config.section("ingest").get("max_rejected_file_rate", 1.0))
    if not new_files and not held:
        return summary.finish("nothing-to-do")
    # Held files count as rejected here: a run that could ingest too little of what came fails.
    share = (rejected + held) / (len(new_files) + held)
    if share > max_rate or (held and rejected == len(new_files)):
        summary.notes.append(f"rejected or held file share {share:.0%} exceeds ingest.max_rejected_file_rate {max_rate:.0%}"
                             if share > max_rate else "nothing could be ingested: every new file was rejected or held")
        return summary.finish("failed")
    return summary.finish()


def _hold_schema_changes(files: list[LandedFile], policy: dict[str, str], summary: StageSummary) -> tuple[list[LandedFile], int]:
    """Take out every file of a source entity with a breaking schema change in any of its new files.

    Returns the files that go on and how many were held; the notes say which and why.
    Held files are not logged, so the next run looks at them again.
    """
    problems: dict[tuple[str, str], list[str]] = defaultdict(list)
    for landed in files:
        if landed.reason:
            continue
        change = schema_change(landed.columns, landed.system, landed.entity)
        problem = change.breaking(policy)
        if problem:
            problems[(landed.system.name, landed.entity.entity)].append(f"{landed.info.relative_path}: {problem}")
        elif change.added:
            summary.notes.append(f"{landed.info.relative_path}: new column(s) {', '.join(change.added)} kept in raw, not mapped")
    kept, held = [], 0
    for landed in files:
        if (landed.system.name, landed.entity.entity) in problems and not landed.reason:
            held += 1
        else:
            kept.append(landed)
    for (system, entity), found in sorted(problems.items()):
        count = sum(1 for f in files if (f.system.name, f.entity.entity) == (system, entity) and not f.reason)
        summary.notes.append(
            f"held {system}/{entity} ({count} new file(s), none ingested): breaking schema change - {'; '.join(found)}. "
            f"Fix the files or sources.{system}.entities.{entity}.columns; held files are ingested by the next run after."
        )
        log.warning("ingest: held %s/%s: %s", system, entity, "; ".join(found))
    return kept, held


def _entry(landed: LandedFile, status: str, reason: str | None, rows: int | None, batch_id: str, now: datetime) -> dict:
    return {
        "file_name": landed.info.relative_path,
        "file_uri": landed.info.uri,
        "sha256": landed.sha256,
        "size_bytes": landed.info.size,
        "source_system": landed.system.name,
        "entity": landed.entity.entity,
        "status": status,
        "reason": reason,
        "rows": rows,
        "batch_id": batch_id,
        "logged_at": now,
    }


def _read_entity(spark: SparkSession, config: Config, files: list[LandedFile], batch_id: str, now: datetime) -> DataFrame:
    """One DataFrame for all new files of an entity: one read per (system, header) group."""
    groups: dict[tuple[str, tuple[str, ...]], list[LandedFile]] = defaultdict(list)
    for landed in files:
        groups[(landed.system.name, landed.columns)].append(landed)
    frames = []
    for (_, columns), group in sorted(groups.items()):
        system = group[0].system
        if system.format == "fhir":
            kinds = [(f.info.uri, BUNDLE if system.bundles and fnmatch.fnmatchcase(f.info.relative_path, system.bundles) else NDJSON)
                     for f in group]
            raw = read_fhir_files(spark, config, system, group[0].entity, kinds)
        else:
            raw = read_source_files(spark, config, system, columns, [f.info.uri for f in group])
        frames.append(with_raw_metadata(raw, system.name, batch_id, now))
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), frames)


def _rows_per_file(raw: DataFrame, batch_id: str) -> dict[str, int]:
    rows = raw.where(F.col("_batch_id") == batch_id).groupBy("_source_file").count().collect()
    return {_normalise_uri(r["_source_file"]): r["count"] for r in rows}


def _normalise_uri(uri: str) -> str:
    # Spark reports local files as file:/abs/path (URL-quoted); the landing listing uses plain paths.
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


def _same_file_key(uri: str) -> str:
    # One spelling per file whoever names it: Spark (file:/..., s3a://...) or the landing listing.
    uri = _normalise_uri(uri)
    return "s3://" + uri[len("s3a://"):] if uri.startswith("s3a://") else uri
