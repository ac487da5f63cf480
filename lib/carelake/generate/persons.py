"""People registered at more than one hospital, and twins: the truth patient matching is tested on.

Each hospital draws its patients independently (:meth:`Patients.create`), so without this module
no person appears twice. Here some patients of each hospital are registered again at one or two
other hospitals, with the variation real registrations show: typos, nicknames, a new address or
phone, a missing or mistyped SSN, a mistyped birth date. Twins are planted too: a record with the
same last name, birth date, zip and often phone as an existing patient, but another first name and
SSN, who is a different person.

Everything here is drawn from a generator of its own (:func:`linked_rng`), and the extra records
get their encounters from it too, so adding them leaves every record the main stream draws as it
was for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from carelake.generate import reference as ref
from carelake.generate.activity import Readmission
from carelake.generate.world import (
    DAY,
    PATIENT_ID_OFFSETS,
    PATIENT_ID_STYLES,
    Patients,
    _addresses,
    _phones,
    area_zips,
)

LINKED_SEED_OFFSET = 16_001  # the extra records' generator: seed + this constant
LINKED_TAG = "linked"  # their landing files: <stem>_<month>-linked.<ext>
LINKED_ID_OFFSET = 900_000  # local ids of the extra records start above every hospital's own
# Counters of the extra records' encounters, procedures and claims start here (ids stay unique).
LINKED_ENCOUNTER_OFFSET = 50_000_000
LINKED_PROCEDURE_OFFSET = 500_000_000
LINKED_CLAIM_OFFSET = 5_000_000_000
SECOND_HOSPITAL_SHARE = 0.08  # of each hospital's patients, also registered at one other hospital
THIRD_HOSPITAL_SHARE = 0.02  # ... and at a third
# A second registration is the hospital a person visits now and then: this share of the visits a
# patient of that hospital makes.
LINKED_VISIT_RATE = 0.3
TWIN_SHARE = 0.005  # of each hospital's patients, with a twin registered at another hospital
# Chance of each variation in a second registration of the same person.
VARIATIONS: dict[str, float] = {
    "first_name_typo": 0.12, "nickname": 0.10, "last_name_typo": 0.06, "moved": 0.25,
    "new_phone": 0.35, "ssn_missing": 0.20, "ssn_transposed": 0.05, "birth_date_typo": 0.04,
}
NICKNAMES: dict[str, str] = {
    "Elizabeth": "Liz", "Patricia": "Pat", "Jennifer": "Jen", "Margaret": "Peggy", "Barbara": "Barb",
    "Susan": "Sue", "Jessica": "Jess", "Rebecca": "Becky", "Deborah": "Debbie", "Stephanie": "Steph",
    "Cynthia": "Cindy", "Sandra": "Sandy", "Amanda": "Mandy", "Melissa": "Missy", "Michelle": "Shelly",
    "James": "Jim", "Robert": "Bob", "John": "Jack", "Michael": "Mike", "David": "Dave", "William": "Bill",
    "Richard": "Dick", "Joseph": "Joe", "Thomas": "Tom", "Charles": "Chuck", "Christopher": "Chris",
    "Daniel": "Dan", "Matthew": "Matt", "Anthony": "Tony", "Donald": "Don", "Steven": "Steve",
    "Andrew": "Andy", "Joshua": "Josh", "Kenneth": "Ken", "Timothy": "Tim", "Ronald": "Ron",
    "Edward": "Ed",
}


def linked_rng(seed: int) -> np.random.Generator:
    """The generator of the linked and twin records (and their activity) for ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([seed, LINKED_SEED_OFFSET]))


@dataclass
class PersonTruth:
    """Who each patient record is: one row per record of every hospital."""

    source_system: list[str] = field(default_factory=list)
    patient_id: list[str] = field(default_factory=list)
    person_id: list[str] = field(default_factory=list)
    variations: list[str] = field(default_factory=list)  # what differs from the person's first record
    twin_of: list[str | None] = field(default_factory=list)  # the person id of the twin's sibling


def _typo(rng: np.random.Generator, text: str) -> str:
    """One keying error: two neighbouring letters swapped, or one letter replaced or dropped."""
    if len(text) < 3:
        return text + text[-1]
    i = int(rng.integers(1, len(text) - 1))
    kind = int(rng.integers(0, 3))
    if kind == 0:
        return text[:i] + text[i + 1] + text[i] + text[i + 2:]
    if kind == 1:
        return text[:i] + "aeiourstn"[int(rng.integers(0, 9))] + text[i + 1:]
    return text[:i] + text[i + 1:]


def _transpose_ssn(rng: np.random.Generator, ssn: str) -> str:
    digits = [c for c in ssn if c.isdigit()]
    i = int(rng.integers(0, len(digits) - 1))
    digits[i], digits[i + 1] = digits[i + 1], digits[i]
    d = "".join(digits)
    return f"{d[:3]}-{d[3:5]}-{d[5:]}"


