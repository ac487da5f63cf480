"""FHIR R4 as a source format: mapping by FHIRPath, validation, references, NDJSON and Bundles.

Expectations are written by hand from the resources below; hospital_d's mapping is the one in
conf/local.yaml.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from carelake.config import Config, ConfigError, JoinedColumn, load_config
from carelake.ingest.fhir_read import BUNDLE, NDJSON, fhir_columns, read_fhir_files
from carelake.sources import fhir
from carelake.sources.fhir import (
    ResourceMapper,
    join_referencing,
    resolve_references,
    validation_issues,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG = load_config(REPO / "conf" / "local.yaml", env={})
D = CONFIG.sources["hospital_d"]
EXT = "http://carelake.example/fhir/StructureDefinition/"

PRACTITIONER = {
    "resourceType": "Practitioner", "id": "pr-1", "meta": {"lastUpdated": "2024-01-02T03:04:05Z"},
    "extension": [{"url": EXT + "organization", "valueString": "Northgate Clinic"},
                  {"url": EXT + "network-id", "valueString": "NET-1"},
                  {"url": EXT + "employer-id", "valueString": "EMP-0001"}],
    "identifier": [{"system": "urn:other", "value": "X9"},
                   {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
    "active": True,
    "name": [{"use": "nickname", "family": "Nick", "given": ["N"]},
             {"use": "official", "family": "Lee", "given": ["Ann", "B"]}],
    "address": [{"use": "work", "postalCode": "60601"}],
    "qualification": [{"code": {"coding": [{"system": "http://nucc.org/provider-taxonomy", "code": "207RC0000X",
                                            "display": "Cardiology"}]}}],
}
PATIENT = {
    "resourceType": "Patient", "id": "P1", "meta": {"lastUpdated": "2024-01-05T10:00:00.123+00:00"},
    "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                    "system": "urn:mrn", "value": "M-1"},
                   {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "111-22-3333"}],
    "name": [{"use": "official", "family": "One", "given": ["Al"]}],
    "telecom": [{"system": "email", "value": "a@x.org"}, {"system": "phone", "value": "555-0101"}],
    "gender": "male", "birthDate": "1980-01-31",
    "address": [{"use": "old", "line": ["9 Old Rd"], "postalCode": "10001"},
                {"use": "home", "line": ["1 Main St", "Apt 2"], "postalCode": "60601"}],
}
ENCOUNTER = {
    "resourceType": "Encounter", "id": "E1", "meta": {"lastUpdated": "2024-01-06T00:00:00Z"},
    "extension": [{"url": EXT + "readmitted-30d", "valueBoolean": False},
                  {"url": EXT + "complication", "valueBoolean": True},
                  {"url": EXT + "satisfaction-score", "valueInteger": 4}],
    "status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
    "serviceType": {"text": "Cardiology"},
    "subject": {"reference": "Patient/P1"},
    "participant": [{"individual": {"reference": "Practitioner/pr-1"}}],
    "period": {"start": "2024-01-05", "end": "2024-01-07"},
    "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10"}]}],
}
PROCEDURE = {
    "resourceType": "Procedure", "id": "PR1", "status": "completed",
    "extension": [{"url": EXT + "units", "valueInteger": 2},
                  {"url": EXT + "charge", "valueMoney": {"value": 1234.5, "currency": "USD"}}],
    "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "93000"}]},
    "subject": {"reference": "Patient/P1"},
    "encounter": {"reference": "urn:uuid:E1"},
    "performedDateTime": "2024-01-06T09:30:00Z",
    "performer": [{"actor": {"reference": "Practitioner/pr-1"}}],
}

PRACTITIONER_ROLE = {
    "resourceType": "PractitionerRole", "id": "role-1", "meta": {"lastUpdated": "2024-01-02T03:04:05Z"},
    "practitioner": {"reference": "Practitioner/pr-1"},
    "code": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/practitioner-role", "code": "doctor"}]}],
    "specialty": [{"coding": [{"system": "http://snomed.info/sct", "code": "394579002"},
                              {"system": "http://nucc.org/provider-taxonomy", "code": "207RC0000X", "display": "Cardiology"}]}],
}
CONDITION = {
    "resourceType": "Condition", "id": "dx-1",
    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}]}],
    "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10"}]},
    "subject": {"reference": "Patient/P1"}, "encounter": {"reference": "Encounter/E1"}, "recordedDate": "2024-01-05",
}
EXPLANATION_OF_BENEFIT = {
    "resourceType": "ExplanationOfBenefit", "id": "C1", "meta": {"lastUpdated": "2024-02-01T00:00:00Z"},
    "extension": [{"url": EXT + "claim-status", "valueString": "PAID"}],
    "status": "active", "use": "claim", "outcome": "complete", "created": "2024-01-10",
    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "institutional"}]},
    "patient": {"reference": "Patient/P1"}, "billablePeriod": {"start": "2024-01-05"},
    "insurer": {"display": "Aetna"}, "provider": {"reference": "Practitioner/pr-1"},
    "insurance": [{"focal": True, "coverage": {"display": "Aetna"}}],
    "item": [{"sequence": 1, "productOrService": {"text": "encounter"}, "encounter": [{"reference": "Encounter/E1"}]}],
    "total": [{"category": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/adjudication", "code": c}]},
               "amount": {"value": v, "currency": "USD"}} for c, v in (("benefit", 80.0), ("submitted", 200.5), ("eligible", 100))],
    "payment": {"date": "2024-01-31"},
}
SERVICE_REQUEST = {
    "resourceType": "ServiceRequest", "id": "R1", "meta": {"lastUpdated": "2024-01-08T00:00:00Z"},
    "extension": [{"url": EXT + "referral-status", "valueString": "scheduled"}, {"url": EXT + "employer-id", "valueString": "EMP-0001"}],
    "status": "active", "intent": "order", "subject": {"reference": "Patient/P1"}, "authoredOn": "2024-01-07",
    "requester": {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}},
    "performer": [{"identifier": {"system": "urn:other", "value": "X"}},
                  {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1245319599"}}],
    "performerType": {"text": "Cardiology"},
}


def mapper(entity: str) -> ResourceMapper:
    mapping = D.entities[entity]
    return ResourceMapper(mapping.resource or "", mapping.paths, mapping.checks)


def extracted(entity: str, resource: dict) -> dict:
    """The mapped columns of one resource's raw row, by canonical name."""
    m = mapper(entity)
    return dict(zip(m.columns, m.row(resource)[: len(m.columns)], strict=True))


