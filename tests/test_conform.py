"""Conformance of each source layout in conf/local.yaml onto the canonical schemas."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from decimal import Decimal

import yaml
from chispa import assert_df_equality
from pyspark.sql import functions as F

from carelake.config import load_config
from carelake.sources.canonical import CANONICAL_SCHEMAS
from carelake.sources.conform import canonical_columns, conform
from carelake.sources.naming import raw_column_name

INGESTED = datetime(2024, 6, 1, 12, 0, 0)
LINEAGE = ("f.csv", "b1", INGESTED)


def key(system: str, local_id: str) -> str:
    return hashlib.sha256(f"{system}:{local_id}".encode()).hexdigest()


def raw_frame(spark, system, entity, rows, extra_columns=()):
    """A raw table holding ``rows`` (source column -> text) of ``system``'s ``entity``."""
    columns = [raw_column_name(c) for c in system.entities[entity].columns.values()]
    columns = list(dict.fromkeys([*columns, *extra_columns]))
    data = [
        tuple({raw_column_name(k): v for k, v in row.items()}.get(c) for c in columns)
        + (row.get("_source_system", system.name), "f.csv", INGESTED, "b1", "h", None)
        for row in rows
    ]
    ddl = ", ".join(f"{c} string" for c in columns) + (
        ", _source_system string, _source_file string, _ingested_at timestamp, _batch_id string, _row_hash string, _corrupt_record string"
    )
    return spark.createDataFrame(data, ddl)


def expected(spark, entity, rows):
    """Canonical rows for ``entity`` (lineage: this source, f.csv, b1, INGESTED)."""
    return spark.createDataFrame(rows, CANONICAL_SCHEMAS[entity])


def test_hospital_a_providers_map_columns_values_and_npi(spark, base_config):
    system = base_config.sources["hospital_a"]
    raw = raw_frame(spark, system, "providers", [
        {"provider_npi": " 123-456 7893 ", "first_name": " Ann ", "last_name": "Lee", "specialty": "Cardiology",
         "taxonomy_code": "207rc0000x", "org_name": "Riverside", "practice_zip": "02139", "network_id": "N1",
         "employer_id": "", "status": "A", "last_updated": "2024-05-01 10:30:00"},
        {"provider_npi": "1234567893", "status": "I", "last_updated": "2024/05/01", "_source_system": "hospital_b"},
    ])
    actual = canonical_columns(conform(raw, system, "providers"), "providers")
    want = expected(spark, "providers", [
        ("1234567893", "Ann", "Lee", "Cardiology", "207RC0000X", "Riverside", "02139", "N1", None, True,
         datetime(2024, 5, 1, 10, 30), "hospital_a", *LINEAGE),
    ])
    assert_df_equality(actual, want, ignore_row_order=True, ignore_nullable=True)


def test_hospital_b_cents_timestamps_and_keys(spark, base_config):
    system = base_config.sources["hospital_b"]
    raw = raw_frame(spark, system, "procedures", [
        {"procId": "P1", "encounterId": "E1", "npi": "1234567893", "code": "j1100", "performedTs": "2024-03-02T08:00:00Z",
         "qty": "2", "chargeCents": "12345"},
    ])
    actual = canonical_columns(conform(raw, system, "procedures"), "procedures")
    want = expected(spark, "procedures", [
        (key("hospital_b", "P1"), "hospital_b", "P1", key("hospital_b", "E1"), "1234567893", "J1100", "HCPCS",
         date(2024, 3, 2), 2, Decimal("123.45"), "hospital_b", *LINEAGE),
    ])
    assert_df_equality(actual, want, ignore_row_order=True, ignore_nullable=True)


def test_hospital_b_json_booleans_and_encounter_timestamps(spark, base_config):
    system = base_config.sources["hospital_b"]
    raw = raw_frame(spark, system, "encounters", [
        {"encounterId": "E1", "patientId": "P9", "npi": "1234567893", "dept": "ER", "type": "inpatient",
         "admitTs": "2024-03-01T22:15:00Z", "dischargeTs": "2024-03-03T09:00:00Z", "icd10": "e119",
         "readmitted": "false", "complication": "true", "satisfactionScore": "4", "updatedAt": "2024-03-04T00:00:00Z"},
    ])
    actual = canonical_columns(conform(raw, system, "encounters"), "encounters")
    want = expected(spark, "encounters", [
        (key("hospital_b", "E1"), "hospital_b", "E1", key("hospital_b", "P9"), "1234567893", "ER", "inpatient",
         date(2024, 3, 1), date(2024, 3, 3), "E11.9", False, True, 4, datetime(2024, 3, 4), "hospital_b", *LINEAGE),
    ])
    assert_df_equality(actual, want, ignore_row_order=True, ignore_nullable=True)


