"""The slowly-changing population behind the sample data: providers and patients.

Both are held column-wise for the whole run (they are small next to the activity) and
change a little at a few points in the year so snapshot files carry SCD type 2 work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from carelake.generate import reference as ref
from carelake.generate.formats import as_datetime

Batch = dict[str, list[Any]]

# A day has this many seconds; timestamps are drawn within office hours-ish ranges.
DAY = 86_400


def npi_check_digit(body: str) -> int:
    """Luhn check digit of a 9-digit NPI body, computed over ``80840`` + body."""
    total = 0
    for i, ch in enumerate(reversed("80840" + body)):
        d = int(ch)
        if i % 2 == 0:  # rightmost payload digit is doubled because the check digit follows it
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return (10 - total % 10) % 10


def make_npis(n: int, rng: np.random.Generator) -> list[str]:
    """``n`` distinct valid NPIs (first digit 1 or 2, as issued)."""
    bodies: list[int] = []
    seen: set[int] = set()
    while len(bodies) < n:
        for b in rng.integers(100_000_000, 300_000_000, size=n * 2).tolist():
            if b not in seen and len(bodies) < n:
                seen.add(b)
                bodies.append(b)
    return [f"{b}{npi_check_digit(str(b))}" for b in bodies]


def area_zips() -> list[list[str]]:
    """The practice/residence zips of each area in :data:`reference.ZIP_AREAS`."""
    return [[f"{zip3}{(7 * i + 3) % 97 + 1:02d}" for i in range(ref.ZIPS_PER_AREA)]
            for zip3, _, _ in ref.ZIP_AREAS]


def organizations() -> list[tuple[str, str, str, int]]:
    """(name, employer_id, network_id, area) of every provider organization."""
    orgs = []
    for area, (zip3, _, _) in enumerate(ref.ZIP_AREAS):
        for hood in ref.NEIGHBOURHOODS[zip3]:
            for kind in ref.ORGANIZATION_KINDS:
                n = len(orgs)
                employer = n // 3  # a few groups belong to each employing health system
                orgs.append((f"{hood} {kind}", f"EMP-{employer + 1:04d}",
                             ref.NETWORKS[employer % len(ref.NETWORKS)], area))
    return orgs


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str], n: int) -> list[str]:
    return [options[i] for i in rng.integers(0, len(options), size=n).tolist()]


# Areas (indices into reference.ZIP_AREAS) planted with a provider shortage: half of the
# providers who would practise there practise elsewhere, while their patients stay.
SHORT_AREAS = (1,)
SHORT_AREA_KEEP = 0.5
CASE_MIX_PULL_QUALITY = 0.8
MIN_CODES_TO_SPECIALISE = 3
# Planted yearly growth of each area's patient demand (index = area).
DEMAND_GROWTH = (0.0, 0.05, 0.30, -0.10, 0.15)
# Each area's residents = its generated patients / a planted market share (the share of the
# area's residents who are our patients), so the population grows with the scale like every
# other volume and providers per 100,000 residents do not depend on it. Drawn from a stream of
# its own (POPULATION_SEED_OFFSET), so no other generated record moves.
POPULATION_SEED_OFFSET = 16002
MARKET_SHARE_RANGE = (0.045, 0.055)


def area_population(seed: int, patients: list[Patients]) -> tuple[np.ndarray, np.ndarray]:
    """(market share, residents) per area (index = reference.ZIP_AREAS) for the hospitals' own
    patients (one record per person; the linked extra registrations are the same people)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, POPULATION_SEED_OFFSET]))
    n_areas = len(ref.ZIP_AREAS)
    share = rng.uniform(*MARKET_SHARE_RANGE, size=n_areas)
    counts = np.bincount(np.concatenate([p.area for p in patients]).astype(int), minlength=n_areas)
    return share, np.maximum(1, np.round(counts / share)).astype(int)


# Patient risk: a log-odds shift from age and a frailty partly visible as a chronic diagnosis.
RISK_AGE_PER_YEAR = 0.03
CHRONIC_CODES = ("I50.9", "N18.4", "J44.9")
CHRONIC_FRAILTY = 0.5  # frailty above this carries one of CHRONIC_CODES


def _thin_short_areas(rng: np.random.Generator, area: np.ndarray, n_areas: int) -> np.ndarray:
    """Move about half the providers of each :data:`SHORT_AREAS` area to another area."""
    moved = np.isin(area, SHORT_AREAS) & (rng.random(area.size) > SHORT_AREA_KEEP)
    others = np.array([a for a in range(n_areas) if a not in SHORT_AREAS])
    return np.where(moved, others[rng.integers(0, others.size, size=area.size)], area)


