"""The process stage end to end on tiny raw batches: processed tables, quarantine, GX, re-runs."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path

from chispa import assert_df_equality
from pyspark.sql import functions as F

from carelake.config import Config
from carelake.delta import Rows, open_tables
from carelake.process import BATCHES_TABLE, QUARANTINE_TABLE, run_process
from carelake.storage import table_uri

PROVIDERS = (
    "provider_npi,first_name,last_name,specialty,taxonomy_code,org_name,practice_zip,network_id,employer_id,status,last_updated\n"
    "1234567893,Ann,Lee,Cardiology,207RC0000X,Riverside,60601,N1,E1,A,2024-01-01 00:00:00\n"
    "1234567893,Ann,Lee,Cardiology,207RC0000X,Riverside,60601,N1,E1,A,2024-01-01 00:00:00\n"
    "1245319599,Bo,Ng,Oncology,207RX0202X,Riverside,60602,N1,E2,A,2024-01-01 00:00:00\n"
    "1234567890,Cy,Bad,Oncology,207RX0202X,Riverside,60602,N1,E2,I,2024-01-01 00:00:00\n"
)
PATIENTS = (
    "patient_id,first_name,last_name,ssn,phone,email,address,birth_date,sex,zip,mrn,last_updated\n"
    "P1,Al,One,111-22-3333,555,a@x.org,1 Main,1980-01-31,M,60601,M1,2024-01-01 00:00:00\n"
    "P2,Bea,Two,111-22-4444,556,b@x.org,2 Main,1990-05-05,F,60602,M2,2024-01-01 00:00:00\n"
    "P3,Cal,Three,111-22-5555,557,c@x.org,3 Main,yesterday,M,60603,M3,2024-01-01 00:00:00\n"
)
HEADER = "encounter_id,patient_id,provider_npi,department,encounter_type,admit_date,discharge_date,dx_code,readmit_30d,complication,satisfaction,last_updated\n"
ENCOUNTERS = HEADER + (
    "E1,P1,1234567893,ER,outpatient,2024-01-05,2024-01-05,E11.9,N,N,5,2024-01-06 00:00:00\n"
    "E1,P1,1234567893,ICU,outpatient,2024-01-05,2024-01-05,E11.9,N,N,5,2024-01-05 00:00:00\n"
    "E2,P9,1234567893,ER,outpatient,2024-01-05,2024-01-05,E11.9,N,N,4,2024-01-06 00:00:00\n"
    "E3,P1,1245319599,ER,inpatient,2024-01-09,2024-01-02,ZZZ,Y,N,3,2024-01-10 00:00:00\n"
)
MORE_ENCOUNTERS = HEADER + (
    "E1,P1,1234567893,Cardiology,outpatient,2024-01-05,2024-01-05,E11.9,N,N,5,2024-02-01 00:00:00\n"
    "E4,P2,1245319599,ER,outpatient,2024-02-02,2024-02-03,I10,N,Y,4,2024-02-03 00:00:00\n"
)


def land_raw(spark, tables, config: Config, entity: str, text: str, batch_id: str, file: str | None = None,
             ingested_at: datetime = datetime(2024, 6, 1)) -> None:
    """Append CSV ``text`` of hospital_a to ``raw/<entity>`` as the raw contract has it: strings plus
    metadata, from landing file ``file`` (default ``<entity>/<batch_id>``)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    columns = list(rows[0])
    meta = ("hospital_a", f"file:///landing/{file or f'{entity}/{batch_id}'}.csv", ingested_at, batch_id, "h", None)
    ddl = ", ".join(f"{c} string" for c in columns) + (
        ", _source_system string, _source_file string, _ingested_at timestamp, _batch_id string, _row_hash string, _corrupt_record string"
    )
    frame = spark.createDataFrame([tuple(r[c] for c in columns) + meta for r in rows], ddl)
    tables.write(frame, table_uri(config, "raw", entity), mode="append", schema_mode="merge")


def versions(tables, config: Config) -> dict[str, int]:
    names = ("providers", "patients", "encounters", QUARANTINE_TABLE, BATCHES_TABLE)
    return {n: tables.version(table_uri(config, "processed", n)) for n in names}


