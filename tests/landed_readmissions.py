"""Cross-hospital readmissions computed from the landed files and ``_truth/persons.csv`` with
pandas only (no carelake reader, conformer or measure): the truth the enterprise patient token is
tested against (tests/test_enterprise_patients.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from carelake.config import Config

FOLLOW_UP_DAYS = 30  # CMS: readmission within 30 days of discharge
PLANNED_PREFIXES = ("Z51.0", "Z51.1", "Z51.89")  # CMS "always planned" diagnoses
FHIR_CLASSES = {"IMP": "inpatient", "AMB": "outpatient", "EMER": "emergency"}
DATE_FORMATS = {"yyyy-MM-dd": "%Y-%m-%d", "MM/dd/yyyy": "%m/%d/%Y"}


def _fhir_encounters(landing: Path, patterns: list[str]) -> pd.DataFrame:
    resources = []
    for pattern in patterns:
        for path in sorted(landing.glob(pattern)):
            text = path.read_text(encoding="utf-8")
            if path.suffix == ".ndjson":
                resources += [json.loads(line) for line in text.splitlines() if line.strip()]
            else:
                resources += [e.get("resource", {}) for e in json.loads(text).get("entry", [])]
    rows = []
    for r in resources:
        if r.get("resourceType") != "Encounter":
            continue
        codes = [c.get("code") for rc in r.get("reasonCode", []) for c in rc.get("coding", [])]
        rows.append({
            "encounter_id": r.get("id"), "patient_id": (r.get("subject", {}).get("reference") or "").split("/")[-1],
            "encounter_type": FHIR_CLASSES.get(r.get("class", {}).get("code")),
            "admit_date": r.get("period", {}).get("start"), "discharge_date": r.get("period", {}).get("end"),
            "diagnosis_code": codes[0] if codes else None,
        })
    return pd.DataFrame(rows)


def landed_encounters(landing: Path, config: Config) -> pd.DataFrame:
    """Every hospital's landed encounter rows (their own files and the ``-linked`` ones):
    source_system, encounter_id, patient_id, encounter_type, admit_date, discharge_date (dates;
    NaT when unreadable), diagnosis_code."""
    frames = []
    for name, source in config.sources.items():
        entity = source.entities.get("encounters")
        if entity is None:
            continue
        cols = entity.columns
        if source.format == "fhir":
            frame = _fhir_encounters(landing, [entity.path, source.bundles] if source.bundles else [entity.path])
            fmt = "%Y-%m-%d"
        else:
            files = sorted(landing.glob(entity.path))
            if source.format == "json":
                raw = [pd.read_json(f, lines=True, dtype=False) for f in files if f.stat().st_size]
            else:
                sep = source.options.get("delimiter", ",")
                raw = [pd.read_csv(f, sep=sep, dtype=str, keep_default_na=False) for f in files]
            raw = [r for r in raw if len(r)]
            frame = pd.concat(raw, ignore_index=True).astype(str) if raw else pd.DataFrame()
            wanted = ("encounter_id", "patient_id", "encounter_type", "admit_date", "discharge_date", "diagnosis_code")
            frame = frame.rename(columns={cols[c]: c for c in wanted})[list(wanted)]
            fmt = DATE_FORMATS[source.date_format]
        for c in ("admit_date", "discharge_date"):
            frame[c] = pd.to_datetime(frame[c].astype(str).str[:10], format=fmt, errors="coerce")
        frame["encounter_type"] = frame["encounter_type"].astype(str).str.strip().str.lower()
        frames.append(frame.assign(source_system=name))
    return pd.concat(frames, ignore_index=True)


def defective_keys(landing: Path) -> set[tuple[str, str, str]]:
    """(entity, source_system, key) of every row the generator recorded a defect in."""
    manifest = json.loads((landing / "_manifest.json").read_text(encoding="utf-8"))
    return {(d["entity"], d["source_system"], str(d["key"])) for d in manifest["defects"]}


def cross_hospital_readmissions(landing: Path, config: Config) -> pd.DataFrame:
    """Index stays followed by an unplanned inpatient readmission of the same person (by
    ``_truth/persons.csv``) 1-30 days after discharge at another source system: source_system,
    encounter_id, person_id, discharge_date, same_hospital_readmission (the stay has one at its
    own hospital too). Rows and patients with a recorded defect are left out, as are planned
    stays and transfers (another inpatient admission of the person on the discharge day)."""
    bad = defective_keys(landing)
    persons = pd.read_csv(landing / "_truth" / "persons.csv", dtype=str, keep_default_na=False)
    persons = persons[[("patients", s, p) not in bad for s, p in zip(persons.source_system, persons.patient_id, strict=True)]]
    enc = landed_encounters(landing, config).drop_duplicates(["source_system", "encounter_id"])
    enc = enc[[("encounters", s, e) not in bad for s, e in zip(enc.source_system, enc.encounter_id, strict=True)]]
    stays = enc[(enc.encounter_type == "inpatient") & enc.admit_date.notna() & enc.discharge_date.notna()]
    stays = stays.merge(persons[["source_system", "patient_id", "person_id"]], on=["source_system", "patient_id"])
    unplanned = stays[~stays.diagnosis_code.fillna("").str.upper().str.startswith(PLANNED_PREFIXES)]
    pairs = unplanned.merge(stays, on="person_id", suffixes=("", "_next"))
    pairs = pairs[pairs.encounter_id_next.ne(pairs.encounter_id) | pairs.source_system_next.ne(pairs.source_system)]
    transfers = pairs[(pairs.admit_date_next == pairs.discharge_date) & (pairs.admit_date_next >= pairs.admit_date)]
    transferred = set(zip(transfers.source_system, transfers.encounter_id, strict=True))
    later = pairs[~pairs.diagnosis_code_next.fillna("").str.upper().str.startswith(PLANNED_PREFIXES)]
    later = later[(later.admit_date_next > later.discharge_date)
                  & (later.admit_date_next <= later.discharge_date + pd.Timedelta(days=FOLLOW_UP_DAYS))]
    later = later[[(s, e) not in transferred for s, e in zip(later.source_system, later.encounter_id, strict=True)]]
    same = set(zip(later[later.source_system_next == later.source_system].source_system,
                   later[later.source_system_next == later.source_system].encounter_id, strict=True))
    cross = later[later.source_system_next != later.source_system].drop_duplicates(["source_system", "encounter_id"])
    return cross[["source_system", "encounter_id", "person_id", "discharge_date"]].assign(
        same_hospital_readmission=[(s, e) in same for s, e in zip(cross.source_system, cross.encounter_id, strict=True)])
