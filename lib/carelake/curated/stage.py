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

Changed fact rows are found without scanning whole facts: the data files added or removed since
the consumed version name the (``service_month``, ``npi_bucket``) partitions that changed, and
only those partitions are compared between the two versions.

``as_of`` is ``curated.as_of`` from the config when set, else the latest event date in the facts
(capped at today, so a mistyped future date cannot move every window).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import reduce
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, LongType, StringType, StructField, StructType, TimestampType

from carelake.config import Config
from carelake.curated import kpi
from carelake.curated.adequacy import AdequacySettings, network_adequacy, read_area_population
from carelake.curated.demand import network_demand_by_zip
from carelake.curated.features import provider_features
from carelake.curated.forecast import demand_forecast
from carelake.curated.outcomes import provider_outcomes, provider_outcomes_by_npi
from carelake.curated.patients import patient_summary
from carelake.curated.persons import PERSONS_SCHEMA, person_scope
from carelake.curated.procedures import provider_procedure_stats
from carelake.curated.routing import RoutingSettings, referral_routing, routing_distances
from carelake.delta import MergeSpec, Rows
from carelake.delta.log import open_table
from carelake.delta.storage import rs_uri, storage_options
from carelake.generate.reference import AREA_POPULATION_PATH
from carelake.model.persons import ENTERPRISE_TOKEN, ENTERPRISE_TOKENS_TABLE
from carelake.privacy import tokenise_patient_key
from carelake.run import StageSummary
from carelake.sources.canonical import canonical_schema
from carelake.storage import is_remote, join_uri, spark_uri, table_uri, to_local_path

if TYPE_CHECKING:
    from carelake.delta import DeltaTables

log = logging.getLogger(__name__)

STATE_TABLE = "_aggregate_state"
STATE_SCHEMA = StructType(
    [
        StructField("input", StringType()),
        StructField("version", LongType()),
        StructField("as_of", DateType()),
        StructField("run_id", StringType()),
        StructField("recorded_at", TimestampType()),
    ]
)
FACT_EVENT_DATES = {
    "fact_encounter": "admit_date", "fact_procedure": "procedure_date",
    "fact_claim": "service_date", "fact_referral": "referral_date",
}
# Columns of a changed input row that say which NPIs / patients / months it touches.
TOUCHES = {
    "fact_encounter": (("npi",), ("patient_token",)),
    "fact_procedure": (("npi",), ("patient_token",)),
    "fact_claim": (("npi",), ("patient_token",)),
    "fact_referral": (("referring_npi", "referred_to_npi"), ("patient_token",)),
    "dim_provider": (("npi",), ()),
    "dim_patient": ((), ("patient_token",)),
    "crm_activity": (("npi",), ()),
    ENTERPRISE_TOKENS_TABLE: ((), ("patient_token",)),
}
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
UNKNOWN_KEY = "unknown"


@dataclass
class Changes:
    """What changed since the consumed versions: NPIs, patients and fact months touched."""

    npis: DataFrame
    patients: DataFrame
    months: list[str]
    provider_npis: DataFrame  # NPIs whose dim_provider rows changed (their patients' zip3 fallback moves)
    persons: DataFrame  # enterprise tokens a record joined or left (every record of those people moves)


def _input_uris(config: Config) -> dict[str, str]:
    uris = {name: table_uri(config, "curated", name)
            for name in (*FACT_EVENT_DATES, "dim_provider", "dim_patient", ENTERPRISE_TOKENS_TABLE)}
    uris["crm_activity"] = table_uri(config, "processed", "crm_activity")
    return uris


def _read_state(tables: DeltaTables, uri: str) -> tuple[dict[str, int], date | None]:
    if not tables.exists(uri):
        return {}, None
    rows = tables.read(uri).collect()
    return {r["input"]: r["version"] for r in rows}, (rows[0]["as_of"] if rows else None)


def _latest_event_date(tables: DeltaTables, uris: dict[str, str], versions: dict[str, int], today: date) -> date | None:
    """The latest event date on/before ``today`` in the facts, reading only each fact's latest
    month partition that is not in the future."""
    this_month = today.strftime("%Y-%m")
    latest: list[DataFrame] = []
    for fact, column in FACT_EVENT_DATES.items():
        if fact not in versions:
            continue
        months = {
            f["partition_values"].get("service_month") for f in tables.files(uris[fact], version=versions[fact])
        }
        past = sorted(m for m in months if m and m != "unknown" and m <= this_month)
        if not past:
            continue
        latest.append(
            tables.read(uris[fact], version=versions[fact])
            .where((F.col("service_month") == past[-1]) & (F.col(column) <= F.lit(today)))
            .agg(F.max(column).alias("latest"))
        )
    if not latest:
        return None
    # One query for all facts: a query each cost its own jobs.
    return reduce(DataFrame.unionByName, latest).agg(F.max("latest")).collect()[0][0]


