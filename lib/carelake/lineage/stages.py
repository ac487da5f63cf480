"""What each pipeline stage reads and writes, gathered for its OpenLineage events.

Before a stage: the tables it reads and their current versions (the run holds the writer lock,
so these are the versions it reads). After it: the versions it wrote (from its summary), the
batches it wrote or consumed, the ingest log rows of its files, its row counts and expectation
results, and the column lineage the config declares (source column -> raw -> canonical).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from pyarrow.fs import FileType
from pyspark.sql import functions as F

from carelake.config import Config
from carelake.delta import DeltaTables
from carelake.lineage.events import (
    RowCountsFacet,
    SourceFilesFacet,
    StageFacts,
    column_lineage,
    gx_assertions,
    landing_folder,
    output_statistics,
    read_gx_result,
)
from carelake.run import StageSummary
from carelake.sources.naming import raw_column_name
from carelake.storage import filesystem_for, is_remote, join_uri, table_uri, to_local_path

# The tables each stage reads, as (zone, table); ingest reads the landing folders.
STAGE_READS: dict[str, tuple[tuple[str, str], ...]] = {
    "process": tuple(("raw", e) for e in ("providers", "patients", "encounters", "procedures", "claims", "referrals", "crm_activity")),
    "match": (("processed", "patients"), ("processed", "patients_pii")),
    "model": (*(("processed", e) for e in ("providers", "patients", "encounters", "procedures", "claims", "referrals")),
              ("processed", "patient_links_pii")),
    "aggregates": (
        ("curated", "fact_encounter"), ("curated", "fact_procedure"), ("curated", "fact_claim"),
        ("curated", "fact_referral"), ("curated", "dim_provider"), ("curated", "dim_patient"),
        ("processed", "crm_activity"), ("curated", "patient_enterprise_tokens"),
    ),
    "train": (("curated", "provider_features"), ("curated", "fact_encounter")),
    "score": (("curated", "provider_features"), ("curated", "fact_encounter")),
}
BATCH_LOGS = {"process": ("processed", "_batches"), "model": ("curated", "_model_batches")}
# The processed entity each model table is built from; its columns keep their names in curated.
MODEL_SOURCES = {
    "fact_encounter": "encounters", "fact_procedure": "procedures", "fact_claim": "claims",
    "fact_referral": "referrals", "dim_provider": "providers", "dim_patient": "patients",
}


def stage_inputs(config: Config, tables: DeltaTables, stage: str) -> dict[str, int | None]:
    """The inputs of ``stage`` that exist now, each with its current Delta version (None: a folder)."""
    if stage == "ingest":
        return {landing_folder(config, e.path): None for s in config.sources.values() for e in s.entities.values()}
    found: dict[str, int | None] = {}
    for zone, table in STAGE_READS.get(stage, ()):
        uri = table_uri(config, zone, table)
        if tables.exists(uri):
            found[uri] = tables.version(uri)
    if stage == "aggregates" and _area_population_file(config) is not None:
        found[area_population_folder(config)] = None
    return found


def area_population_folder(config: Config) -> str:
    """The landing folder of the reference file the aggregates stage reads (residents per area)."""
    from carelake.curated.stage import area_population_path

    return landing_folder(config, area_population_path(config))


def _area_population_file(config: Config) -> dict | None:
    """The reference file of residents per area as a ``carelake_sourceFiles`` entry (name, uri,
    sha256, bytes, data rows, status ``read``); None when it has not landed."""
    from carelake.curated.stage import area_population_path

    relative = area_population_path(config)
    uri = join_uri(config.landing if is_remote(config.landing) else to_local_path(config.landing), relative)
    filesystem, path = filesystem_for(uri, config)
    if filesystem.get_file_info(path).type != FileType.File:
        return None
    with filesystem.open_input_stream(path) as stream:
        content = stream.read()  # a few hundred short lines
    rows = sum(1 for line in content.splitlines()[1:] if line.strip())
    return {"name": relative.rsplit("/", 1)[-1], "uri": uri, "sha256": hashlib.sha256(content).hexdigest(),
            "sizeBytes": len(content), "rows": rows, "status": "read", "reason": None}


def stage_facts(config: Config, tables: DeltaTables, run_id: str, summary: StageSummary, inputs: dict[str, int | None]) -> StageFacts:
    """The lineage of one finished stage (see the module docstring)."""
    facts = StageFacts(stage=summary.stage, inputs=dict(inputs), outputs=dict(summary.tables))
    by_table = {uri.rstrip("/").rsplit("/", 1)[-1]: uri for uri in summary.tables}
    for name, counts in summary.entities.items():
        uri = by_table.get(name)
        if uri is None:
            continue
        facet = facts.output_facets.setdefault(uri, {})
        facet["outputStatistics"] = output_statistics(counts.rows_written)
        facet["carelake_rowCounts"] = RowCountsFacet(
            rowsIn=counts.rows_in, rowsValid=counts.rows_valid, rowsQuarantined=counts.rows_quarantined,
            duplicatesDropped=counts.duplicates_dropped, rowsWritten=counts.rows_written,
        )
    if summary.stage == "ingest":
        _ingest_facts(config, tables, run_id, facts)
    elif summary.stage == "process":
        _process_facts(config, run_id, summary, facts)
    elif summary.stage == "model":
        _model_facts(config, tables, facts)
    elif summary.stage == "aggregates":
        _aggregate_facts(config, facts)
    if summary.stage in BATCH_LOGS:
        uri = table_uri(config, *BATCH_LOGS[summary.stage])
        if uri in summary.tables:
            rows = tables.read(uri, version=summary.tables[uri]).where(F.col("run_id") == run_id).select("batch_id").distinct().collect()
            facts.batches = [r["batch_id"] for r in rows]
    return facts


def _ingest_facts(config: Config, tables: DeltaTables, run_id: str, facts: StageFacts) -> None:
    """The batch's files per landing folder (with checksums) and landing column -> raw column."""
    log_uri = table_uri(config, "raw", "_ingest_log")
    if log_uri not in facts.outputs:
        return
    facts.batches, facts.batch_action = [run_id], "written"
    entries = tables.read(log_uri, version=facts.outputs[log_uri]).where(F.col("batch_id") == run_id).collect()
    folders = {
        (system.name, entity.entity): landing_folder(config, entity.path)
        for system in config.sources.values()
        for entity in system.entities.values()
    }
    files: dict[str, list[dict]] = defaultdict(list)
    for row in entries:
        folder = folders.get((row["source_system"], row["entity"]))
        if folder is not None:
            files[folder].append({
                "name": row["file_name"], "uri": row["file_uri"], "sha256": row["sha256"], "sizeBytes": row["size_bytes"],
                "rows": row["rows"], "status": row["status"], "reason": row["reason"],
            })
    for folder, listed in files.items():
        facts.input_facets.setdefault(folder, {})["carelake_sourceFiles"] = SourceFilesFacet(files=sorted(listed, key=lambda f: f["name"]))
    ingested = {(r["source_system"], r["entity"]) for r in entries if r["status"] == "ingested"}
    sources: dict[str, dict[str, set[tuple[str, str]]]] = defaultdict(lambda: defaultdict(set))
    for system in config.sources.values():
        for entity in system.entities.values():
            if (system.name, entity.entity) not in ingested:
                continue
            folder = folders[(system.name, entity.entity)]
            for source_column in entity.columns.values():
                sources[entity.entity][raw_column_name(source_column)].add((folder, source_column))
    for entity, columns in sources.items():
        uri = table_uri(config, "raw", entity)
        if uri in facts.outputs:
            facts.output_facets.setdefault(uri, {})["columnLineage"] = column_lineage(columns, "read as text, renamed by the raw rule", "IDENTITY")