def issues(entity: str, resource: dict) -> list[str]:
    return json.loads(mapper(entity).row(resource)[-1] or "[]")


# -- configuration -----------------------------------------------------------------------------

def test_hospital_d_is_a_fhir_source_with_fhirpath_columns() -> None:
    assert D.format == "fhir" and D.bundles == "hospital_d/bundles/*.json"
    encounters = D.entities["encounters"]
    assert encounters.resource == "Encounter"
    assert encounters.paths["admit_date"] == "Encounter.period.start"
    # raw columns of a FHIR entity are the canonical names
    assert encounters.columns["admit_date"] == "admit_date"
    assert encounters.references == {"patient_id": "patients.patient_id", "npi": "providers.npi"}


def _with_entity(tmp_path: Path, entity_yaml: str) -> Path:
    conf = tmp_path / "bad.yaml"
    conf.write_text(
        "extends: " + str(REPO / "conf" / "local.yaml") + "\n"
        "sources:\n  hospital_d:\n    entities:\n      encounters:\n" + entity_yaml
    )
    return conf


def test_a_column_that_is_not_fhirpath_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    conf = _with_entity(tmp_path, "        columns: {npi: \"Encounter.participant.where(\"}\n")
    with pytest.raises(ConfigError, match=r"sources\.hospital_d\.entities\.encounters\.columns\.npi' is not a FHIRPath"):
        load_config(conf, env={})


def test_a_reference_to_an_unmapped_column_is_a_config_error(tmp_path: Path) -> None:
    conf = _with_entity(tmp_path, "        references: {npi: providers.no_such_column}\n")
    with pytest.raises(ConfigError, match=r"encounters\.references\.npi' names 'providers\.no_such_column'"):
        load_config(conf, env={})


# -- mapping, one resource type at a time ---------------------------------------------------------

def test_practitioner_mapping() -> None:
    assert extracted("providers", PRACTITIONER) == {
        "npi": "1234567893", "first_name": "Ann", "last_name": "Lee", "organization": "Northgate Clinic", "zip": "60601",
        "network_id": "NET-1", "employer_id": "EMP-0001", "active": "true", "updated_at": "2024-01-02T03:04:05Z",
    }
    assert issues("providers", PRACTITIONER) == []


def test_patient_mapping() -> None:
    assert extracted("patients", PATIENT) == {
        "patient_id": "P1", "first_name": "Al", "last_name": "One", "ssn": "111-22-3333", "phone": "555-0101",
        "email": "a@x.org", "street_address": "1 Main St", "birth_date": "1980-01-31", "sex": "male",
        "zip": "60601", "mrn": "M-1", "updated_at": "2024-01-05T10:00:00.123+00:00",
    }
    assert issues("patients", PATIENT) == []


def test_encounter_mapping_keeps_references_and_reads_extensions() -> None:
    assert extracted("encounters", ENCOUNTER) == {
        "encounter_id": "E1", "patient_id": "Patient/P1", "npi": "Practitioner/pr-1", "department": "Cardiology",
        "encounter_type": "IMP", "admit_date": "2024-01-05", "discharge_date": "2024-01-07",
        "readmitted_30d": "false", "complication": "true", "satisfaction_score": "4", "updated_at": "2024-01-06T00:00:00Z",
    }
    assert issues("encounters", ENCOUNTER) == []


def test_procedure_mapping() -> None:
    assert extracted("procedures", PROCEDURE) == {
        "procedure_id": "PR1", "encounter_id": "urn:uuid:E1", "npi": "Practitioner/pr-1", "procedure_code": "93000",
        "procedure_date": "2024-01-06T09:30:00Z", "units": "2", "charge_amount": "1234.5",
    }
    assert issues("procedures", PROCEDURE) == []