def _changed_rows(tables: DeltaTables, uri: str, before: int, after: int) -> DataFrame:
    """Rows in version ``after`` and not ``before`` or the reverse: new, changed and removed rows.

    Partitioned tables compare only the partitions whose data files differ."""
    old_files = {f["path"]: f["partition_values"] for f in tables.files(uri, version=before)}
    new_files = {f["path"]: f["partition_values"] for f in tables.files(uri, version=after)}
    old, new = tables.read(uri, version=before), tables.read(uri, version=after)
    differing = [values for path, values in {**old_files, **new_files}.items() if (path in old_files) != (path in new_files)]
    if differing and all(differing):
        predicate = reduce(
            lambda a, b: a | b,
            [reduce(lambda x, y: x & y, [F.col(k).eqNullSafe(F.lit(v)) for k, v in values.items()]) for values in differing],
        )
        old, new = old.where(predicate), new.where(predicate)
    return new.subtract(old).unionByName(old.subtract(new))


def _changes(spark: SparkSession, tables: DeltaTables, uris: dict[str, str], consumed: dict[str, int], versions: dict[str, int]) -> Changes:
    empty_npis = spark.createDataFrame([], "npi string")
    npis, patients, months, provider_npis = [empty_npis], [spark.createDataFrame([], "patient_token string")], set(), empty_npis
    persons = spark.createDataFrame([], f"{ENTERPRISE_TOKEN} string")
    for name, version in versions.items():
        if consumed.get(name) == version:
            continue
        rows = (
            _changed_rows(tables, uris[name], consumed[name], version)
            if name in consumed
            else tables.read(uris[name], version=version)
        ).localCheckpoint(eager=True)  # used for several key sets below
        npi_cols, patient_cols = TOUCHES[name]
        npis.extend(rows.select(F.col(c).alias("npi")) for c in npi_cols)
        patients.extend(rows.select(F.col(c).alias("patient_token")) for c in patient_cols)
        if name in FACT_EVENT_DATES:
            months.update(r[0] for r in rows.select("service_month").distinct().collect())
        if name == "dim_provider":
            provider_npis = rows.select("npi")
        if name == ENTERPRISE_TOKENS_TABLE:  # old and new rows: the person left and the one joined
            persons = rows.select(ENTERPRISE_TOKEN)
    return Changes(_distinct_keys(npis), _distinct_keys(patients), sorted(months), provider_npis.distinct(),
                   _distinct_keys([persons]))


def _distinct_keys(frames: list[DataFrame]) -> DataFrame:
    column = frames[0].columns[0]
    return reduce(DataFrame.unionByName, frames).where(F.col(column).isNotNull()).distinct()


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


def _with_full_keys(df: DataFrame, keys: tuple[str, ...]) -> DataFrame:
    """Null string keys read ``unknown``: a null key never matches in a merge and would be
    inserted again on every run."""
    string_keys = {f.name for f in df.schema.fields if f.name in keys and isinstance(f.dataType, StringType)}
    return df.select(*[F.coalesce(F.col(c), F.lit(UNKNOWN_KEY)).alias(c) if c in string_keys else c for c in df.columns])


def _tables_missing_columns(config: Config, tables: DeltaTables) -> list[str]:
    """The curated tables written by an earlier version that lack a column this one declares
    (carelake.curated.dictionary): an incremental merge cannot add it, a full rebuild does.
    Read from the Delta logs (no Spark job)."""
    from carelake.curated.dictionary import TABLES  # it imports this module

    options = storage_options(config)
    behind = []
    for name, (_, columns) in TABLES.items():
        uri = table_uri(config, "curated", name)
        if tables.exists(uri):
            stored = {field.name for field in open_table(rs_uri(uri), options).schema().fields}
            if set(columns) - stored:
                behind.append(name)
    return behind


