"""The aggregates stage: curated facts and dimensions -> the curated aggregates and KPI marts.

Incremental: ``curated/_aggregate_state`` records the version of every input consumed and the
``as_of`` date used. A run compares the inputs' versions with it:

- nothing changed: nothing is written (status ``nothing-to-do``);
- first run, a new ``as_of`` (the 90/365-day windows moved) or an input history no longer
  readable (vacuumed): every table is rebuilt in full;
- else only what new facts touched is recomputed (``provider_outcomes`` excepted: its
  benchmarks span all providers, so it is recomputed whole and only differing rows written): the NPIs in changed fact, dim_provider or CRM
  rows (with their specialties' peers, whose benchmarks they move), the patients in changed
  rows, and the months of changed facts. Fresh rows are compared with the stored ones and only
  rows that differ are merged; rows that vanished from a recomputed scope are deleted.

Where each part lives: what changed since the consumed versions in :mod:`carelake.curated.changes`,
the consumed versions and ``as_of`` in :mod:`carelake.curated.state`, writing a table's fresh
rows in :mod:`carelake.curated.sync`, the measures in their own modules; this module wires them.

``as_of`` is ``curated.as_of`` from the config when set, else the latest event date in the facts
(capped at today, so a mistyped future date cannot move every window).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carelake.config import Config
from carelake.curated import kpi
from carelake.curated.adequacy import AdequacySettings, network_adequacy, read_area_population
from carelake.curated.changes import FACT_EVENT_DATES, changes_since
from carelake.curated.demand import network_demand_by_zip
from carelake.curated.features import provider_features
from carelake.curated.forecast import demand_forecast
from carelake.curated.outcomes import provider_outcomes, provider_outcomes_by_npi
from carelake.curated.patients import patient_summary
from carelake.curated.persons import PERSONS_SCHEMA, person_scope
from carelake.curated.procedures import provider_procedure_stats
from carelake.curated.routing import RoutingSettings, referral_routing, routing_distances
from carelake.curated.state import STATE_TABLE, latest_event_date, read_state, write_state
from carelake.curated.sync import sync_table, tables_missing_columns
from carelake.generate.reference import AREA_POPULATION_PATH
from carelake.model.persons import ENTERPRISE_TOKENS_TABLE
from carelake.privacy import tokenise_patient_key
from carelake.run import StageSummary
from carelake.sources.canonical import canonical_schema
from carelake.storage import is_remote, join_uri, spark_uri, table_uri, to_local_path

if TYPE_CHECKING:
    from carelake.delta import DeltaTables

log = logging.getLogger(__name__)

TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "provider_features": ("npi",),
    "provider_outcomes": ("npi", "as_of"),
    "provider_procedure_stats": ("npi", "procedure_code"),
    "patient_summary": ("patient_token",),
    "network_demand_by_zip": ("zip3", "specialty", "service_month"),
    "network_adequacy": ("zip3", "specialty", "service_month"),
    "demand_forecast": ("zip3", "specialty", "forecast_month"),
    "referral_routing": ("zip3", "specialty", "rank"),
    "kpi_patient": ("service_month",),
    "kpi_provider": ("npi", "service_month"),
    "kpi_finance": ("service_month", "hospital", "department", "payer"),
    "kpi_hospital": ("hospital", "department", "service_month"),
    "kpi_executive": ("service_month",),
}
def _input_uris(config: Config) -> dict[str, str]:
    uris = {name: table_uri(config, "curated", name)
            for name in (*FACT_EVENT_DATES, "dim_provider", "dim_patient", ENTERPRISE_TOKENS_TABLE)}
    uris["crm_activity"] = table_uri(config, "processed", "crm_activity")
    return uris


def _empty_inputs(spark: SparkSession, buckets: int) -> dict[str, DataFrame]:
    """Empty facts, dim_patient and CRM with their real schemas, for inputs not built yet (the
    model stage creates a fact only once a batch has rows for it)."""
    from carelake.model.facts import (  # the builders give the fact schemas; imported on use
        build_fact_claim,
        build_fact_encounter,
        build_fact_procedure,
        build_fact_referral,
    )

    def empty(entity: str) -> DataFrame:
        return tokenise_patient_key(spark.createDataFrame([], canonical_schema(entity)), b"")

    providers = spark.createDataFrame([], "npi string, from_date date, to_date date, provider_sk bigint")
    patients = spark.createDataFrame([], "patient_token string, from_date date, to_date date, patient_sk bigint")
    return {
        "fact_encounter": build_fact_encounter(empty("encounters"), empty("procedures"), providers, patients, buckets),
        "fact_procedure": build_fact_procedure(empty("procedures"), empty("encounters"), providers, patients, buckets),
        "fact_claim": build_fact_claim(empty("claims"), providers, patients, buckets),
        "fact_referral": build_fact_referral(empty("referrals"), providers, patients, buckets),
        "dim_patient": spark.createDataFrame(
            [], "patient_sk bigint, patient_token string, source_system string, sex string, birth_year int, "
            "zip3 string, valid_from timestamp, valid_to timestamp, is_current boolean",
        ),
        "crm_activity": empty("crm_activity"),
        ENTERPRISE_TOKENS_TABLE: spark.createDataFrame([], PERSONS_SCHEMA),
    }


def run_aggregates(spark: SparkSession, config: Config, tables: DeltaTables, run_id: str) -> StageSummary:
    """Rebuild the curated aggregates from what changed in the model; returns the ``aggregates``
    stage summary (per table: rows_in = rows_valid = rows recomputed, rows_written = rows
    inserted, updated or deleted, delta_version after the run). See the module notes."""
    summary = StageSummary("aggregates")
    meta = {"carelake.run_id": run_id, "carelake.stage": "aggregates"}
    uris = _input_uris(config)
    state_uri = table_uri(config, "curated", STATE_TABLE)
    if not tables.exists(uris["dim_provider"]):
        summary.notes.append(f"dim_provider not built yet at {uris['dim_provider']}: nothing to aggregate")
        return summary.finish("nothing-to-do")
    versions = {name: tables.version(uri) for name, uri in uris.items() if tables.exists(uri)}
    consumed, consumed_as_of = read_state(tables, state_uri)
    if consumed and consumed == versions:
        summary.notes.append("no input changed since the last aggregates run")
        return summary.finish("nothing-to-do")

    configured = config.section("curated").get("as_of")
    today = datetime.now(timezone.utc).date()
    as_of = date.fromisoformat(str(configured)) if configured else latest_event_date(tables, uris, versions, today)
    as_of = as_of or today
    full = not consumed or consumed_as_of != as_of or any(name not in versions for name in consumed)
    changes = None
    if not full:
        try:
            changes = changes_since(spark, tables, uris, consumed, versions)
        except Exception as exc:  # an input's consumed version is unreadable (vacuumed): rebuild all
            summary.notes.append(f"changes since the last run unreadable ({type(exc).__name__}); full rebuild")
            full = True
    if not full and (behind := tables_missing_columns(config, tables)):
        summary.notes.append(f"{', '.join(behind)} lack columns this version writes; full rebuild")
        full = True
    summary.notes.append(
        f"as_of {as_of}: " + ("full rebuild" if full else f"incremental over months {', '.join(changes.months) or '-'}")
    )
    log.info("aggregates: as_of %s, %s", as_of, "full" if full else "incremental")

    data = _empty_inputs(spark, config.npi_buckets)
    data.update({name: tables.read(uri, version=versions[name]) for name, uri in uris.items() if name in versions})
    enc, proc, claims, refs = (data[n] for n in FACT_EVENT_DATES)
    providers, patients, crm = data["dim_provider"], data["dim_patient"], data["crm_activity"]
    persons = data[ENTERPRISE_TOKENS_TABLE]
    curated = {name: table_uri(config, "curated", name) for name in TABLE_KEYS}

    def sync(name: str, fresh: DataFrame, scope: DataFrame | None) -> None:
        sync_table(tables, curated[name], fresh, TABLE_KEYS[name], scope, full, summary, name, meta)

    npi_scope = None if full else changes.npis
    features = provider_features(enc, proc, claims, refs, crm, providers, as_of, scope=npi_scope).localCheckpoint(eager=True)
    recomputed = None if full else features.select("npi")
    sync("provider_features", features, recomputed)
    sync("provider_procedure_stats", provider_procedure_stats(proc, enc, providers, as_of, scope=npi_scope), recomputed)
    # Recomputed for every NPI: each case's expected outcome comes from the other providers and
    # the shrinkage prior from all of them, so one new case can move any provider's row; the
    # sync still writes only the rows that differ.
    sync("provider_outcomes", provider_outcomes_by_npi(provider_outcomes(enc, claims, patients, providers, as_of, persons)), None)

    patient_scope = None
    if not full:
        at_changed_providers = enc.join(changes.provider_npis, "npi", "left_semi").select("patient_token")
        touched = changes.patients.unionByName(at_changed_providers).distinct()
        # Every record of a touched person: person-level counts are on each of them.
        patient_scope = person_scope(touched, persons, changes.persons).localCheckpoint(eager=True)
    sync("patient_summary", patient_summary(enc, proc, refs, patients, providers, as_of, scope=patient_scope, persons=persons),
         patient_scope)

    demand = network_demand_by_zip(
        enc, refs, providers, tables.read(curated["patient_summary"]), tables.read(curated["provider_features"]), as_of
    )
    sync("network_demand_by_zip", demand, None)
    # Recomputed whole, like the demand table: capacity comes from every provider's months.
    homes = tables.read(curated["patient_summary"])
    adequacy_settings = AdequacySettings.from_config(config)
    # Every home area to every practice zip, built once on the driver (a few hundred values) for
    # both the adequacy distance and the routing limit.
    areas = homes.where(F.col("zip3").isNotNull())
    distances = routing_distances(spark, areas, providers).localCheckpoint(eager=True)
    adequacy = network_adequacy(
        enc, refs, providers, homes, as_of, adequacy_settings,
        distances=distances, population=_area_population(spark, config, summary),
    )
    sync("network_adequacy", adequacy, None)
    # Each cell's months from the table just written; recomputed whole (a few hundred small fits).
    sync("demand_forecast", demand_forecast(tables.read(curated["network_adequacy"]),
                                            adequacy_settings.forecast_horizon_months, adequacy_settings), None)
    # Recomputed whole: ranks span each area's providers, capacity the specialty's history.
    routing = referral_routing(
        providers, tables.read(curated["provider_outcomes"]), enc, tables.read(curated["network_adequacy"]), areas,
        distances, as_of, RoutingSettings.from_config(config),
    )
    sync("referral_routing", routing, None)

    # Monthly marts recompute the changed months only; a claim's department and an encounter's
    # procedures are looked up in the whole facts, as they may carry another month.
    month_scope = None
    enc_m, claims_m = enc, claims
    if not full:
        month_scope = spark.createDataFrame([(m,) for m in changes.months], "service_month string")
        enc_m, claims_m = (df.join(month_scope, "service_month", "left_semi") for df in (enc, claims))
    sync("kpi_patient", kpi.kpi_patient(enc_m), month_scope)
    sync("kpi_provider", kpi.kpi_provider(enc_m, claims_m), month_scope)
    sync("kpi_finance", kpi.kpi_finance(claims_m, enc), month_scope)
    sync("kpi_hospital", kpi.kpi_hospital(enc_m, proc), month_scope)
    sync("kpi_executive", kpi.kpi_executive(tables.read(curated["kpi_patient"]), tables.read(curated["kpi_finance"])), None)

    summary.tables[state_uri] = write_state(spark, tables, state_uri, versions, as_of, run_id, meta)
    return summary.finish()


def area_population_path(config: Config) -> str:
    """Where the landed reference file of residents per area is, relative to the landing zone
    (``curated.area_population``)."""
    return str(config.section("curated").get("area_population") or AREA_POPULATION_PATH)


def _area_population(spark: SparkSession, config: Config, summary: StageSummary) -> DataFrame | None:
    """Residents per area from the landed reference file (:func:`area_population_path`); without
    it the provider ratio is not judged, and the run says so."""
    uri = join_uri(config.landing, area_population_path(config))
    uri = spark_uri(uri) if is_remote(uri) else to_local_path(uri)
    population = read_area_population(spark, uri)
    if population is None:
        summary.notes.append(f"no area population at {uri}: providers per 100k not judged")
    return population