def test_practitioner_role_mapping_reads_the_taxonomy_among_other_codings() -> None:
    assert extracted("provider_roles", PRACTITIONER_ROLE) == {
        "practitioner": "Practitioner/pr-1", "specialty": "Cardiology", "taxonomy_code": "207RC0000X",
        "updated_at": "2024-01-02T03:04:05Z",
    }
    assert issues("provider_roles", PRACTITIONER_ROLE) == []
    # specialty reaches providers by a join on that reference, not from Practitioner.qualification
    assert D.entities["providers"].joined["specialty"] == JoinedColumn("provider_roles", "specialty", "practitioner")
    assert "specialty" not in D.entities["providers"].paths


def test_condition_mapping_and_its_code_system_check() -> None:
    assert extracted("diagnoses", CONDITION) == {"encounter": "Encounter/E1", "diagnosis_code": "I10", "recorded_date": "2024-01-05"}
    assert issues("diagnoses", CONDITION) == []
    snomed = {**CONDITION, "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]}}
    assert issues("diagnoses", snomed) == ["fhir_check:diagnosis_code_system"]
    assert issues("diagnoses", {k: v for k, v in CONDITION.items() if k != "subject"})[0].startswith("fhir_invalid:Condition: ")
    assert D.entities["encounters"].joined["diagnosis_code"] == JoinedColumn("diagnoses", "diagnosis_code", "encounter")


def test_explanation_of_benefit_mapping_picks_each_total_by_category() -> None:
    assert extracted("claims", EXPLANATION_OF_BENEFIT) == {
        "claim_id": "C1", "patient_source_system": "hospital_d", "encounter_id": "Encounter/E1", "patient_id": "Patient/P1",
        "npi": "Practitioner/pr-1", "payer": "Aetna", "billed_amount": "200.5", "allowed_amount": "100", "paid_amount": "80.0",
        "status": "PAID", "service_date": "2024-01-05", "submitted_date": "2024-01-10", "paid_date": "2024-01-31",
        "updated_at": "2024-02-01T00:00:00Z",
    }
    assert issues("claims", EXPLANATION_OF_BENEFIT) == []
    assert any(i.startswith("fhir_invalid:ExplanationOfBenefit: ") and "insurer" in i
               for i in issues("claims", {k: v for k, v in EXPLANATION_OF_BENEFIT.items() if k != "insurer"}))


def test_service_request_mapping_reads_npis_by_identifier() -> None:
    assert extracted("referrals", SERVICE_REQUEST) == {
        "referral_id": "R1", "referring_npi": "1234567893", "referred_to_npi": "1245319599", "patient_source_system": "hospital_d",
        "patient_id": "Patient/P1", "employer_id": "EMP-0001", "referral_date": "2024-01-07", "status": "scheduled",
        "specialty_requested": "Cardiology", "updated_at": "2024-01-08T00:00:00Z",
    }
    assert issues("referrals", SERVICE_REQUEST) == []
    assert issues("referrals", {**SERVICE_REQUEST, "intent": None})[0].startswith("fhir_invalid:ServiceRequest")


def test_a_joined_column_from_an_unmapped_column_is_a_config_error(tmp_path: Path) -> None:
    conf = _with_entity(tmp_path, "        joined: {diagnosis_code: {from: diagnoses.no_such_column, by: encounter}}\n")
    with pytest.raises(ConfigError, match=r"encounters\.joined\.diagnosis_code' names diagnoses\.no_such_column"):
        load_config(conf, env={})
    conf = _with_entity(tmp_path, "        joined: {diagnosis_code: diagnoses.diagnosis_code}\n")
    with pytest.raises(ConfigError, match=r"encounters\.joined\.diagnosis_code' must be \{from: "):
        load_config(conf, env={})


def test_the_raw_row_keeps_type_id_and_the_resource_text() -> None:
    text = json.dumps(PATIENT)
    row = mapper("patients").row(PATIENT, text)
    assert row[-4:] == ["Patient", "P1", text, None]


# -- validation ------------------------------------------------------------------------------------

def test_missing_required_element_is_reported_by_the_r4_model() -> None:
    no_status = {k: v for k, v in ENCOUNTER.items() if k != "status"}
    found = issues("encounters", no_status)
    assert len(found) == 1 and found[0].startswith("fhir_invalid:Encounter: ")
    assert '"status"' in found[0] and "missing" in found[0] and " at 0x" not in found[0]


def test_wrong_element_type_and_bad_date_name_the_element() -> None:
    broken = {**PATIENT, "gender": 5, "birthDate": "1980-13-45"}
    found = issues("patients", broken)
    assert [i.split(":")[1] for i in found] == ["Patient.birthDate", "Patient.gender"]


def test_unknown_element_wrong_type_and_missing_id() -> None:
    assert any(i.startswith("fhir_invalid:") and "colour" in i for i in issues("patients", {**PATIENT, "colour": "red"}))
    assert validation_issues(ENCOUNTER, "Patient") == ["resource_type_unexpected:Encounter"]
    assert issues("patients", {k: v for k, v in PATIENT.items() if k != "id"}) == ["fhir_id_missing"]


def test_a_code_outside_the_declared_system_fails_its_check() -> None:
    snomed = {**PROCEDURE, "code": {"coding": [{"system": "http://snomed.info/sct", "code": "430193006"}]}}
    assert issues("procedures", snomed) == ["fhir_check:procedure_code_system"]
    assert issues("procedures", PROCEDURE) == []


def test_bundle_entries_of_other_types_are_left_to_their_entity() -> None:
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": PATIENT}, {"resource": ENCOUNTER}, {"resource": {**PATIENT, "id": "P2"}}]}
    assert [r["id"] for r in fhir.resources_in(bundle, "Patient")] == ["P1", "P2"]
    assert [r["id"] for r in fhir.resources_in(ENCOUNTER, "Patient")] == ["E1"]  # a lone resource is itself


# -- references resolved with joins -----------------------------------------------------------------

def test_references_resolve_to_the_target_column_and_unresolved_ones_are_flagged(spark) -> None:
    at = datetime(2024, 1, 1)
    raw = spark.createDataFrame(
        [("E1", "Patient/P1", "Practitioner/pr-1", None, "hospital_d"),
         ("E2", "urn:uuid:P1", "Practitioner/pr-404", None, "hospital_d"),
         ("E3", None, "Practitioner/pr-1", '["fhir_check:x"]', "hospital_d"),
         ("A1", "P7", "1245319599", None, "hospital_a")],
        "encounter_id string, patient_id string, npi string, fhir_issues string, _source_system string")
    providers = spark.createDataFrame(
        [("pr-1", "1234567890", at, "hospital_d"), ("pr-1", "1234567893", datetime(2024, 2, 1), "hospital_d"),
         ("pr-404", "1245319599", at, "hospital_a")],
        "fhir_resource_id string, npi string, _ingested_at timestamp, _source_system string")
    patients = spark.createDataFrame([("P1", "P1", at, "hospital_d")],
                                     "fhir_resource_id string, patient_id string, _ingested_at timestamp, _source_system string")
    out = resolve_references(raw, D, D.entities["encounters"], {"providers": providers, "patients": patients})
    expected = spark.createDataFrame(
        [("E1", "P1", "1234567893", None, "hospital_d"),
         ("E2", "P1", None, '["reference_unresolved:npi"]', "hospital_d"),
         ("E3", None, "1234567893", '["fhir_check:x"]', "hospital_d"),
         ("A1", "P7", "1245319599", None, "hospital_a")],
        "encounter_id string, patient_id string, npi string, fhir_issues string, _source_system string")
    assert_df_equality(out.select(*expected.columns), expected, ignore_row_order=True, ignore_nullable=True)


def test_joined_columns_come_from_the_latest_resource_pointing_at_the_row(spark) -> None:
    raw = spark.createDataFrame(
        [("E1", None, "hospital_d"), ("E2", None, "hospital_d"), ("E3", '["fhir_check:x"]', "hospital_d"),
         ("A1", None, "hospital_a")],
        "fhir_resource_id string, fhir_issues string, _source_system string").withColumn(
        "diagnosis_code", F.when(F.col("_source_system") == "hospital_a", F.lit("J45")))
    at = datetime(2024, 1, 1)
    conditions = spark.createDataFrame(
        [("Encounter/E1", "I10", None, at, "hospital_d"), ("urn:uuid:E1", "I11", None, datetime(2024, 2, 1), "hospital_d"),
         ("Encounter/E3", "E11", '["fhir_check:diagnosis_code_system"]', at, "hospital_d"),
         ("Encounter/E2", "Z00", None, at, "hospital_a"), ("Encounter/E404", "R51", None, at, "hospital_d")],
        "encounter string, diagnosis_code string, fhir_issues string, _ingested_at timestamp, _source_system string")
    out = join_referencing(raw, D, D.entities["encounters"], {"diagnoses": conditions})
    expected = spark.createDataFrame(
        [("E1", "I11", None, "hospital_d"),
         ("E2", None, None, "hospital_d"),  # the only Condition naming E2 is another source's
         ("E3", "E11", '["fhir_check:x","diagnoses:fhir_check:diagnosis_code_system"]', "hospital_d"),
         ("A1", "J45", None, "hospital_a")],
        "fhir_resource_id string, diagnosis_code string, fhir_issues string, _source_system string")
    assert_df_equality(out.select(*expected.columns), expected, ignore_row_order=True, ignore_nullable=True)


# -- reading files on executors ----------------------------------------------------------------------

def test_ndjson_and_bundle_files_read_into_raw_rows(spark, config: Config, tmp_path: Path) -> None:
    ndjson = tmp_path / "Patient_1.ndjson"
    ndjson.write_text(json.dumps(PATIENT) + "\n\n" + "{not json\n" + json.dumps(ENCOUNTER) + "\n")
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:P2", "resource": {**PATIENT, "id": "P2"}}, {"resource": ENCOUNTER}]}, indent=2))
    frame = read_fhir_files(spark, config, D, D.entities["patients"], [(str(ndjson), NDJSON), (str(bundle), BUNDLE)])
    assert frame.columns == [*fhir_columns(D.entities["patients"]), "_corrupt_record", "_source_file"]
    rows = {(r.fhir_resource_id, r._source_file.rsplit("/", 1)[-1]): r for r in frame.collect()}
    assert set(rows) == {("P1", "Patient_1.ndjson"), (None, "Patient_1.ndjson"), ("E1", "Patient_1.ndjson"), ("P2", "bundle.json")}
    assert rows[("P1", "Patient_1.ndjson")].fhir_resource == json.dumps(PATIENT)  # the line as received
    assert json.loads(rows[("P2", "bundle.json")].fhir_resource)["id"] == "P2"
    assert rows[("P2", "bundle.json")].last_name == "One" and rows[("P2", "bundle.json")].fhir_issues is None
    assert rows[(None, "Patient_1.ndjson")]._corrupt_record.startswith("not JSON")
    wrong = rows[("E1", "Patient_1.ndjson")]
    assert json.loads(wrong.fhir_issues) == ["resource_type_unexpected:Encounter"] and wrong.patient_id is None
    assert frame.where(F.col("fhir_resource_type") == "Patient").count() == 2


# -- ingest and process end to end, on hospital_d alone ---------------------------------------------

def fhir_only(config: Config) -> Config:
    """``config`` with hospital_d as the only source and no expectation suites (speed)."""
    return config.with_overrides(**{"sources": {"hospital_d": config.raw["sources"]["hospital_d"]},
                                    "quality.great_expectations": False, "quality.max_quarantine_rate": 1.0})


def land(config: Config, relative: str, text: str) -> None:
    target = Path(config.landing) / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def ndjson(*resources: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in resources)


def quarantined(tables, config: Config) -> dict[tuple[str, str], list[str]]:
    """(entity, resource id) -> reasons, read from the quarantine's payloads."""
    from carelake.storage import table_uri

    rows = tables.read(table_uri(config, "processed", "_quarantine")).collect()
    return {(r.entity, json.loads(r.raw_payload)["fhir_resource_id"]): sorted(r.reasons) for r in rows}


def test_fhir_hospital_flows_to_processed_and_bad_resources_are_quarantined(spark, config: Config) -> None:
    from carelake.delta import open_tables
    from carelake.ingest import run_ingest
    from carelake.process import run_process
    from carelake.storage import table_uri

    config = fhir_only(config)
    tables = open_tables(spark, config)
    no_status = {k: v for k, v in ENCOUNTER.items() if k != "status"} | {"id": "E3"}
    land(config, "hospital_d/bulk/Practitioner_1.ndjson", ndjson(PRACTITIONER))
    land(config, "hospital_d/bulk/Patient_1.ndjson", ndjson(PATIENT, {**PATIENT, "id": "P2", "birthDate": "1980-13-45"}))
    land(config, "hospital_d/bulk/Encounter_1.ndjson", ndjson(
        ENCOUNTER,
        {**ENCOUNTER, "id": "E2", "participant": [{"individual": {"reference": "Practitioner/pr-404"}}]},
        no_status))
    land(config, "hospital_d/bulk/PractitionerRole_1.ndjson", ndjson(PRACTITIONER_ROLE))
    land(config, "hospital_d/bulk/Condition_1.ndjson", ndjson(CONDITION, {**CONDITION, "id": "dx-2", "encounter": {"reference": "Encounter/E2"}}))
    to_pr1 = {**SERVICE_REQUEST, "performer": [{"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}}]}
    land(config, "hospital_d/bulk/ServiceRequest_1.ndjson", ndjson(to_pr1, {**to_pr1, "id": "R2", "subject": {"reference": "Patient/P404"}}))
    land(config, "hospital_d/bundles/b1.json", json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {**PATIENT, "id": "P3", "name": [{"use": "official", "family": "Three", "given": ["Cy"]}]}},
        {"resource": EXPLANATION_OF_BENEFIT},
        {"resource": {**EXPLANATION_OF_BENEFIT, "id": "C2", "item": [{"sequence": 1, "encounter": [{"reference": "Encounter/E3"}],
                                                                      "productOrService": {"text": "encounter"}}]}},
        {"resource": PROCEDURE},
        {"resource": {**PROCEDURE, "id": "PR2", "code": {"coding": [{"system": "http://snomed.info/sct", "code": "430193006"}]}}},
    ]}, indent=2))

    ingest = run_ingest(spark, config, tables, "r1")
    assert ingest.status == "ok", ingest.notes
    # the Bundle is logged once for each entity it fed
    log = tables.read(table_uri(config, "raw", "_ingest_log")).where("file_name = 'hospital_d/bundles/b1.json'")
    assert {(r.entity, r.rows) for r in log.collect()} == {
        ("patients", 1), ("procedures", 2), ("claims", 2), ("providers", 0), ("encounters", 0),
        ("provider_roles", 0), ("diagnoses", 0), ("referrals", 0)}
    raw = tables.read(table_uri(config, "raw", "encounters")).where("fhir_resource_id = 'E1'").first()
    assert json.loads(raw.fhir_resource) == ENCOUNTER and raw.npi == "Practitioner/pr-1"  # raw keeps what was sent

    process = run_process(spark, config, tables, "r2")
    patients = tables.read(table_uri(config, "processed", "patients"))
    assert {(r.patient_id, r.sex, str(r.birth_date)) for r in patients.collect()} == {("P1", "M", "1980-01-31"), ("P3", "M", "1980-01-31")}
    names = tables.read(table_uri(config, "processed", "patients_pii")).join(patients, "patient_key")
    assert {(r.patient_id, r.last_name, r.mrn) for r in names.collect()} == {("P1", "One", "M-1"), ("P3", "Three", "M-1")}
    encounter = tables.read(table_uri(config, "processed", "encounters")).first()
    assert (encounter.encounter_id, encounter.npi, encounter.encounter_type, encounter.satisfaction_score, encounter.complication) == (
        "E1", "1234567893", "inpatient", 4, True)
    assert encounter.patient_key == patients.where("patient_id = 'P1'").first().patient_key
    assert encounter.diagnosis_code == "I10"  # from the Condition naming E1
    [provider] = tables.read(table_uri(config, "processed", "providers")).collect()
    assert (provider.npi, provider.specialty, provider.taxonomy_code) == ("1234567893", "Cardiology", "207RC0000X")
    [claim] = tables.read(table_uri(config, "processed", "claims")).collect()
    assert (claim.claim_id, claim.patient_source_system, claim.encounter_key, claim.patient_key, claim.npi, claim.status) == (
        "C1", "hospital_d", encounter.encounter_key, encounter.patient_key, "1234567893", "PAID")
    assert (float(claim.billed_amount), float(claim.allowed_amount), float(claim.paid_amount)) == (200.5, 100.0, 80.0)
    [referral] = tables.read(table_uri(config, "processed", "referrals")).collect()
    assert (referral.referral_id, referral.referring_npi, referral.patient_key, str(referral.referral_date)) == (
        "R1", "1234567893", encounter.patient_key, "2024-01-07")
    procedure = tables.read(table_uri(config, "processed", "procedures")).first()
    assert (procedure.procedure_id, procedure.encounter_key, procedure.units, float(procedure.charge_amount)) == (
        "PR1", encounter.encounter_key, 2, 1234.5)

    reasons = quarantined(tables, config)
    assert set(reasons) == {("patients", "P2"), ("encounters", "E2"), ("encounters", "E3"), ("procedures", "PR2"),
                            ("claims", "C2"), ("referrals", "R2")}
    assert "orphan:encounter_key" in reasons[("claims", "C2")]  # its encounter E3 was quarantined
    assert "reference_unresolved:patient_id" in reasons[("referrals", "R2")]
    assert any(r.startswith("fhir_invalid:Patient.birthDate: ") for r in reasons[("patients", "P2")])
    assert "date_unparseable:birth_date" in reasons[("patients", "P2")]
    assert reasons[("encounters", "E2")] == ["key_missing:npi", "reference_unresolved:npi"]
    assert any(r.startswith("fhir_invalid:Encounter: ") and "status" in r for r in reasons[("encounters", "E3")])
    assert reasons[("procedures", "PR2")] == ["code_invalid:procedure_code", "fhir_check:procedure_code_system"]
    for entity in ("providers", "patients", "encounters", "procedures", "claims", "referrals"):
        counts = process.counts(entity)
        assert counts.reconciles and counts.rows_in == counts.rows_valid + counts.rows_quarantined + counts.duplicates_dropped

    again = run_ingest(spark, config, tables, "r3")
    assert again.status == "nothing-to-do", again.notes

    # A mapping change replayed from raw: department read from another element, and a new check
    # that E1 (an inpatient stay) fails; landing is not read again.
    from carelake.ops.replay import replay_entity

    for f in Path(config.landing).rglob("*"):
        f.unlink() if f.is_file() else None
    entities = config.raw["sources"]["hospital_d"]["entities"]
    changed = config.with_overrides(**{"sources": {"hospital_d": {**config.raw["sources"]["hospital_d"], "entities": {
        **entities, "encounters": {**entities["encounters"],
                                   "columns": {**entities["encounters"]["columns"], "department": "Encounter.class.code"},
                                   "checks": {"outpatient": "Encounter.class.code != 'IMP'"}}}}}})
    replayed, summary = replay_entity(spark, changed, tables, "hospital_d", "encounters", "r4")
    assert replayed == 3 and set(summary.entities) == {"encounters", "procedures", "claims"}
    assert {r.fhir_resource_id: r.department for r in tables.read(table_uri(config, "raw", "encounters")).collect()} == {
        "E1": "IMP", "E2": "IMP", "E3": "IMP"}
    assert tables.read(table_uri(config, "processed", "encounters")).count() == 0  # E1 now fails the new check
    reasons = quarantined(tables, config)
    assert "fhir_check:outpatient" in reasons[("encounters", "E1")]
    assert "orphan:encounter_key" in reasons[("procedures", "PR1")]  # its encounter is quarantined now
    for entity in summary.entities:
        assert summary.counts(entity).reconciles, entity