def sync_table(
    tables: DeltaTables, uri: str, fresh: DataFrame, keys: tuple[str, ...], scope: DataFrame | None,
    full: bool, summary: StageSummary, name: str, meta: dict[str, str],
) -> None:
    """Bring table ``uri`` in line with ``fresh``, the recomputed rows of ``scope``.

    ``full`` (or no table yet): overwrite with ``fresh``. Else merge by ``keys`` only the fresh
    rows that differ from the stored ones, and delete stored rows of ``scope`` (the key columns of
    ``scope``; None = the whole table) that ``fresh`` no longer has. Records the counts."""
    fresh = _with_full_keys(fresh, keys).localCheckpoint(eager=True)
    counts = summary.counts(name)
    if full or not tables.exists(uri):
        # schema merge: a column added since the table was written joins it
        result = tables.write(fresh, uri, mode="overwrite", commit_metadata=meta, schema_mode="merge")
        # The commit's own row count, when the engine reports it, saves a count of the rows.
        rows = result.rows_inserted if result.rows_inserted is not None else fresh.count()
        counts.rows_in = counts.rows_valid = counts.rows_written = rows
        counts.delta_version = summary.tables[uri] = result.version
        return
    counts.rows_in = counts.rows_valid = fresh.count()
    stored = tables.read(uri)
    if scope is not None:
        stored = stored.join(scope, scope.columns, "left_semi")
    changed = fresh.subtract(stored.select(*fresh.columns)).localCheckpoint(eager=True)
    vanished = stored.select(*keys).subtract(fresh.select(*keys)).collect()
    written = 0
    if not changed.isEmpty():
        result = tables.merge(changed, uri, MergeSpec(keys), commit_metadata=meta)
        written += (result.rows_inserted or 0) + (result.rows_updated or 0)
        summary.tables[uri] = result.version
    if vanished:
        result = tables.delete(uri, Rows.keys(keys, vanished))
        written += result.rows_deleted or 0
        summary.tables[uri] = result.version
    counts.rows_written = written
    counts.delta_version = tables.version(uri)


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
    consumed, consumed_as_of = _read_state(tables, state_uri)
    if consumed and consumed == versions:
        summary.notes.append("no input changed since the last aggregates run")
        return summary.finish("nothing-to-do")

    configured = config.section("curated").get("as_of")
    today = datetime.now(timezone.utc).date()
    as_of = date.fromisoformat(str(configured)) if configured else _latest_event_date(tables, uris, versions, today)
    as_of = as_of or today
    full = not consumed or consumed_as_of != as_of or any(name not in versions for name in consumed)
    changes = None
    if not full:
        try:
            changes = _changes(spark, tables, uris, consumed, versions)
        except Exception as exc:  # an input's consumed version is unreadable (vacuumed): rebuild all
            summary.notes.append(f"changes since the last run unreadable ({type(exc).__name__}); full rebuild")
            full = True
    if not full and (behind := _tables_missing_columns(config, tables)):
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

    recorded = datetime.now(timezone.utc)
    state = spark.createDataFrame(
        [(name, version, as_of, run_id, recorded) for name, version in sorted(versions.items())], STATE_SCHEMA
    )
    summary.tables[state_uri] = tables.write(state, state_uri, mode="overwrite", commit_metadata=meta).version
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


TOP_MIN_CASES = 5  # fewer cases of the ranked measure: too few to call a provider top
# (title, measure ranked, measure shown beside it)
TOP_RANKINGS = (
    ("most cost-effective: allowed amount per case against the case mix", "cost_per_case", "length_of_stay"),
    ("best outcomes: 30-day unplanned readmissions against the case mix", "readmission_30d", "complication"),
)


def top_providers_report(spark: SparkSession, config: Config, tables: DeltaTables, n: int = 5) -> str:
    """A short text of the top ``n`` providers by cost-effectiveness and by outcome, from
    ``curated.provider_outcomes``: per ranking, the providers ranked best *within their
    specialty* on the risk-adjusted, shrunk observed/expected ratio (lower is better;
    docs/measures.md), specialty leaders first, then by the ratio itself, among providers with
    at least :data:`TOP_MIN_CASES` cases of that measure whose shrunk ratio is below 1. Provider-level only: no patient data."""
    uri = table_uri(config, "curated", "provider_outcomes")
    if not tables.exists(uri):
        return "table curated.provider_outcomes not built yet — run make run"
    outcomes = tables.read(uri).localCheckpoint(eager=True)
    as_of = outcomes.agg(F.max("as_of")).collect()[0][0]
    lines = [f"Top {n} providers as of {as_of}, ranked within specialty on risk-adjusted "
             f"observed/expected (shrunk; 1.00 = as the case mix predicts, lower is better)"]
    for title, ranked, beside in TOP_RANKINGS:
        eligible = outcomes.where(F.col("as_of") == F.lit(as_of)).where(
            (F.col(f"{ranked}_cases") >= TOP_MIN_CASES) & F.col(f"{ranked}_rank_in_specialty").isNotNull()
            # Better than the case mix predicts: the only provider of a specialty is its rank 1
            # whatever its ratio, and a ratio above 1 is no "top".
            & (F.col(f"{ranked}_oe_ratio_shrunk") < 1))
        lines.append(f"  {title}")
        top = eligible.orderBy(F.col(f"{ranked}_rank_in_specialty"), F.col(f"{ranked}_oe_ratio_shrunk"), "npi").limit(n).collect()
        if not top:
            lines.append(f"    no provider with {TOP_MIN_CASES} cases of {ranked} does better than its case mix yet")
            continue
        lines.append(f"    {'npi':<12}{'specialty':<26}{'rank':>8}{'cases':>7}{'O/E':>7}{'shrunk':>8}{beside + ' shrunk':>22}")
        for r in top:
            rank = f"{r[f'{ranked}_rank_in_specialty']}/{r[f'{ranked}_providers_in_specialty']}"
            other = r[f"{beside}_oe_ratio_shrunk"]
            lines.append(
                f"    {r['npi']:<12}{(r['specialty'] or '?')[:25]:<26}{rank:>8}{r[f'{ranked}_cases']:>7}"
                f"{r[f'{ranked}_oe_ratio']:>7.2f}{r[f'{ranked}_oe_ratio_shrunk']:>8.2f}{'-' if other is None else f'{other:.2f}':>22}"
            )
    return "\n".join(lines)
