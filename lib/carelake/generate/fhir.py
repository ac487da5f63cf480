"""Generated records as FHIR R4 resources: a hospital that sends bulk NDJSON and Bundles.

Each entity's batch becomes resources of one type (providers -> Practitioner, patients ->
Patient, encounters -> Encounter, procedures -> Procedure; with a PractitionerRole per
Practitioner and a Condition per Encounter when conf joins specialty / diagnosis from them) in the
shape that ``conf/``'s FHIR mapping reads: identifiers by system, coded elements with their code systems, references as
``<Type>/<id>``, and the columns FHIR has no element for as extensions. Value codes of the
mapping (``gender: {female: F}``) are applied in reverse, as for the delimited layouts.
A broken value (:class:`~carelake.generate.formats.Raw`) is written as a JSON string wherever it
lands, so it breaks the resource the way a faulty producer would.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from carelake.config import SourceEntity, SourceSystem
from carelake.generate.formats import Raw

EXTENSION = "http://carelake.example/fhir/StructureDefinition/"
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
CPT_SYSTEM = "http://www.ama-assn.org/go/cpt"
HCPCS_SYSTEM = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
TAXONOMY_SYSTEM = "http://nucc.org/provider-taxonomy"
IDENTIFIER_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0203"
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONDITION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-category"
CLAIM_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/claim-type"
ADJUDICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/adjudication"
SNOMED_SYSTEM = "http://snomed.info/sct"

RESOURCE_TYPES = {"providers": "Practitioner", "patients": "Patient", "encounters": "Encounter", "procedures": "Procedure",
                  "claims": "ExplanationOfBenefit", "referrals": "ServiceRequest"}
# Resources written next to an entity's own when conf joins columns from them (``joined:``):
# the PractitionerRole of each Practitioner (specialty), the Condition of each Encounter (diagnosis).
COMPANION_TYPES = {"providers": "PractitionerRole", "encounters": "Condition"}


def practitioner_id(npi: Any) -> str | None:
    """The Practitioner resource id this hospital gives the provider with ``npi``."""
    return None if npi is None else f"pr-{npi}"


def _text(value: Any) -> Any:
    if value is None or isinstance(value, (Raw, str, bool, int)):
        return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _money(cents: Any) -> Any:
    if cents is None or isinstance(cents, Raw):
        return cents
    return round(int(cents) / 100, 2)


def _prune(node: Any) -> Any:
    """Drop nulls and what becomes empty without them: FHIR JSON has no nulls nor empty elements."""
    if isinstance(node, dict):
        pruned = {k: _prune(v) for k, v in node.items()}
        return {k: v for k, v in pruned.items() if v not in (None, {}, [])}
    if isinstance(node, list):
        pruned = [_prune(v) for v in node]
        return [v for v in pruned if v not in (None, {}, [])]
    return node


def _extension(name: str, kind: str, value: Any) -> dict[str, Any] | None:
    return None if value is None else {"url": EXTENSION + name, kind: value}


def _reference(kind: str, local_id: Any) -> dict[str, Any] | None:
    return None if local_id is None else {"reference": f"{kind}/{local_id}"}


def _taxonomy(r: dict[str, Any]) -> dict[str, Any]:
    return {"system": TAXONOMY_SYSTEM, "code": r.get("taxonomy_code"), "display": r.get("specialty")}


class FhirRenderer:
    """Renders one entity's batches of a FHIR source system as resources."""

    def __init__(self, system: SourceSystem, entity: SourceEntity) -> None:
        if entity.entity not in RESOURCE_TYPES:
            raise ValueError(f"sources.{system.name}.entities.{entity.entity}: no FHIR resource generator for this entity; "
                             f"expected one of {', '.join(RESOURCE_TYPES)}")
        if entity.resource != RESOURCE_TYPES[entity.entity]:
            raise ValueError(f"sources.{system.name}.entities.{entity.entity}.resource: the generator writes "
                             f"{RESOURCE_TYPES[entity.entity]}, found {entity.resource!r}")
        companions = {j.entity for j in entity.joined.values()}
        for name in companions:
            found = system.entities[name].resource
            if entity.entity not in COMPANION_TYPES or found != COMPANION_TYPES[entity.entity]:
                raise ValueError(f"sources.{system.name}.entities.{name}.resource: the generator joins into "
                                 f"{entity.entity} only {COMPANION_TYPES.get(entity.entity, 'nothing')}, found {found!r}")
        self.companions = sorted(companions)  # the entities whose resources this one's rows also produce
        self.companion_resources: dict[str, list[dict[str, Any]]] = {}  # of the last batch, per companion entity
        self.system = system
        self.entity = entity
        self.columns = list(entity.columns)
        self.codes = {c: {v: k for k, v in m.items()} for c, m in entity.values.items()}
        self.patient_of_encounter: dict[str, str] = {}  # filled by the encounters renderer, read by procedures'

    def _coded(self, column: str, value: Any) -> Any:
        codes = self.codes.get(column)
        if codes is None or value is None or isinstance(value, Raw):
            return value
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return codes.get(text, text)

    def resources(self, batch: dict[str, list[Any]]) -> list[dict[str, Any]]:
        """The batch's rows as FHIR resources (dicts), in row order."""
        if self.entity.entity == "encounters":
            self.patient_of_encounter.clear()  # procedures follow their month's encounters
        n = len(batch[self.columns[0]])
        rows = ({c: self._coded(c, batch[c][i]) for c in self.columns} for i in range(n))
        build: Callable[[dict[str, Any]], dict[str, Any]] = getattr(self, f"_{self.entity.entity}")
        rows = list(rows)
        self.companion_resources = {}
        if self.companions:
            companion: Callable[[dict[str, Any]], dict[str, Any]] = getattr(self, f"_{self.entity.entity}_companion")
            made = [_prune(companion(row)) for row in rows]
            self.companion_resources = {name: made for name in self.companions}
        return [_prune(build(row)) for row in rows]

    def _providers(self, r: dict[str, Any]) -> dict[str, Any]:
        return {
            "resourceType": "Practitioner",
            "id": practitioner_id(r["npi"]),
            "meta": {"lastUpdated": _text(r.get("updated_at"))},
            "extension": [
                _extension("organization", "valueString", r.get("organization")),
                _extension("network-id", "valueString", r.get("network_id")),
                _extension("employer-id", "valueString", r.get("employer_id")),
            ],
            "identifier": [{"system": NPI_SYSTEM, "value": _text(r["npi"])}],
            "active": r.get("active"),
            "name": [{"use": "official", "family": r.get("last_name"), "given": [r.get("first_name")]}],
            "address": [{"use": "work", "postalCode": r.get("zip")}],
            "qualification": None if self.companions else [{"code": {"coding": [_taxonomy(r)]}}],
        }

    def _providers_companion(self, r: dict[str, Any]) -> dict[str, Any]:
        return {
            "resourceType": "PractitionerRole",
            "id": None if r["npi"] is None else f"role-{r['npi']}",
            "meta": {"lastUpdated": _text(r.get("updated_at"))},
            "practitioner": _reference("Practitioner", practitioner_id(r["npi"])),
            "specialty": [{"coding": [_taxonomy(r)]}],
        }

    def _patients(self, r: dict[str, Any]) -> dict[str, Any]:
        return {
            "resourceType": "Patient",
            "id": _text(r["patient_id"]),
            "meta": {"lastUpdated": _text(r.get("updated_at"))},
            "identifier": [
                {"type": {"coding": [{"system": IDENTIFIER_TYPE_SYSTEM, "code": "MR"}]},
                 "system": f"urn:carelake:{self.system.name}:mrn", "value": r.get("mrn")},
                {"system": SSN_SYSTEM, "value": r.get("ssn")},
            ],
            "name": [{"use": "official", "family": r.get("last_name"), "given": [r.get("first_name")]}],
            "telecom": [{"system": "phone", "value": r.get("phone")}, {"system": "email", "value": r.get("email")}],
            "gender": r.get("sex"),
            "birthDate": _text(r.get("birth_date")),
            "address": [{"use": "home", "line": [r.get("street_address")], "postalCode": r.get("zip")}],
        }

    def _encounters(self, r: dict[str, Any]) -> dict[str, Any]:
        if r["encounter_id"] is not None and r.get("patient_id") is not None:
            self.patient_of_encounter[str(r["encounter_id"])] = str(r["patient_id"])
        return {
            "resourceType": "Encounter",
            "id": _text(r["encounter_id"]),
            "meta": {"lastUpdated": _text(r.get("updated_at"))},
            "extension": [
                _extension("readmitted-30d", "valueBoolean", r.get("readmitted_30d")),
                _extension("complication", "valueBoolean", r.get("complication")),
                _extension("satisfaction-score", "valueInteger", r.get("satisfaction_score")),
            ],
            "status": "finished",
            "class": {"system": ACT_CODE_SYSTEM, "code": r.get("encounter_type")},
            "serviceType": {"text": r.get("department")},
            "subject": _reference("Patient", r.get("patient_id")),
            "participant": [{"individual": _reference("Practitioner", practitioner_id(r.get("npi")))}],
            "period": {"start": _text(r.get("admit_date")), "end": _text(r.get("discharge_date"))},
            "reasonCode": None if self.companions else [{"coding": [{"system": ICD10_SYSTEM, "code": r.get("diagnosis_code")}]}],
        }

    def _encounters_companion(self, r: dict[str, Any]) -> dict[str, Any]:
        encounter = r["encounter_id"]
        return {
            "resourceType": "Condition",
            "id": None if encounter is None else f"dx-{encounter}",
            "category": [{"coding": [{"system": CONDITION_CATEGORY_SYSTEM, "code": "encounter-diagnosis"}]}],
            "code": {"coding": [{"system": ICD10_SYSTEM, "code": r.get("diagnosis_code")}]},
            # R4 requires a subject; a diagnosis of an encounter without a patient still names one
            "subject": {"reference": f"Patient/{r.get('patient_id') if r.get('patient_id') is not None else 'unknown'}"},
            "encounter": _reference("Encounter", encounter),
            # a broken admit date is the Encounter's defect: planted once, there
            "recordedDate": None if isinstance(r.get("admit_date"), Raw) else _text(r.get("admit_date")),
        }

    def _procedures(self, r: dict[str, Any]) -> dict[str, Any]:
        code = r.get("procedure_code")
        system = HCPCS_SYSTEM if isinstance(code, str) and code[:1].isalpha() and code[1:].isdigit() else CPT_SYSTEM
        encounter = r.get("encounter_id")
        return {
            "resourceType": "Procedure",
            "id": _text(r["procedure_id"]),
            "extension": [
                _extension("units", "valueInteger", r.get("units")),
                _extension("charge", "valueMoney", {"value": _money(r.get("charge_amount")), "currency": "USD"}
                           if r.get("charge_amount") is not None else None),
            ],
            "status": "completed",
            "code": {"coding": [{"system": system, "code": code}]},
            # R4 requires a subject; a procedure of an unknown encounter still names one
            "subject": {"reference": f"Patient/{self.patient_of_encounter.get(str(encounter), 'unknown')}"},
            "encounter": _reference("Encounter", encounter),
            "performedDateTime": _text(r.get("procedure_date")),
            "performer": [{"actor": _reference("Practitioner", practitioner_id(r.get("npi")))}],
        }


    def _claims(self, r: dict[str, Any]) -> dict[str, Any]:
        def total(category: str, cents: Any) -> dict[str, Any] | None:
            amount = _money(cents)
            return None if amount is None else {
                "category": {"coding": [{"system": ADJUDICATION_SYSTEM, "code": category}]},
                "amount": {"value": amount, "currency": "USD"}}

        return {
            "resourceType": "ExplanationOfBenefit",
            "id": _text(r["claim_id"]),
            "meta": {"lastUpdated": _text(r.get("updated_at"))},
            "extension": [_extension("claim-status", "valueString", r.get("status"))],
            "status": "active",
            "type": {"coding": [{"system": CLAIM_TYPE_SYSTEM, "code": "institutional"}]},
            "use": "claim",
            # R4 requires a patient; a claim of an unknown patient still names one
            "patient": {"reference": f"Patient/{r.get('patient_id') if r.get('patient_id') is not None else 'unknown'}"},
            "billablePeriod": {"start": _text(r.get("service_date"))},
            "created": _text(r.get("submitted_date")),
            "insurer": {"display": r.get("payer")},
            "provider": _reference("Practitioner", practitioner_id(r.get("npi"))),
            "outcome": "complete",
            "insurance": [{"focal": True, "coverage": {"display": r.get("payer")}}],
            "item": [{"sequence": 1, "productOrService": {"text": "encounter"},
                      "encounter": [_reference("Encounter", r.get("encounter_id"))]}],
            "total": [total("submitted", r.get("billed_amount")), total("eligible", r.get("allowed_amount")),
                      total("benefit", r.get("paid_amount"))],
            "payment": {"date": _text(r.get("paid_date"))},
        }

    def _referrals(self, r: dict[str, Any]) -> dict[str, Any]:
        def npi(value: Any) -> dict[str, Any] | None:
            # by identifier: the provider referred to need not be one of this hospital's Practitioners
            return None if value is None else {"identifier": {"system": NPI_SYSTEM, "value": _text(value)}}

        return {
            "resourceType": "ServiceRequest",
            "id": _text(r["referral_id"]),
            "meta": {"lastUpdated": _text(r.get("updated_at"))},
            "extension": [_extension("referral-status", "valueString", r.get("status")),
                          _extension("employer-id", "valueString", r.get("employer_id"))],
            "status": "active",
            "intent": "order",
            "category": [{"coding": [{"system": SNOMED_SYSTEM, "code": "3457005", "display": "Patient referral"}]}],
            "subject": {"reference": f"Patient/{r.get('patient_id') if r.get('patient_id') is not None else 'unknown'}"},
            "authoredOn": _text(r.get("referral_date")),
            "requester": npi(r.get("referring_npi")),
            "performer": [npi(r.get("referred_to_npi"))],
            "performerType": {"text": r.get("specialty_requested")},
        }


def ndjson(resources: list[dict[str, Any]]) -> bytes:
    """Bulk-data NDJSON: one resource per line."""
    return "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in resources).encode("utf-8")


def bundle(bundle_id: str, resources: list[dict[str, Any]]) -> bytes:
    """A collection Bundle of ``resources``, pretty-printed as senders of Bundles often do."""
    document = {"resourceType": "Bundle", "id": bundle_id, "type": "collection",
                "entry": [{"resource": r} for r in resources]}
    return (json.dumps(document, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