def test_a_foreign_producers_bundle_is_ingested(spark, config: Config, tmp_path: Path) -> None:
    """Output of tietai-synthea (PyPI), a Synthea port that writes FHIR R4 transaction Bundles."""
    import subprocess
    import sys

    from carelake.delta import open_tables
    from carelake.ingest import run_ingest
    from carelake.process import run_process
    from carelake.storage import table_uri

    synthea = Path(sys.executable).parent / "synthea"
    if not synthea.exists():
        pytest.skip(f"tietai-synthea is not installed ({synthea} missing): pip install -c requirements.lock -e '.[test]'")
    out = tmp_path / "synthea"
    subprocess.run([str(synthea), "-p", "1", "-s", "3", "-a", "2-3", "--threads", "1", "-o", str(out)],
                   check=True, capture_output=True, timeout=300)
    [bundle_file] = list((out / "fhir").glob("*.json"))
    bundle = json.loads(bundle_file.read_text())
    of_type = {t: [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == t]
               for t in ("Patient", "Practitioner", "Encounter", "Procedure")}

    config = fhir_only(config)
    tables = open_tables(spark, config)
    land(config, "hospital_d/bundles/synthea.json", bundle_file.read_text())
    assert run_ingest(spark, config, tables, "s1").status == "ok"
    for entity, kind in (("patients", "Patient"), ("providers", "Practitioner"), ("encounters", "Encounter"), ("procedures", "Procedure")):
        raw = tables.read(table_uri(config, "raw", entity))
        assert raw.count() == len(of_type[kind]), entity
    process = run_process(spark, config, tables, "s2")
    [patient] = of_type["Patient"]
    [stored] = tables.read(table_uri(config, "processed", "patients")).collect()
    [pii] = tables.read(table_uri(config, "processed", "patients_pii")).collect()
    official = next(n for n in patient["name"] if n.get("use") == "official")
    assert (stored.patient_id, pii.last_name, str(stored.birth_date)) == (patient["id"], official["family"], patient["birthDate"])
    # Synthea's NPIs (999...) fail the Luhn check and its procedures are SNOMED-coded: each is
    # quarantined with those reasons, and everything is counted.
    reasons = quarantined(tables, config)
    assert {r for (entity, _), rs in reasons.items() if entity == "providers" for r in rs} == {"npi_invalid:npi"}
    assert all("fhir_check:procedure_code_system" in rs for (entity, _), rs in reasons.items() if entity == "procedures")
    for entity in ("providers", "patients", "encounters", "procedures"):
        assert process.counts(entity).reconciles, entity