def _empty_like(template: Patients, style: str) -> Patients:
    return Patients(columns={c: [] for c in template.columns}, area=np.zeros(0, dtype=np.int64),
                    age=np.zeros(0, dtype=np.int64), payer=[], id_style=style, risk=np.zeros(0), chronic_code=[])


def _append(target: Patients, row: dict, area: int, age: int, payer: str, risk: float, chronic: str | None) -> None:
    for c, v in row.items():
        target.columns[c].append(v)
    target.area = np.append(target.area, area)
    target.age = np.append(target.age, age)
    target.payer.append(payer)
    target.risk = np.append(target.risk, risk)
    target.chronic_code.append(chronic)


def _second_registration(rng: np.random.Generator, row: dict, area: int, base: datetime) -> tuple[dict, list[str]]:
    """A copy of ``row`` as another hospital keyed it, and the variations applied."""
    out, applied = dict(row), []
    draws = rng.random(len(VARIATIONS))
    chosen = {name for name, u in zip(VARIATIONS, draws.tolist(), strict=True) if u < VARIATIONS[name]}
    if "nickname" in chosen and row["first_name"] in NICKNAMES:
        out["first_name"] = NICKNAMES[row["first_name"]]
        applied.append("nickname")
    elif "first_name_typo" in chosen:
        out["first_name"] = _typo(rng, row["first_name"])
        applied.append("first_name_typo")
    if "last_name_typo" in chosen:
        out["last_name"] = _typo(rng, row["last_name"])
        applied.append("last_name_typo")
    if "moved" in chosen:
        options = area_zips()[area]
        out["zip"] = options[int(rng.integers(0, len(options)))]
        out["street_address"] = _addresses(rng, 1)[0]
        applied.append("moved")
    if "new_phone" in chosen:
        out["phone"] = _phones(rng, np.array([area]))[0]
        applied.append("new_phone")
    if "ssn_missing" in chosen:
        out["ssn"] = None
        applied.append("ssn_missing")
    elif "ssn_transposed" in chosen:
        out["ssn"] = _transpose_ssn(rng, row["ssn"])
        applied.append("ssn_transposed")
    if "birth_date_typo" in chosen:
        b = row["birth_date"]
        # day and month swapped when that is a date, else one day off
        swapped = b.replace(month=b.day, day=b.month) if b.day <= 12 and b.day != b.month else b + timedelta(days=1)
        out["birth_date"] = swapped
        applied.append("birth_date_typo")
    out["email"] = None if rng.random() < 0.5 else row["email"]
    out["updated_at"] = base - timedelta(seconds=int(rng.integers(0, 720 * DAY)))
    return out, applied


def plant_persons(rng: np.random.Generator, patients: list[Patients], systems: list[str],
                  base: datetime, extra: bool = True) -> tuple[list[Patients], PersonTruth]:
    """Extra patient records per hospital (index as ``patients``) for people already registered at
    another one, plus twins; and the person behind every record of every hospital.

    ``patients``: each hospital's own patients (not changed); ``systems``: their source system
    names; ``base``: the time before the first month, for ``updated_at``; ``extra``: False plants
    nobody (every record its own person, no extra records)."""
    n_hosp = len(patients)
    records = [_empty_like(p, p.id_style) for p in patients]
    truth = PersonTruth()
    for h, pats in enumerate(patients):
        for pid in pats.columns["patient_id"]:
            truth.source_system.append(systems[h])
            truth.patient_id.append(pid)
            truth.person_id.append(f"{systems[h]}:{pid}")
            truth.variations.append("")
            truth.twin_of.append(None)
    if n_hosp < 2 or not extra:
        return records, truth

    def add(h: int, row: dict, area: int, age: int, payer: str, risk: float, chronic: str | None,
            person: str, applied: list[str], twin_of: str | None) -> None:
        k = len(records[h])
        row = {**row, "patient_id": PATIENT_ID_STYLES[h % len(PATIENT_ID_STYLES)].format(
            PATIENT_ID_OFFSETS[h % len(PATIENT_ID_OFFSETS)] + LINKED_ID_OFFSET + k + 1),
            "mrn": f"MRN{h + 1}9{k + 1:06d}"}
        _append(records[h], row, area, age, payer, risk, chronic)
        truth.source_system.append(systems[h])
        truth.patient_id.append(row["patient_id"])
        truth.person_id.append(person)
        truth.variations.append(" ".join(applied))
        truth.twin_of.append(twin_of)

    for h, pats in enumerate(patients):
        n = len(pats)
        u = rng.random(n)
        others = [o for o in range(n_hosp) if o != h]
        for i in np.flatnonzero(u < SECOND_HOSPITAL_SHARE + THIRD_HOSPITAL_SHARE).tolist():
            copies = 2 if u[i] < THIRD_HOSPITAL_SHARE and len(others) > 1 else 1
            where = rng.choice(len(others), size=copies, replace=False).tolist()
            row = {c: v[i] for c, v in pats.columns.items()}
            person = f"{systems[h]}:{row['patient_id']}"
            for w in where:
                copy, applied = _second_registration(rng, row, int(pats.area[i]), base)
                add(others[w], copy, int(pats.area[i]), int(pats.age[i]), pats.payer[i], float(pats.risk[i]),
                    pats.chronic_code[i], person, applied, None)
        for i in np.flatnonzero(rng.random(n) < TWIN_SHARE).tolist():
            row = {c: v[i] for c, v in pats.columns.items()}
            female = rng.random() < 0.5
            names = ref.FIRST_NAMES_F if female else ref.FIRST_NAMES_M
            first = names[int(rng.integers(0, len(names)))]
            if first == row["first_name"]:
                first = names[(names.index(first) + 1) % len(names)]
            ssn_area = int(rng.integers(1, 900))
            ssn_area = 667 if ssn_area == 666 else ssn_area  # 666 is never issued
            ssn = f"{ssn_area:03d}-{int(rng.integers(1, 100)):02d}-{int(rng.integers(1, 10000)):04d}"
            twin = {**row, "first_name": first, "sex": "F" if female else "M", "ssn": ssn,
                    "email": None, "updated_at": base - timedelta(seconds=int(rng.integers(0, 720 * DAY)))}
            if rng.random() < 0.5:
                twin["phone"] = _phones(rng, pats.area[i:i + 1])[0]
            w = others[int(rng.integers(0, len(others)))]
            sibling = f"{systems[h]}:{row['patient_id']}"
            add(w, twin, int(pats.area[i]), int(pats.age[i]), pats.payer[i], float(rng.normal()),
                None, f"{systems[w]}:twin:{len(records[w]) + 1}", ["twin"], sibling)
    return records, truth