def test_hospital_c_pipe_layout_codes_flags_and_us_dates(spark, base_config):
    system = base_config.sources["hospital_c"]
    raw = raw_frame(spark, system, "encounters", [
        {"VISIT_NO": "V7", "PAT_NO": "77", "ATTENDING_NPI": "1234567893", "DEPT": "ICU", "VISIT_TYPE": "inpatient",
         "ADMIT_DT": "03/01/2024", "DISCH_DT": "13/45/2024", "DX1": "I10", "READMIT_FLAG": "1",
         "COMPLICATION_FLAG": "0", "SAT_SCORE": "5", "CHANGE_DT": "03/05/2024 14:20"},
    ])
    conformed = conform(raw, system, "encounters")
    want = expected(spark, "encounters", [
        (key("hospital_c", "V7"), "hospital_c", "V7", key("hospital_c", "77"), "1234567893", "ICU", "inpatient",
         date(2024, 3, 1), None, "I10", True, False, 5, datetime(2024, 3, 5, 14, 20), "hospital_c", *LINEAGE),
    ])
    assert_df_equality(canonical_columns(conformed, "encounters"), want, ignore_row_order=True, ignore_nullable=True)
    # The unparseable discharge date is null but its text is kept for the rules.
    assert conformed.select("_raw_discharge_date").first()[0] == "13/45/2024"


def test_hospital_a_procedures_cpt_code_system(spark, base_config):
    system = base_config.sources["hospital_a"]
    raw = raw_frame(spark, system, "procedures", [
        {"procedure_id": "1", "encounter_id": "E1", "provider_npi": "1234567893", "cpt_code": "99213",
         "procedure_date": "2024-01-31", "units": "1", "charge": "$1,250.50"},
        {"procedure_id": "2", "encounter_id": "E1", "provider_npi": "1234567893", "cpt_code": "9921",
         "procedure_date": "2024-01-31", "units": "x", "charge": "-5"},
    ])
    actual = canonical_columns(conform(raw, system, "procedures"), "procedures")
    want = expected(spark, "procedures", [
        (key("hospital_a", "1"), "hospital_a", "1", key("hospital_a", "E1"), "1234567893", "99213", "CPT",
         date(2024, 1, 31), 1, Decimal("1250.50"), "hospital_a", *LINEAGE),
        (key("hospital_a", "2"), "hospital_a", "2", key("hospital_a", "E1"), "1234567893", "9921", None,
         date(2024, 1, 31), None, Decimal("-5.00"), "hospital_a", *LINEAGE),
    ])
    assert_df_equality(actual, want, ignore_row_order=True, ignore_nullable=True)


def test_claims_key_patients_and_encounters_by_facility(spark, base_config):
    system = base_config.sources["claims"]
    raw = raw_frame(spark, system, "claims", [
        {"CLM_ID": "C1", "FACILITY": "LAK", "ENCOUNTER_REF": "E1", "PATIENT_REF": "P9", "RENDERING_NPI": "1234567893",
         "PAYER": "Acme", "BILLED": "100.00", "ALLOWED": "80", "PAID": "75.5", "CLM_STATUS": "PAID",
         "SVC_DT": "20240301", "SUBMIT_DT": "20240305", "PAID_DT": "20240320", "FILE_DT": "20240321 101500"},
    ])
    actual = canonical_columns(conform(raw, system, "claims"), "claims")
    want = expected(spark, "claims", [
        ("C1", "hospital_b", key("hospital_b", "E1"), key("hospital_b", "P9"), "1234567893", "Acme",
         Decimal("100.00"), Decimal("80.00"), Decimal("75.50"), "PAID", date(2024, 3, 1), date(2024, 3, 5),
         date(2024, 3, 20), datetime(2024, 3, 21, 10, 15), "claims", *LINEAGE),
    ])
    assert_df_equality(actual, want, ignore_row_order=True, ignore_nullable=True)