# -- the generator's FHIR hospital ---------------------------------------------------------------

def _generated(out: Path, config: Config, defect_rate: float):
    from carelake.generate import generate

    return generate(out, fhir_only(config), scale=0.01, seed=42, defect_rate=defect_rate, months=4)


def _resources(path: Path) -> list[dict]:
    if path.suffix == ".ndjson":
        return [json.loads(line) for line in path.read_text().splitlines()]
    return [e["resource"] for e in json.loads(path.read_text())["entry"]]


def test_the_generated_fhir_hospital_is_valid_r4_with_resolvable_references(config: Config, tmp_path: Path) -> None:
    """Checked with a second implementation, fhir.resources (R4B models, pydantic), not the ingest's."""
    import importlib

    from tests.test_generate import luhn_ok

    manifest = _generated(tmp_path, config, 0.0)
    paths = sorted({f.path for f in manifest.files})
    assert "hospital_d/bulk/Patient_2024-01.ndjson" in paths and "hospital_d/bundles/bundle_2024-02.json" in paths
    resources = [r for p in paths for r in _resources(tmp_path / p)]
    by_type: dict[str, dict[str, dict]] = {}
    for r in resources:
        model = getattr(importlib.import_module(f"fhir.resources.R4B.{r['resourceType'].lower()}"), r["resourceType"])
        model.model_validate(r)
        by_type.setdefault(r["resourceType"], {})[r["id"]] = r
    assert set(by_type) == {"Practitioner", "PractitionerRole", "Patient", "Encounter", "Condition", "Procedure",
                            "ExplanationOfBenefit", "ServiceRequest"}
    npis = [i["value"] for p in by_type["Practitioner"].values() for i in p["identifier"]]
    assert npis and all(luhn_ok(n) for n in npis)
    for encounter in by_type["Encounter"].values():
        assert encounter["subject"]["reference"].removeprefix("Patient/") in by_type["Patient"]
        assert encounter["participant"][0]["individual"]["reference"].removeprefix("Practitioner/") in by_type["Practitioner"]
    for procedure in by_type["Procedure"].values():
        assert procedure["encounter"]["reference"].removeprefix("Encounter/") in by_type["Encounter"]
    # one Condition per Encounter and one PractitionerRole per Practitioner version, pointing at it
    assert sorted(c["encounter"]["reference"] for c in by_type["Condition"].values()) == sorted(f"Encounter/{e}" for e in by_type["Encounter"])
    assert {r["practitioner"]["reference"] for r in by_type["PractitionerRole"].values()} == {f"Practitioner/{p}" for p in by_type["Practitioner"]}
    for claim in by_type["ExplanationOfBenefit"].values():
        assert claim["item"][0]["encounter"][0]["reference"].removeprefix("Encounter/") in by_type["Encounter"]
        assert claim["patient"]["reference"].removeprefix("Patient/") in by_type["Patient"]
    assert sum(f.rows for f in manifest.files) == len(resources)


