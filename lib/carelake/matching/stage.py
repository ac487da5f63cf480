"""The match stage: processed patient records -> enterprise patient ids, inside the restricted zone.

Reads ``processed/patients`` and the restricted ``processed/patients_pii`` (one pinned version
each), normalises the identifiers, links them with Splink (:mod:`carelake.matching.linkage`),
and writes two restricted tables:

- ``processed/patient_links_pii``: one row per ``patient_key`` with its ``enterprise_patient_id``
  (stable across runs, :mod:`carelake.matching.enterprise_ids`), when that id was issued, the
  cluster size and the id it replaced; merged, only rows that changed;
- ``processed/patient_match_pairs_pii``: every scored pair at or above ``review_threshold``
  with its match weight, probability, comparison levels (``gamma_*``) and ``decision``, replaced
  each run (earlier decisions stay readable by Delta time travel), stamped with the run id.

Neither table holds a name, SSN or phone: they hold keys, scores and levels, and are restricted
because they tell which records are one person. Curated tables get only a keyed token of the
enterprise id (the model stage). A run whose input versions are those of the last match writes
nothing (status ``nothing-to-do``); ``matching.enabled: false`` skips the stage.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carelake.config import Config
from carelake.delta import DeltaTables, MergeSpec
from carelake.matching.enterprise_ids import ENTERPRISE_ID, LINK_COLUMNS, assign_enterprise_ids
from carelake.matching.identifiers import nickname_table, normalised_identifiers
from carelake.matching.linkage import MATCH, REVIEW, MatchSettings, link_records
from carelake.privacy.restricted import MATCHING_TABLES
from carelake.run import StageSummary
from carelake.storage import table_uri

log = logging.getLogger(__name__)

LINKS_TABLE, PAIRS_TABLE = MATCHING_TABLES
INPUT_VERSIONS = "carelake.match_inputs"  # commit metadata of the pairs table: the versions matched
LINKS_SCHEMA = (f"patient_key string, {ENTERPRISE_ID} string, id_issued_at timestamp, cluster_size int, "
                "previous_enterprise_patient_id string")


def changed_links(links: DataFrame, existing: DataFrame) -> DataFrame:
    """The rows of ``links`` that are new or differ from ``existing`` (same columns)."""
    return links.select(*LINK_COLUMNS).exceptAll(existing.select(*LINK_COLUMNS))


def run_match(spark: SparkSession, config: Config, tables: DeltaTables, run_id: str) -> StageSummary:
    """Match the processed patient records; returns the ``match`` stage summary.

    Counts: ``patient_links_pii`` rows_in = records matched, rows_written = links new or changed;
    ``patient_match_pairs_pii`` rows_in = rows_written = pairs kept."""
    summary = StageSummary("match")
    settings = MatchSettings.from_config(config)
    if not settings.enabled:
        summary.notes.append("matching.enabled is false: enterprise patient ids are not assigned")
        return summary.finish("nothing-to-do")
    patients_uri, pii_uri = table_uri(config, "processed", "patients"), table_uri(config, "processed", "patients_pii")
    if not (tables.exists(patients_uri) and tables.exists(pii_uri)):
        summary.notes.append("no processed patients yet")
        return summary.finish("nothing-to-do")
    links_uri, pairs_uri = table_uri(config, "processed", LINKS_TABLE), table_uri(config, "processed", PAIRS_TABLE)
    versions = f"patients={tables.version(patients_uri)},patients_pii={tables.version(pii_uri)}"
    if tables.exists(pairs_uri) and tables.exists(links_uri):
        last = tables.history(pairs_uri, limit=1)
        if last and last[0].get("metadata", {}).get(INPUT_VERSIONS) == versions:
            summary.notes.append(f"patients already matched at {versions}")
            return summary.finish("nothing-to-do")

    started = time.monotonic()
    identifiers = normalised_identifiers(
        tables.read(patients_uri, version=tables.version(patients_uri)), tables.read(pii_uri, version=tables.version(pii_uri)),
        nickname_table(spark),
    ).localCheckpoint(eager=True)
    records = identifiers.count()
    linkage = link_records(spark, identifiers, settings)
    summary.notes.extend(linkage.notes)
    existing = tables.read(links_uri) if tables.exists(links_uri) else spark.createDataFrame([], LINKS_SCHEMA)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    links = assign_enterprise_ids(linkage.clusters, existing, now).localCheckpoint(eager=True)
    meta = {"carelake.run_id": run_id, "carelake.stage": "match", INPUT_VERSIONS: versions}

    changed = changed_links(links, existing).localCheckpoint(eager=True)
    counts = summary.counts(LINKS_TABLE)
    counts.rows_in = counts.rows_valid = records
    counts.rows_written = changed.count()
    if counts.rows_written:
        result = tables.merge(changed, links_uri, MergeSpec(("patient_key",)), commit_metadata=meta)
        counts.delta_version = summary.tables[links_uri] = result.version
    else:
        counts.delta_version = tables.version(links_uri) if tables.exists(links_uri) else None

    pairs = linkage.pairs.select("*", F.lit(run_id).alias("run_id"), F.lit(now).cast("timestamp").alias("scored_at"))
    decided = {r["decision"]: r["count"] for r in pairs.groupBy("decision").count().collect()}
    counts = summary.counts(PAIRS_TABLE)
    counts.rows_in = counts.rows_valid = counts.rows_written = sum(decided.values())
    result = tables.write(pairs, pairs_uri, mode="overwrite", schema_mode="merge", commit_metadata=meta)
    counts.delta_version = summary.tables[pairs_uri] = result.version

    sizes = {r["cluster_size"]: r["count"] for r in links.groupBy("cluster_size").count().collect()}
    people = sum(n / size for size, n in sizes.items())
    summary.notes.append(
        f"{records} patient record(s) -> {round(people)} enterprise patient(s) "
        f"({sum(n for s, n in sizes.items() if s > 1)} record(s) in clusters of 2 or more); "
        f"{decided.get(MATCH, 0)} matched pair(s), {decided.get(REVIEW, 0)} pair(s) for review; "
        f"Splink on {settings.backend} in {time.monotonic() - started:.1f} s")
    log.info("match: %s", summary.notes[-1])
    return summary.finish()