def _home_areas(rng: np.random.Generator, home: np.ndarray, n_areas: int) -> np.ndarray:
    """Mostly the home area, sometimes another one."""
    away = rng.random(home.size) < 0.3
    return np.where(away, rng.integers(0, n_areas, size=home.size), home)


@dataclass
class Providers:
    """Every provider with current attributes and the hidden factors that drive outcomes."""

    npi: list[str]
    first_name: list[str]
    last_name: list[str]
    specialty: np.ndarray  # index into reference.SPECIALTIES
    zip: list[str]
    area: np.ndarray
    organization: list[str]
    employer_id: list[str]
    network_id: list[str]
    active: np.ndarray
    updated_at: list[datetime]
    hospitals: list[tuple[int, ...]]  # indices of the hospitals the provider works at
    quality: np.ndarray  # > 0 better outcomes
    cost: np.ndarray  # multiplies charges and lengthens stays
    volume: np.ndarray  # relative patient volume
    case_mix_pull: np.ndarray  # > 0 draws sicker patients (correlated with quality)
    specialised: list[str | None]  # the procedure code the provider excels at
    specialty_history: list[list[tuple[date, int]]]  # (from, specialty index) per provider

    def __len__(self) -> int:
        return len(self.npi)

    @classmethod
    def create(cls, n: int, n_hospitals: int, rng: np.random.Generator, start: date) -> Providers:
        """``n`` providers spread over ``n_hospitals``; about 10% work at two hospitals."""
        n_areas = len(ref.ZIP_AREAS)
        weights = np.array([s.weight for s in ref.SPECIALTIES])
        specialty = rng.choice(len(ref.SPECIALTIES), size=n, p=weights / weights.sum())
        primary = np.arange(n) % n_hospitals  # round robin first so every hospital has staff
        primary[n_hospitals:] = rng.integers(0, n_hospitals, size=max(0, n - n_hospitals))
        second = rng.integers(0, n_hospitals, size=n)
        shared = (rng.random(n) < 0.10) & (second != primary)
        area = _thin_short_areas(rng, _home_areas(rng, primary % n_areas, n_areas), n_areas)
        zips = area_zips()
        orgs = organizations()
        org_by_area = [[i for i, o in enumerate(orgs) if o[3] == a] for a in range(n_areas)]
        zip_list, org_idx = [], []
        for a, u, v in zip(area.tolist(), rng.random(n).tolist(), rng.random(n).tolist(), strict=True):
            zip_list.append(zips[a][int(u * len(zips[a]))])
            org_idx.append(org_by_area[a][int(v * len(org_by_area[a]))])
        sex_f = rng.random(n) < 0.5
        first = [ref.FIRST_NAMES_F[i % len(ref.FIRST_NAMES_F)] if f else ref.FIRST_NAMES_M[i % len(ref.FIRST_NAMES_M)]
                 for f, i in zip(sex_f.tolist(), rng.integers(0, 1000, size=n).tolist(), strict=True)]
        base = datetime(start.year, start.month, start.day) - timedelta(days=1)
        quality = rng.normal(0.0, 1.0, size=n)
        # Referral centres with better outcomes attract sicker patients: crude rates hide them.
        pull = CASE_MIX_PULL_QUALITY * quality + rng.normal(0.0, 0.6, size=n)
        picks = rng.random(n).tolist()
        specialised = []
        for s_idx, u in zip(specialty.tolist(), picks, strict=True):
            codes = ref.SPECIALTIES[s_idx].procedures
            # never the everyday code (the first): reference.Specialty, activity.EVERYDAY_CODE_SHARE
            specialised.append(codes[1 + int(u * (len(codes) - 1))] if len(codes) >= MIN_CODES_TO_SPECIALISE else None)
        return cls(
            npi=make_npis(n, rng),
            first_name=first,
            last_name=_pick(rng, ref.LAST_NAMES, n),
            specialty=specialty,
            zip=zip_list,
            area=area,
            organization=[orgs[i][0] for i in org_idx],
            employer_id=[orgs[i][1] for i in org_idx],
            network_id=[orgs[i][2] for i in org_idx],
            active=rng.random(n) < 0.96,
            updated_at=[base - timedelta(seconds=s) for s in rng.integers(0, 365 * DAY, size=n).tolist()],
            hospitals=[(p, s) if sh else (p,) for p, s, sh in zip(primary.tolist(), second.tolist(), shared.tolist(), strict=True)],
            quality=quality,
            cost=np.exp(rng.normal(0.0, 0.22, size=n)),
            volume=np.exp(rng.normal(0.0, 0.6, size=n)),
            case_mix_pull=pull,
            specialised=specialised,
            specialty_history=[[(start, int(s_idx))] for s_idx in specialty.tolist()],
        )

    def batch(self, rows: list[int]) -> Batch:
        """Canonical provider records for the given provider indices."""
        specs = [ref.SPECIALTIES[s] for s in self.specialty[rows].tolist()] if rows else []
        return {
            "npi": [self.npi[i] for i in rows],
            "first_name": [self.first_name[i] for i in rows],
            "last_name": [self.last_name[i] for i in rows],
            "specialty": [s.name for s in specs],
            "taxonomy_code": [s.taxonomy for s in specs],
            "organization": [self.organization[i] for i in rows],
            "zip": [self.zip[i] for i in rows],
            "network_id": [self.network_id[i] for i in rows],
            "employer_id": [self.employer_id[i] for i in rows],
            "active": [bool(self.active[i]) for i in rows],
            "updated_at": [self.updated_at[i] for i in rows],
        }

    def at_hospital(self, hospital: int) -> list[int]:
        """Indices of providers working at ``hospital``."""
        return [i for i, hs in enumerate(self.hospitals) if hospital in hs]

    def change(self, rng: np.random.Generator, month_start: date, days: int) -> list[int]:
        """Change one attribute of 2-5% of providers within the month; the changed indices."""
        n = len(self)
        rows = sorted(rng.choice(n, size=max(1, round(n * rng.uniform(0.02, 0.05))), replace=False).tolist())
        zips = area_zips()
        orgs = organizations()
        for i in rows:
            what = int(rng.integers(0, 5))
            if what == 0:
                options = zips[int(self.area[i])]
                self.zip[i] = options[int(rng.integers(0, len(options)))]
            elif what == 1:
                self.specialty[i] = int(rng.integers(0, len(ref.SPECIALTIES)))
                self.specialty_history[i].append((month_start, int(self.specialty[i])))
            elif what == 2:
                name, employer, network, _ = orgs[int(rng.integers(0, len(orgs)))]
                self.organization[i], self.employer_id[i], self.network_id[i] = name, employer, network
            elif what == 3:
                self.network_id[i] = ref.NETWORKS[int(rng.integers(0, len(ref.NETWORKS)))]
            else:
                self.active[i] = not self.active[i]
            day = month_start + timedelta(days=int(rng.integers(0, days)))
            self.updated_at[i] = as_datetime(day, int(rng.integers(7 * 3600, 19 * 3600)))
        return rows