def test_generated_fhir_defects_are_in_the_resources_they_name(config: Config, tmp_path: Path) -> None:
    manifest = _generated(tmp_path, config, 0.1)
    assert {d.kind for d in manifest.defects} >= {"invalid_npi", "null_key", "unparseable_date", "orphan_reference"}
    for d in manifest.defects:
        if d.key is None:
            continue
        ids = [r.get("id") for r in _resources(tmp_path / d.file) if r["resourceType"] == D.entities[d.entity].resource]
        assert ids[d.row] == (f"pr-{d.key}" if d.entity == "providers" else d.key), d


def test_each_claim_and_referral_is_sent_once_by_its_source_of_record(config: Config, tmp_path: Path) -> None:
    """hospital_d's own claims and referrals come as FHIR only; the clearinghouse and the CRM carry the rest."""
    import csv

    from carelake.generate import generate

    def ids(root: Path, manifest, entity: str, system: str) -> list[str]:
        files = sorted({f.path for f in manifest.files if f.entity == entity and f.source_system == system})
        if system == "hospital_d":
            return [r["id"] for f in files for r in _resources(root / f)
                    if r["resourceType"] == D.entities[entity].resource]
        column = {"claims": "CLM_ID", "referrals": "referral_id"}[entity]
        return [row[column] for f in files for row in csv.DictReader((root / f).open())]

    both = generate(tmp_path / "both", config, scale=0.01, seed=7, months=2)
    # the same world with hospital_d sending no claims nor referrals: the feeds then carry all of them
    feeds_only = config.raw["sources"] | {"hospital_d": {**config.raw["sources"]["hospital_d"], "entities": {
        k: v for k, v in config.raw["sources"]["hospital_d"]["entities"].items() if k not in ("claims", "referrals")}}}
    alone = generate(tmp_path / "alone", config.with_overrides(sources=feeds_only), scale=0.01, seed=7, months=2)
    for entity, feed in (("claims", "claims"), ("referrals", "crm")):
        fhir_ids, feed_ids = ids(tmp_path / "both", both, entity, "hospital_d"), ids(tmp_path / "both", both, entity, feed)
        everything = ids(tmp_path / "alone", alone, entity, feed)
        assert fhir_ids and not set(fhir_ids) & set(feed_ids), entity
        assert sorted(fhir_ids + feed_ids) == sorted(everything), entity  # none lost, none twice