# Of the unplanned inpatient stays of a person registered at another hospital too, the share
# followed by an unplanned readmission at that other hospital within 30 days (on top of the
# readmissions the stay's own hospital sees): the readmissions only a master patient index finds.
READMIT_ELSEWHERE_SHARE = 0.3
READMIT_ELSEWHERE_SEED_OFFSET = 16_002  # their own generator: seed + this constant


def other_registrations(who: PersonTruth, patients: list[Patients], linked: list[Patients],
                        systems: list[str]) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """(hospital, index of its own patient) -> [(other hospital, index of the linked record)] for
    every person registered again elsewhere (twins are other people and left out)."""
    own = [{pid: i for i, pid in enumerate(p.columns["patient_id"])} for p in patients]
    extra = [{pid: k for k, pid in enumerate(p.columns["patient_id"])} for p in linked]
    out: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for system, pid, person, twin_of in zip(who.source_system, who.patient_id, who.person_id, who.twin_of, strict=True):
        home, _, home_pid = person.partition(":")
        w = systems.index(system)
        if twin_of is not None or pid not in extra[w] or home not in systems:
            continue
        h = systems.index(home)
        if home_pid in own[h]:
            out.setdefault((h, own[h][home_pid]), []).append((w, extra[w][pid]))
    return out


def readmissions_elsewhere(rng: np.random.Generator, truth: dict[str, list], hospital: int,
                           registrations: dict[tuple[int, int], list[tuple[int, int]]],
                           patient_index: dict[str, int]) -> list[tuple[int, Readmission]]:
    """One hospital-month's encounter truth -> (other hospital, readmission of the linked record
    there) for :data:`READMIT_ELSEWHERE_SHARE` of the unplanned inpatient stays of people
    registered elsewhere: 1-30 days after discharge, unplanned, caused by that stay (its
    ``readmission_of`` is ``<source system>:<encounter id>`` of the index stay)."""
    stays = [j for j, (kind, planned, pid) in enumerate(zip(
        truth["encounter_type"], truth["planned_readmission"], truth["patient_id"], strict=True))
        if kind == "inpatient" and not planned and (hospital, patient_index[pid]) in registrations]
    u, pick = rng.random(len(stays)), rng.random(len(stays))
    gap = np.minimum(rng.geometric(0.1, size=len(stays)), 30)
    out = []
    for j, uj, pj, g in zip(stays, u.tolist(), pick.tolist(), gap.tolist(), strict=True):
        if uj >= READMIT_ELSEWHERE_SHARE:
            continue
        where = registrations[(hospital, patient_index[truth["patient_id"][j]])]
        w, k = where[int(pj * len(where))]
        # the index stay is at another hospital: its id is named with its source system
        index_id = f"{truth['source_system'][j]}:{truth['encounter_id'][j]}"
        out.append((w, Readmission(k, truth["discharge_date"][j] + timedelta(days=int(g)), False, index_id)))
    return out