def test_crm_referrals_and_activity(spark, base_config):
    system = base_config.sources["crm"]
    referrals = raw_frame(spark, system, "referrals", [
        {"referral_id": "R1", "referring_npi": "1234567893", "referred_to_npi": "1234-567-893",
         "patient_system": "hospital_c", "patient_id": "77", "employer_id": "EMP1", "referral_date": "2024-02-02",
         "status": "open", "specialty_requested": "Cardiology", "modified_at": "2024-02-03 08:00:00"},
    ])
    activity = raw_frame(spark, system, "crm_activity", [
        {"activity_id": "A1", "npi": "1234567893", "activity_date": "2024-02-01", "activity_type": "visit",
         "marketing_spend": "10.5", "contacts": "3", "opportunity_value": "2500", "modified_at": "2024-02-01 09:00:00"},
    ])
    assert_df_equality(
        canonical_columns(conform(referrals, system, "referrals"), "referrals"),
        expected(spark, "referrals", [
            ("R1", "1234567893", "1234567893", "hospital_c", key("hospital_c", "77"), "EMP1", date(2024, 2, 2), "open",
             "Cardiology", datetime(2024, 2, 3, 8), "crm", *LINEAGE),
        ]),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert_df_equality(
        canonical_columns(conform(activity, system, "crm_activity"), "crm_activity"),
        expected(spark, "crm_activity", [
            ("A1", "1234567893", date(2024, 2, 1), "visit", Decimal("10.50"), 3, Decimal("2500.00"),
             datetime(2024, 2, 1, 9), "crm", *LINEAGE),
        ]),
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_raw_payload_keeps_the_source_columns(spark, base_config):
    system = base_config.sources["hospital_c"]
    raw = raw_frame(spark, system, "providers", [{"NPI_NUM": "12", "ACTIVE_FLAG": "1"}])
    payload = conform(raw, system, "providers").select(F.from_json("_raw_payload", "map<string,string>").alias("p")).first().p
    assert payload["npi_num"] == "12" and payload["active_flag"] == "1" and "_corrupt_record" in payload


def test_source_column_no_file_has_sent_reads_as_null(spark, base_config):
    system = base_config.sources["hospital_c"]
    raw = raw_frame(spark, system, "providers", [{"NPI_NUM": "1234567893", "ACTIVE_FLAG": "0"}]).drop("specialty_desc")
    actual = canonical_columns(conform(raw, system, "providers"), "providers").select("npi", "specialty", "active")
    want = spark.createDataFrame([("1234567893", None, False)], "npi string, specialty string, active boolean")
    assert_df_equality(actual, want, ignore_row_order=True, ignore_nullable=True)


FOURTH_HOSPITAL = """
lakehouse: {root: ./lakehouse}
spark: {master: "local[2]"}
delta: {engine: auto, vacuum_retention_hours: 168}
partitioning: {npi_buckets: 4}
sources:
  hospital_d:
    display_name: Northgate Clinic
    format: csv
    options: {delimiter: ";"}
    date_format: dd.MM.yyyy
    timestamp_format: "dd.MM.yyyy HH:mm"
    amount_unit: cents
    entities:
      patients:
        path: hospital_d/patients/*.csv
        columns: {patient_id: "Patient No", first_name: Vorname, last_name: Nachname, birth_date: Geburtsdatum,
                  sex: Geschlecht, zip: PLZ, updated_at: Geaendert}
        values: {sex: {M: male, W: female}}
      procedures:
        path: hospital_d/procedures/*.csv
        columns: {procedure_id: Lfd, encounter_id: Fall, npi: Arzt, procedure_code: Code, procedure_date: Datum,
                  charge_amount: Betrag}
"""


def test_a_fourth_hospital_is_a_yaml_block_and_no_code(spark, tmp_path):
    conf = tmp_path / "fourth.yaml"
    conf.write_text(yaml.safe_dump(yaml.safe_load(FOURTH_HOSPITAL)), encoding="utf-8")
    system = load_config(conf, env={}).sources["hospital_d"]
    patients = raw_frame(spark, system, "patients", [
        {"Patient No": "P1", "Vorname": "Eva", "Nachname": "Roth", "Geburtsdatum": "31.12.1980", "Geschlecht": "W",
         "PLZ": "10115", "Geaendert": "01.02.2024 13:45"},
    ])
    procedures = raw_frame(spark, system, "procedures", [
        {"Lfd": "9", "Fall": "F1", "Arzt": "1234567893", "Code": "99213", "Datum": "02.02.2024", "Betrag": "9999"},
    ])
    assert_df_equality(
        canonical_columns(conform(patients, system, "patients"), "patients"),
        expected(spark, "patients", [
            (key("hospital_d", "P1"), "hospital_d", "P1", "Eva", "Roth", None, None, None, None, date(1980, 12, 31),
             "female", "10115", None, datetime(2024, 2, 1, 13, 45), "hospital_d", *LINEAGE),
        ]),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert_df_equality(
        canonical_columns(conform(procedures, system, "procedures"), "procedures"),
        expected(spark, "procedures", [
            (key("hospital_d", "9"), "hospital_d", "9", key("hospital_d", "F1"), "1234567893", "99213", "CPT",
             date(2024, 2, 2), None, Decimal("99.99"), "hospital_d", *LINEAGE),
        ]),
        ignore_row_order=True,
        ignore_nullable=True,
    )
