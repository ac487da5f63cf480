"""Entity semantics for the generator and the realistic defects injected into its batches.

Defects are applied to typed canonical batches before rendering, so a broken value is still
written in the source's own conventions (a future date in its date pattern, a negative
amount in its unit); unparseable values are :class:`Raw` strings written as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from carelake.generate import reference as ref
from carelake.generate.formats import Raw
from carelake.generate.world import Batch, area_zips

# Row-level defect kinds; file-level ones are TRUNCATED_LINE and HEADER_ONLY.
INVALID_NPI = "invalid_npi"
NULL_KEY = "null_key"
DUPLICATE = "duplicate"
CONFLICTING_DUPLICATE = "conflicting_duplicate"
BAD_DATE = "unparseable_date"
FUTURE_DATE = "future_date"
BAD_AMOUNT = "unparseable_amount"
NEGATIVE_AMOUNT = "negative_amount"
PAID_GT_BILLED = "paid_gt_billed"
DISCHARGE_BEFORE_ADMIT = "discharge_before_admit"
UNKNOWN_CODE = "unknown_code"
ORPHAN = "orphan_reference"
TRUNCATED_LINE = "truncated_line"
HEADER_ONLY = "header_only"

DEFECT_KINDS = (
    INVALID_NPI, NULL_KEY, DUPLICATE, CONFLICTING_DUPLICATE, BAD_DATE, FUTURE_DATE, BAD_AMOUNT,
    NEGATIVE_AMOUNT, PAID_GT_BILLED, DISCHARGE_BEFORE_ADMIT, UNKNOWN_CODE, ORPHAN,
    TRUNCATED_LINE, HEADER_ONLY,
)

BAD_DATES = ("N/A", "2024-02-30", "31/31/2024", "00000000", "yesterday")
BAD_AMOUNTS = ("12,3a", "$1,2O0.00", "abc", "1.2.3")
FUTURE_YEAR = 2099


@dataclass(frozen=True)
class EntitySpec:
    """What one entity's records are, and which defects make sense for it.

    ``types`` gives each canonical column's kind (str, date, ts, amount, int, bool);
    the other fields name the column a defect kind breaks (None: kind not applicable).
    """

    name: str
    key: str
    types: dict[str, str]
    npi: str | None = None
    date: str | None = None
    amount: str | None = None
    code: tuple[str, str] | None = None  # column, a value of no known code shape
    orphan: str | None = None  # reference column whose target must exist
    conflict: tuple[str, Callable[[Any, np.random.Generator], Any]] | None = None

    def kinds(self, columns: Collection[str]) -> list[str]:
        """The row-level defect kinds applicable to this entity when ``columns`` are written."""
        conflict = self.conflict[0] if self.conflict and "updated_at" in columns else None
        candidates = (
            (self.key, NULL_KEY), (self.key, DUPLICATE), (self.npi, INVALID_NPI),
            (self.date, BAD_DATE), (self.date, FUTURE_DATE), (self.amount, BAD_AMOUNT),
            (self.amount, NEGATIVE_AMOUNT), (self.code[0] if self.code else None, UNKNOWN_CODE),
            (self.orphan, ORPHAN), (conflict, CONFLICTING_DUPLICATE),
            ("discharge_date" if self.name == "encounters" else None, DISCHARGE_BEFORE_ADMIT),
            ("paid_amount" if self.name == "claims" else None, PAID_GT_BILLED),
        )
        return [kind for column, kind in candidates if column and column in columns]


def _other_zip(value: Any, rng: np.random.Generator) -> str:
    zips = [z for area in area_zips() for z in area if z != value]
    return zips[int(rng.integers(0, len(zips)))]


def _other_phone(value: Any, rng: np.random.Generator) -> str:
    return f"{str(value)[:3]}-555-{int(rng.integers(0, 10000)):04d}"


def _other_of(options: tuple[str, ...]) -> Callable[[Any, np.random.Generator], str]:
    def pick(value: Any, rng: np.random.Generator) -> str:
        rest = [o for o in options if o != value]
        return rest[int(rng.integers(0, len(rest)))]
    return pick


S, D, TS, A, N, B = "str", "date", "ts", "amount", "int", "bool"

SPECS: dict[str, EntitySpec] = {
    "providers": EntitySpec(
        "providers", "npi",
        {"npi": S, "first_name": S, "last_name": S, "specialty": S, "taxonomy_code": S,
         "organization": S, "zip": S, "network_id": S, "employer_id": S, "active": B, "updated_at": TS},
        npi="npi", date="updated_at", conflict=("zip", _other_zip)),
    "patients": EntitySpec(
        "patients", "patient_id",
        {"patient_id": S, "first_name": S, "last_name": S, "ssn": S, "phone": S, "email": S,
         "street_address": S, "birth_date": D, "sex": S, "zip": S, "mrn": S, "updated_at": TS},
        date="birth_date", conflict=("phone", _other_phone)),
    "encounters": EntitySpec(
        "encounters", "encounter_id",
        {"encounter_id": S, "patient_id": S, "npi": S, "department": S, "encounter_type": S,
         "admit_date": D, "discharge_date": D, "diagnosis_code": S, "readmitted_30d": B,
         "complication": B, "satisfaction_score": N, "updated_at": TS},
        npi="npi", date="admit_date", code=("diagnosis_code", "ZZZ"), orphan="patient_id",
        conflict=("satisfaction_score", lambda v, rng: int(v) % 5 + 1)),
    "procedures": EntitySpec(
        "procedures", "procedure_id",
        {"procedure_id": S, "encounter_id": S, "npi": S, "procedure_code": S, "procedure_date": D,
         "units": N, "charge_amount": A},
        npi="npi", date="procedure_date", amount="charge_amount", code=("procedure_code", "99999X"),
        orphan="encounter_id"),
    "claims": EntitySpec(
        "claims", "claim_id",
        {"claim_id": S, "patient_source_system": S, "encounter_id": S, "patient_id": S, "npi": S,
         "payer": S, "billed_amount": A, "allowed_amount": A, "paid_amount": A, "status": S,
         "service_date": D, "submitted_date": D, "paid_date": D, "updated_at": TS},
        npi="npi", date="service_date", amount="paid_amount", orphan="encounter_id",
        conflict=("payer", _other_of(tuple(ref.PAYER_ALLOWED_RATIO)))),
    "referrals": EntitySpec(
        "referrals", "referral_id",
        {"referral_id": S, "referring_npi": S, "referred_to_npi": S, "patient_source_system": S,
         "patient_id": S, "employer_id": S, "referral_date": D, "status": S,
         "specialty_requested": S, "updated_at": TS},
        npi="referring_npi", date="referral_date", orphan="patient_id",
        conflict=("status", _other_of(ref.REFERRAL_STATUSES))),
    "crm_activity": EntitySpec(
        "crm_activity", "activity_id",
        {"activity_id": S, "npi": S, "activity_date": D, "activity_type": S, "marketing_spend": A,
         "contacts": N, "opportunity_value": A, "updated_at": TS},
        npi="npi", date="activity_date", amount="marketing_spend",
        conflict=("contacts", lambda v, rng: int(v) + 1 + int(rng.integers(0, 20)))),
}

_TRAILING_DIGITS = re.compile(r"(\d+)$")


def orphan_id(value: str) -> str:
    """An id of the same shape as ``value`` that no generated record has.

    Generated ids end in a counter below 10**9; this one ends in a longer number.
    """
    match = _TRAILING_DIGITS.search(value)
    if match is None:
        raise ValueError(f"id {value!r}: expected it to end in digits")
    digits = match.group(1)
    return value[: match.start()] + str(9 * 10 ** max(len(digits), 9) + int(digits))


def invalid_npi(npi: str, variant: int) -> str:
    """A broken NPI: wrong check digit, 9 digits, or letters inside."""
    if variant == 0:
        return npi[:9] + str((int(npi[9]) + 1) % 10)
    if variant == 1:
        return npi[:9]
    return npi[:4] + "AB" + npi[6:]


def _future(value: Any, rng: np.random.Generator) -> date | datetime:
    day = date(FUTURE_YEAR, int(rng.integers(1, 13)), int(rng.integers(1, 29)))
    if isinstance(value, datetime):
        return datetime(day.year, day.month, day.day, value.hour, value.minute, value.second)
    return day


@dataclass(frozen=True)
class Injected:
    """A row-level defect at ``row`` of the batch returned by :func:`inject`."""

    kind: str
    row: int
    column: str | None


def inject(batch: Batch, spec: EntitySpec, columns: Collection[str], rate: float,
           rng: np.random.Generator, truncatable: bool) -> tuple[Batch, list[Injected], bool]:
    """Break about ``rate`` of the rows of ``batch`` (in place, plus inserted duplicates).

    Only kinds whose column is among the written ``columns`` are used, so every defect shows.

    Returns the new batch, the defects by final row, and whether the file's last line is to
    be truncated (then that last row carries no other defect).
    """
    n = len(batch[spec.key])
    if rate <= 0 or n == 0:
        return batch, [], False
    truncate = truncatable and n >= 2 and bool(rng.random() < min(0.5, 10 * rate))
    eligible = n - 1 if truncate else n
    count = min(eligible, int(rng.binomial(eligible, rate)))
    rows = rng.choice(eligible, size=count, replace=False).tolist()
    kinds = spec.kinds(columns)
    offset = int(rng.integers(0, len(kinds)))
    marks: dict[int, Injected] = {}
    inserts: dict[int, tuple[dict[str, Any], str, str | None]] = {}
    for j, i in enumerate(rows):
        kind = kinds[(offset + j) % len(kinds)]
        column = _apply(batch, spec, kind, i, rng, inserts)
        if kind not in (DUPLICATE, CONFLICTING_DUPLICATE):
            marks[i] = Injected(kind, i, column)
    if not inserts:
        return batch, sorted(marks.values(), key=lambda d: d.row), truncate
    out: Batch = {c: [] for c in batch}
    found: list[Injected] = []
    for i in range(n):
        for c in batch:
            out[c].append(batch[c][i])
        if i in marks:
            found.append(Injected(marks[i].kind, len(out[spec.key]) - 1, marks[i].column))
        if i in inserts:
            copy, kind, column = inserts[i]
            for c in batch:
                out[c].append(copy[c])
            found.append(Injected(kind, len(out[spec.key]) - 1, column))
    return out, found, truncate


def _apply(batch: Batch, spec: EntitySpec, kind: str, i: int, rng: np.random.Generator,
           inserts: dict[int, tuple[dict[str, Any], str, str | None]]) -> str | None:
    """Apply one defect to row ``i``; the canonical column it broke."""
    if kind == NULL_KEY:
        batch[spec.key][i] = None
        return spec.key
    if kind in (DUPLICATE, CONFLICTING_DUPLICATE):
        copy = {c: v[i] for c, v in batch.items()}
        column = None
        if kind == CONFLICTING_DUPLICATE and spec.conflict:
            column, change = spec.conflict
            copy[column] = change(copy[column], rng)
            copy["updated_at"] = copy["updated_at"] + timedelta(hours=int(rng.integers(1, 49)))
        inserts[i] = (copy, kind, column)
        return column
    if kind == INVALID_NPI and spec.npi:
        batch[spec.npi][i] = invalid_npi(batch[spec.npi][i], int(rng.integers(0, 3)))
        return spec.npi
    if kind == BAD_DATE and spec.date:
        batch[spec.date][i] = Raw(BAD_DATES[int(rng.integers(0, len(BAD_DATES)))])
        return spec.date
    if kind == FUTURE_DATE and spec.date:
        old = batch[spec.date][i]
        batch[spec.date][i] = _future(old, rng)
        if spec.name == "encounters":  # keep the stay itself consistent
            batch["discharge_date"][i] = batch[spec.date][i] + (batch["discharge_date"][i] - old)
        return spec.date
    if kind == BAD_AMOUNT and spec.amount:
        batch[spec.amount][i] = Raw(BAD_AMOUNTS[int(rng.integers(0, len(BAD_AMOUNTS)))])
        return spec.amount
    if kind == NEGATIVE_AMOUNT and spec.amount:
        batch[spec.amount][i] = -(abs(batch[spec.amount][i]) or 1000)
        return spec.amount
    if kind == UNKNOWN_CODE and spec.code:
        batch[spec.code[0]][i] = spec.code[1]
        return spec.code[0]
    if kind == ORPHAN and spec.orphan:
        batch[spec.orphan][i] = orphan_id(batch[spec.orphan][i])
        return spec.orphan
    if kind == DISCHARGE_BEFORE_ADMIT:
        batch["discharge_date"][i] = batch["admit_date"][i] - timedelta(days=int(rng.integers(1, 6)))
        return "discharge_date"
    if kind == PAID_GT_BILLED:
        batch["paid_amount"][i] = batch["billed_amount"][i] + int(rng.integers(100, 50_000))
        batch["status"][i] = "PAID"
        if batch["paid_date"][i] is None:
            batch["paid_date"][i] = batch["submitted_date"][i] + timedelta(days=20)
        return "paid_amount"
    raise ValueError(f"defect kind {kind!r} does not apply to entity {spec.name!r}")