PATIENT_ID_STYLES = ("P{:07d}", "{:d}", "{:08d}")
PATIENT_ID_OFFSETS = (0, 100_000, 0)


@dataclass
class Patients:
    """The patients of one hospital: PII, residence area and payer."""

    columns: Batch  # canonical patient columns
    area: np.ndarray
    age: np.ndarray
    payer: list[str]
    id_style: str
    risk: np.ndarray  # standardised log-odds risk (mean 0, sd 1): drives outcomes and cost
    chronic_code: list[str | None]  # a chronic diagnosis the sicker patients carry

    def __len__(self) -> int:
        return len(self.columns["patient_id"])

    @classmethod
    def create(cls, n: int, hospital: int, rng: np.random.Generator, start: date) -> Patients:
        """``n`` patients of the hospital with index ``hospital``, living mostly near it."""
        n_areas = len(ref.ZIP_AREAS)
        style = PATIENT_ID_STYLES[hospital % len(PATIENT_ID_STYLES)]
        offset = PATIENT_ID_OFFSETS[hospital % len(PATIENT_ID_OFFSETS)]
        area = _home_areas(rng, np.full(n, hospital % n_areas), n_areas)
        female = rng.random(n) < 0.51
        fi = rng.integers(0, 1000, size=n).tolist()
        first = [ref.FIRST_NAMES_F[i % len(ref.FIRST_NAMES_F)] if f else ref.FIRST_NAMES_M[i % len(ref.FIRST_NAMES_M)]
                 for f, i in zip(female.tolist(), fi, strict=True)]
        last = _pick(rng, ref.LAST_NAMES, n)
        age = (rng.beta(2.0, 1.6, size=n) * 95).astype(int)
        birth_offsets = age * 365 + rng.integers(0, 365, size=n)
        ssn_area = rng.integers(1, 900, size=n)
        ssn_area = np.where(ssn_area == 666, 667, ssn_area)  # 666 is never issued
        ssn = [f"{a:03d}-{g:02d}-{s:04d}" for a, g, s in zip(
            ssn_area.tolist(), rng.integers(1, 100, size=n).tolist(), rng.integers(1, 10000, size=n).tolist(), strict=True)]
        zips = area_zips()
        zip_list = [zips[a][int(u * len(zips[a]))] for a, u in zip(area.tolist(), rng.random(n).tolist(), strict=True)]
        phone = _phones(rng, area)
        emails = [f"{f.lower()}.{la.lower().replace(chr(39), '')}{k}@{d}" for f, la, k, d in zip(
            first, last, rng.integers(1, 999, size=n).tolist(), _pick(rng, ref.EMAIL_DOMAINS, n), strict=True)]
        base = datetime(start.year, start.month, start.day) - timedelta(days=1)
        u = rng.random(n)
        payer = np.where(age >= 65, np.where(u < 0.8, "Medicare", "commercial"),
                         np.where(u < 0.2, "Medicaid", np.where(u < 0.24, "Self-Pay", "commercial")))
        commercial = _pick(rng, ref.COMMERCIAL_PAYERS, n)
        columns: Batch = {
            "patient_id": [style.format(offset + i + 1) for i in range(n)],
            "first_name": first,
            "last_name": last,
            "ssn": ssn,
            "phone": phone,
            "email": emails,
            "street_address": _addresses(rng, n),
            "birth_date": [start - timedelta(days=int(d)) for d in birth_offsets.tolist()],
            "sex": ["F" if f else "M" for f in female.tolist()],
            "zip": zip_list,
            "mrn": [f"MRN{hospital + 1}{i + 1:07d}" for i in range(n)],
            "updated_at": [base - timedelta(seconds=s) for s in rng.integers(0, 720 * DAY, size=n).tolist()],
        }
        frailty = rng.normal(0.0, 0.7, size=n)
        raw_risk = RISK_AGE_PER_YEAR * (age - 50) + frailty
        risk = (raw_risk - raw_risk.mean()) / (raw_risk.std() or 1.0)
        chronic = [CHRONIC_CODES[k] if f > CHRONIC_FRAILTY else None
                   for f, k in zip(frailty.tolist(), rng.integers(0, len(CHRONIC_CODES), size=n).tolist(), strict=True)]
        return cls(columns=columns, area=area, age=age,
                   payer=[c if p == "commercial" else str(p) for p, c in zip(payer.tolist(), commercial, strict=True)],
                   id_style=style, risk=risk, chronic_code=chronic)

    def batch(self, rows: list[int] | None = None) -> Batch:
        """Canonical patient records (all when ``rows`` is None)."""
        if rows is None:
            return {c: list(v) for c, v in self.columns.items()}
        return {c: [v[i] for i in rows] for c, v in self.columns.items()}

    def change(self, rng: np.random.Generator, month_start: date, days: int) -> list[int]:
        """Move or re-contact 2-4% of patients within the month; the changed indices."""
        n = len(self)
        rows = sorted(rng.choice(n, size=max(1, round(n * rng.uniform(0.02, 0.04))), replace=False).tolist())
        zips = area_zips()
        cols = self.columns
        for i in rows:
            if rng.random() < 0.6:  # moved house, same area
                options = zips[int(self.area[i])]
                cols["zip"][i] = options[int(rng.integers(0, len(options)))]
                cols["street_address"][i] = _addresses(rng, 1)[0]
            else:
                cols["phone"][i] = _phones(rng, self.area[i : i + 1])[0]
            day = month_start + timedelta(days=int(rng.integers(0, days)))
            cols["updated_at"][i] = as_datetime(day, int(rng.integers(6 * 3600, 22 * 3600)))
        return rows


def _phones(rng: np.random.Generator, area: np.ndarray) -> list[str]:
    codes = [ref.ZIP_AREAS[a][2] for a in area.tolist()]
    mid = rng.integers(200, 1000, size=area.size).tolist()
    end = rng.integers(0, 10000, size=area.size).tolist()
    return [f"{c}-{m:03d}-{e:04d}" for c, m, e in zip(codes, mid, end, strict=True)]


def _addresses(rng: np.random.Generator, n: int) -> list[str]:
    numbers = rng.integers(10, 9999, size=n).tolist()
    return [f"{num} {s} {k}" for num, s, k in zip(numbers, _pick(rng, ref.STREETS, n), _pick(rng, ref.STREET_KINDS, n), strict=True)]