# -- replay from raw --------------------------------------------------------------------------------

def test_replay_maps_stored_resources_again_with_the_changed_mapping(spark) -> None:
    """Raw written under a mapping without satisfaction_score, another department path and a check; replayed by conf's."""
    import dataclasses

    from carelake.ingest.fhir_replay import replay_resources

    current = D.entities["encounters"]
    earlier = dataclasses.replace(current, paths={k: v for k, v in current.paths.items() if k != "satisfaction_score"} | {
        "department": "Encounter.class.code"}, checks={"planned": "Encounter.status = 'planned'"})
    no_status = {k: v for k, v in ENCOUNTER.items() if k != "status"} | {"id": "E2"}
    old = ResourceMapper("Encounter", earlier.paths, earlier.checks)
    names = [*earlier.paths, *fhir.RAW_COLUMNS]
    rows = [dict(zip(names, old.row(r, json.dumps(r)), strict=True)) | {"_source_system": "hospital_d", "_corrupt_record": None}
            for r in (ENCOUNTER, no_status)]
    rows.append({"_source_system": "hospital_d", "_corrupt_record": "not JSON"})
    rows.append({"department": "ER", "_source_system": "hospital_a", "_corrupt_record": None})
    columns = [*names, "_corrupt_record", "_source_system", "_batch_id", "_row_hash"]
    raw = spark.createDataFrame([tuple(r.get(c, "b1" if c == "_batch_id" else ("h" if c == "_row_hash" else None)) for c in columns) for r in rows],
                                ", ".join(f"{c} string" for c in columns))
    assert "satisfaction_score" not in raw.columns and raw.where("fhir_issues like '%fhir_check:planned%'").count() == 2

    out = {(r._source_system, r.fhir_resource_id, r._corrupt_record): r for r in replay_resources(raw, D, current).collect()}
    e1, e2 = out[("hospital_d", "E1", None)], out[("hospital_d", "E2", None)]
    assert (e1.satisfaction_score, e1.department, e1.encounter_id, e1._batch_id) == ("4", "Cardiology", "E1", "b1")
    assert e1.fhir_resource == json.dumps(ENCOUNTER) and e1.fhir_issues is None and e1._row_hash != "h"
    assert e2.satisfaction_score == "4" and [i.split(":")[0] for i in json.loads(e2.fhir_issues)] == ["fhir_invalid"]
    # what holds no resource, and other sources' rows, are as they were
    assert out[("hospital_d", None, "not JSON")].department is None and out[("hospital_d", None, "not JSON")]._row_hash == "h"
    other = out[("hospital_a", None, None)]
    assert (other.department, other.satisfaction_score, other._row_hash) == ("ER", None, "h")
