"""Schema evolution at the source: added, dropped and renamed columns, widened types.

Additive changes flow through (an added column into raw, a dropped optional column as null),
as ``ingest.schema_changes`` configures; a breaking change (a business-key column renamed, or
what the config calls breaking) holds that source's entity with a note naming file and column,
while every other entity of the batch is ingested and processed.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from carelake.config import Config, ConfigError
from carelake.delta import open_tables
from carelake.ingest import INGEST_LOG_TABLE
from carelake.ingest.drift import SchemaChange, schema_change, schema_policy
from carelake.pipeline import run_pipeline
from carelake.process import QUARANTINE_TABLE
from carelake.storage import table_uri

A_HEADER = "provider_npi,first_name,last_name,specialty,taxonomy_code,org_name,practice_zip,network_id,employer_id,status,last_updated"
CRM_HEADER = "activity_id,npi,activity_date,activity_type,marketing_spend,contacts,opportunity_value,modified_at"
NPI_1, NPI_2, NPI_CRM = "1234567893", "1245319599", "1003000126"


def provider(npi: str) -> str:
    return f"{npi},Ann,Lee,Cardiology,207RC0000X,Riverside,60601,N1,E1,A,2024-01-01 00:00:00"


def activity(ident: str, date: str = "2024-03-05", contacts: str = "3") -> str:
    return f"{ident},{NPI_CRM},{date},email,10.00,{contacts},100,2024-03-06 00:00:00"


def land(config: Config, path: str, *lines: str) -> None:
    target = Path(config.landing) / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")


@pytest.fixture
def quiet(config: Config) -> Config:
    return config.with_overrides(
        **{"quality.great_expectations": False, "quality.max_quarantine_rate": 1.0, "ingest.max_rejected_file_rate": 1.0}
    )


def ingest_notes(summary) -> str:
    return "\n".join(summary.stages[0].notes)


def test_additive_changes_flow_through_and_a_renamed_key_holds_only_its_entity(spark, quiet: Config) -> None:
    tables = open_tables(spark, quiet)
    land(quiet, "hospital_a/providers/good.csv", A_HEADER, provider(NPI_1))
    land(quiet, "hospital_a/providers/renamed.csv", A_HEADER.replace("provider_npi", "npi_number"), provider(NPI_2))
    land(quiet, "crm/activity/added.csv", CRM_HEADER + ",campaign_id", activity("A1") + ",C9")
    land(quiet, "crm/activity/dropped.csv", CRM_HEADER.replace(",contacts", ""), activity("D1").replace(",3,", ","))
    # Widened types: a date column now sends timestamps (fits the canonical date); an integer
    # column now sends decimals (does not fit: that row is quarantined, naming the column).
    land(quiet, "crm/activity/widened.csv", CRM_HEADER, activity("W1", date="2024-03-05 10:30:00"), activity("W2", contacts="2.5"))

    summary = run_pipeline(spark, quiet, ("ingest", "process"), run_id="s1")

    assert [s.status for s in summary.stages] == ["ok", "ok"]
    notes = ingest_notes(summary)
    assert notes.startswith("3 file(s) ingested, 0 rejected, 2 held, 0 already ingested")
    assert ("held hospital_a/providers (2 new file(s), none ingested): breaking schema change - "
            "hospital_a/providers/renamed.csv: business key column(s) provider_npi missing") in notes
    assert "Fix the files or sources.hospital_a.entities.providers.columns" in notes
    assert "crm/activity/added.csv: new column(s) campaign_id kept in raw, not mapped" in notes
    logged = {r.file_name for r in tables.read(table_uri(quiet, "raw", INGEST_LOG_TABLE)).collect()}
    assert logged == {"crm/activity/added.csv", "crm/activity/dropped.csv", "crm/activity/widened.csv"}
    assert not tables.exists(table_uri(quiet, "raw", "providers"))

    raw = tables.read(table_uri(quiet, "raw", "crm_activity"))
    assert {(r.activity_id, r.campaign_id) for r in raw.collect()} == {("A1", "C9"), ("D1", None), ("W1", None), ("W2", None)}
    processed = {r.activity_id: r for r in tables.read(table_uri(quiet, "processed", "crm_activity")).collect()}
    assert sorted(processed) == ["A1", "D1", "W1"]
    assert processed["D1"].contacts is None and processed["A1"].contacts == 3
    assert processed["W1"].activity_date == dt.date(2024, 3, 5)
    quarantine = tables.read(table_uri(quiet, "processed", QUARANTINE_TABLE)).collect()
    assert [(q.entity, list(q.reasons)) for q in quarantine] == [("crm_activity", ["value_unparseable:contacts"])]
    counts = summary.stages[1].entities["crm_activity"]
    assert (counts.rows_in, counts.rows_valid, counts.rows_quarantined) == (4, 3, 1) and counts.reconciles

    # The sender fixes the file: the next run ingests the whole held entity.
    land(quiet, "hospital_a/providers/renamed.csv", A_HEADER, provider(NPI_2))
    rerun = run_pipeline(spark, quiet, ("ingest", "process"), run_id="s2")

    assert rerun.status == "ok"
    assert ingest_notes(rerun).startswith("2 file(s) ingested, 0 rejected, 0 held, 3 already ingested")
    providers = tables.read(table_uri(quiet, "processed", "providers"))
    assert sorted(r.npi for r in providers.collect()) == [NPI_1, NPI_2]


def test_added_columns_can_be_configured_as_breaking(spark, quiet: Config) -> None:
    strict = quiet.with_overrides(**{"ingest.schema_changes": {"added_columns": "hold"}})
    tables = open_tables(spark, strict)
    land(strict, "hospital_a/providers/good.csv", A_HEADER, provider(NPI_1))
    land(strict, "crm/activity/added.csv", CRM_HEADER + ",campaign_id", activity("A1") + ",C9")

    summary = run_pipeline(spark, strict, ("ingest", "process"), run_id="s1")

    assert summary.status == "ok"
    assert ("held crm/crm_activity (1 new file(s), none ingested): breaking schema change - crm/activity/added.csv: "
            "new column(s) campaign_id (ingest.schema_changes.added_columns: hold)") in ingest_notes(summary)
    assert not tables.exists(table_uri(strict, "raw", "crm_activity"))
    assert [r.npi for r in tables.read(table_uri(strict, "processed", "providers")).collect()] == [NPI_1]


def test_a_run_where_everything_is_held_fails(spark, quiet: Config) -> None:
    land(quiet, "hospital_a/providers/renamed.csv", A_HEADER.replace("provider_npi", "npi_number"), provider(NPI_2))
    summary = run_pipeline(spark, quiet, ("ingest", "process"), run_id="s1")
    assert summary.status == "failed"
    assert "nothing could be ingested: every new file was rejected or held" in ingest_notes(summary)


def test_schema_change_compares_header_and_mapping(quiet: Config) -> None:
    crm, hospital_b = quiet.sources["crm"], quiet.sources["hospital_b"]
    header = tuple(CRM_HEADER.replace("activity_id,", "").replace(",contacts", "").split(",")) + ("Campaign ID",)
    assert schema_change(header, crm, crm.entities["crm_activity"]) == SchemaChange(
        added=("Campaign ID",), missing=("contacts",), missing_keys=("activity_id",)
    )
    # JSON lines leave keys out per record: only added keys count.
    assert schema_change(("npi", "extra"), hospital_b, hospital_b.entities["providers"]) == SchemaChange(added=("extra",))


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"added_columns": "drop"}, "ingest.schema_changes.added_columns: expected one of accept, hold, found 'drop'"),
        ({"renamed_columns": "hold"}, "ingest.schema_changes: unknown key(s) ['renamed_columns']"),
    ],
)
def test_schema_policy_names_a_bad_setting(quiet: Config, given: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        schema_policy(quiet.with_overrides(**{"ingest.schema_changes": given}))