def test_process_quarantines_dedupes_merges_and_reruns_incrementally(spark, config: Config) -> None:
    config = config.with_overrides(**{"quality.max_quarantine_rate": 0.4})
    tables = open_tables(spark, config)
    land_raw(spark, tables, config, "providers", PROVIDERS, "b1")
    land_raw(spark, tables, config, "patients", PATIENTS, "b1")
    land_raw(spark, tables, config, "encounters", ENCOUNTERS, "b1")

    first = run_process(spark, config, tables, "run-1")

    counts = {e: (c.rows_in, c.rows_valid, c.rows_quarantined, c.duplicates_dropped) for e, c in first.entities.items()}
    assert counts == {"providers": (4, 2, 1, 1), "patients": (3, 2, 1, 0), "encounters": (4, 1, 2, 1)}
    assert all(c.reconciles for c in first.entities.values())
    # encounters: 2 of 4 quarantined breaches the 40% limit; the valid row is still written
    assert first.status == "failed"
    notes = "\n".join(first.notes)
    assert "encounters: quarantine rate 50.0% exceeds" in notes and "patients: quarantine rate" not in notes
    assert "encounters: 1 conflicting version(s)" in notes
    assert "patients: 1 of 3 row(s) quarantined (33.3%; date_unparseable:birth_date 1)" in notes

    encounters = tables.read(table_uri(config, "processed", "encounters")).select("encounter_id", "department")
    assert_df_equality(encounters, spark.createDataFrame([("E1", "ER")], "encounter_id string, department string"),
                       ignore_row_order=True, ignore_nullable=True)
    quarantine = tables.read(table_uri(config, "processed", QUARANTINE_TABLE))
    reasons = quarantine.select("entity", F.array_sort("reasons").alias("reasons"), F.get_json_object("raw_payload", "$.encounter_id").alias("id"))
    want = spark.createDataFrame(
        [
            ("providers", ["npi_invalid:npi"], None),
            ("patients", ["date_unparseable:birth_date"], None),
            ("encounters", ["orphan:patient_key"], "E2"),
            ("encounters", ["code_invalid:diagnosis_code", "discharge_before_admit"], "E3"),
        ],
        "entity string, reasons array<string>, id string",
    )
    assert_df_equality(reasons, want, ignore_row_order=True, ignore_nullable=True)
    assert quarantine.where(F.col("run_id") != "run-1").count() == 0

    gx = Path(config.root) / "_runs" / "run-1" / "gx"
    assert sorted(p.name for p in gx.glob("*.json")) == ["encounters.json", "patients.json", "providers.json"]
    assert json.loads((gx / "providers.json").read_text())["success"] is True
    assert (Path(config.root) / "_quality" / "data_docs" / "index.html").exists()

    before = versions(tables, config)
    again = run_process(spark, config, tables, "run-2")
    assert again.status == "nothing-to-do" and again.entities == {}
    assert versions(tables, config) == before

    # A run that died before recording the encounters batch: it is processed again, once.
    no_gx = config.with_overrides(**{"quality.great_expectations": False})
    tables.delete(table_uri(config, "processed", BATCHES_TABLE), Rows.where(entity=["encounters"]))
    redo = run_process(spark, no_gx, tables, "run-2b")
    assert set(redo.entities) == {"encounters"}
    assert tables.read(table_uri(config, "processed", QUARANTINE_TABLE)).where("entity = 'encounters'").count() == 2
    assert tables.read(table_uri(config, "processed", "encounters")).count() == 1

    land_raw(spark, tables, config, "encounters", MORE_ENCOUNTERS, "b3")
    third = run_process(spark, no_gx, tables, "run-3")

    assert set(third.entities) == {"encounters"} and third.status == "ok"
    assert (third.entities["encounters"].rows_in, third.entities["encounters"].rows_valid) == (2, 2)
    encounters = tables.read(table_uri(config, "processed", "encounters")).select("encounter_id", "department")
    want = spark.createDataFrame([("E1", "Cardiology"), ("E4", "ER")], "encounter_id string, department string")
    assert_df_equality(encounters, want, ignore_row_order=True, ignore_nullable=True)

    # A version older at the source than the one processed arrives late: it must not win.
    late = HEADER + "E1,P1,1234567893,Radiology,outpatient,2024-01-05,2024-01-05,E11.9,N,N,5,2024-01-07 00:00:00\n"
    land_raw(spark, tables, config, "encounters", late, "b4")
    run_process(spark, no_gx, tables, "run-4")
    encounters = tables.read(table_uri(config, "processed", "encounters")).select("encounter_id", "department")
    assert_df_equality(encounters, want, ignore_row_order=True, ignore_nullable=True)