def _process_facts(config: Config, run_id: str, summary: StageSummary, facts: StageFacts) -> None:
    """Raw (source) column -> canonical column per processed table, and its GX results."""
    for entity in summary.entities:
        uri = table_uri(config, "processed", entity)
        if uri not in facts.outputs:
            continue
        raw_uri = table_uri(config, "raw", entity)
        columns: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for system in config.sources.values():
            mapped = system.entities.get(entity)
            if mapped is None:
                continue
            for canonical, source_column in mapped.columns.items():
                columns[canonical].add((raw_uri, raw_column_name(source_column)))
        facet = facts.output_facets.setdefault(uri, {})
        facet["columnLineage"] = column_lineage(columns, "conformed from the source system's mapping in the config")
        result = read_gx_result(config, run_id, entity)
        if result is not None:
            facet["dataQualityAssertions"] = gx_assertions(result)


def _model_facts(config: Config, tables: DeltaTables, facts: StageFacts) -> None:
    """Curated column <- the processed column of the same name (the model keeps names).

    Declared here because the model stage's localCheckpoint cuts the plans the Spark listener
    reads; a renamed or derived column (patient_token, encounter_cost, ...) gets no edge."""
    for table, entity in MODEL_SOURCES.items():
        uri, source = table_uri(config, "curated", table), table_uri(config, "processed", entity)
        if uri not in facts.outputs or not tables.exists(source):
            continue
        shared = set(tables.read(uri).columns) & set(tables.read(source).columns)
        columns = {c: [(source, c)] for c in shared}
        facts.output_facets.setdefault(uri, {})["columnLineage"] = column_lineage(columns, "carried over from processed by name", "IDENTITY")


def _aggregate_facts(config: Config, facts: StageFacts) -> None:
    """Each aggregate's column <- the columns it is computed from (the ``SOURCES`` declared beside
    each aggregate's code, :mod:`carelake.curated.column_sources`), and the reference file of
    residents per area with its checksum."""
    from carelake.curated.column_sources import AREA_POPULATION
    from carelake.curated.dictionary import SOURCES

    population = area_population_folder(config)
    if population in facts.inputs:
        listed = _area_population_file(config)
        if listed is not None:
            facts.input_facets.setdefault(population, {})["carelake_sourceFiles"] = SourceFilesFacet(files=[listed])

    def uri_of(label: str) -> str:
        return population if label == AREA_POPULATION else table_uri(config, *label.split("/", 1))

    for table, declared in SOURCES.items():
        uri = table_uri(config, "curated", table)
        if uri not in facts.outputs:
            continue
        columns = {column: [(uri_of(label), source) for label, source in inputs] for column, inputs in declared.items()}
        facts.output_facets.setdefault(uri, {})["columnLineage"] = column_lineage(
            columns, f"computed in the aggregates stage (SOURCES of {table})")
