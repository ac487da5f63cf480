"""One month of activity: encounters, procedures, claims, referrals and CRM activity.

Everything is drawn column-wise with numpy; hidden provider factors make some providers
measurably better (fewer readmissions and complications, happier patients) or cheaper.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

from carelake.generate import reference as ref
from carelake.generate.world import DAY, Batch, Patients, Providers

ENCOUNTER_ID_STYLES = ("E{:08d}", "enc-{:d}", "V{:09d}")
PROCEDURE_ID_STYLES = ("PR{:09d}", "proc-{:d}", "{:010d}")

# Readmission and complication base rates per encounter type (inpatient, outpatient, emergency).
READMIT_BASE = np.array([0.16, 0.08, 0.12])
COMPLICATION_BASE = np.array([0.08, 0.02, 0.05])
INPATIENT_DAY_CHARGE = 1800.0  # dollars per night, before the provider's cost factor


@dataclass
class Counters:
    """Running id counters so ids stay unique across months."""

    encounters: int = 0
    procedures: int = 0


@dataclass
class ClaimInput:
    """What the claims feed needs to know about one hospital's encounters of the month."""

    system: str
    encounter_id: list[str]
    patient_id: list[str]
    npi: list[str]
    payer: list[str]
    admit: list[date]
    discharge: list[date]
    billed_cents: np.ndarray


def _days(start: date, offsets: np.ndarray) -> list[date]:
    return [start + timedelta(days=d) for d in offsets.tolist()]


def _stamps(days: list[date], rng: np.random.Generator, lo: int = 0, hi: int = DAY) -> list[datetime]:
    seconds = rng.integers(lo, hi, size=len(days)).tolist()
    return [datetime(d.year, d.month, d.day) + timedelta(seconds=s) for d, s in zip(days, seconds, strict=True)]


def _choose(rng: np.random.Generator, pool: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    return pool[rng.choice(pool.size, size=n, p=weights / weights.sum())]


def pick_providers(rng: np.random.Generator, providers: Providers, pool: np.ndarray,
                   areas: np.ndarray) -> np.ndarray:
    """A provider from ``pool`` for each patient area: mostly one practising in that area."""
    weight = providers.volume[pool] * np.where(providers.active[pool], 1.0, 0.02)
    out = _choose(rng, pool, weight, areas.size)
    local = rng.random(areas.size) < 0.85
    for a in np.unique(areas).tolist():
        in_area = providers.area[pool] == a
        rows = np.flatnonzero(local & (areas == a))
        if in_area.any() and rows.size:
            out[rows] = _choose(rng, pool[in_area], weight[in_area], rows.size)
    return out


def hospital_month(rng: np.random.Generator, hospital: int, system: str, n: int,
                   providers: Providers, patients: Patients, month_start: date, days: int,
                   counters: Counters) -> tuple[Batch, Batch, ClaimInput]:
    """``n`` encounters of one hospital in one month, their procedures and claim inputs."""
    pool = np.array(providers.at_hospital(hospital))
    pat = (len(patients) * rng.random(n) ** 1.4).astype(int)  # some patients come back often
    prov = pick_providers(rng, providers, pool, patients.area[pat])
    spec = providers.specialty[prov]
    cum = np.cumsum(np.array([s.type_probs for s in ref.SPECIALTIES]), axis=1)[spec]
    etype = np.minimum((rng.random(n)[:, None] > cum).sum(axis=1), 2)
    los = np.where(etype == 0, np.minimum(rng.geometric(0.3, size=n), 10),
                   np.where(etype == 2, (rng.random(n) < 0.3).astype(int), 0))
    admit_off = rng.integers(0, days, size=n)
    q = providers.quality[prov]
    readmit = rng.random(n) < READMIT_BASE[etype] * np.exp(-0.35 * q)
    complication = rng.random(n) < COMPLICATION_BASE[etype] * np.exp(-0.4 * q)
    satisfaction = np.clip(np.rint(3.9 + 0.45 * q + rng.normal(0, 0.8, size=n) - 0.7 * complication), 1, 5)
    dx_pick = rng.random(n)
    specs = [ref.SPECIALTIES[s] for s in spec.tolist()]
    admit = _days(month_start, admit_off)
    discharge = _days(month_start, admit_off + los)
    enc_style = ENCOUNTER_ID_STYLES[hospital % len(ENCOUNTER_ID_STYLES)]
    enc_ids = [enc_style.format(counters.encounters + i + 1) for i in range(n)]
    counters.encounters += n
    pat_ids = patients.columns["patient_id"]
    npis = [providers.npi[p] for p in prov.tolist()]
    types = etype.tolist()
    encounters: Batch = {
        "encounter_id": enc_ids,
        "patient_id": [pat_ids[p] for p in pat.tolist()],
        "npi": npis,
        "department": ["Emergency" if t == 2 else s.department for t, s in zip(types, specs, strict=True)],
        "encounter_type": [ref.ENCOUNTER_TYPES[t] for t in types],
        "admit_date": admit,
        "discharge_date": discharge,
        "diagnosis_code": [s.diagnoses[int(u * len(s.diagnoses))] for s, u in zip(specs, dx_pick.tolist(), strict=True)],
        "readmitted_30d": readmit.tolist(),
        "complication": complication.tolist(),
        "satisfaction_score": satisfaction.astype(int).tolist(),
        "updated_at": _stamps([d + timedelta(days=1) for d in discharge], rng, 6 * 3600, 23 * 3600),
    }

    per_enc = rng.choice(3, size=n, p=[0.5, 0.3, 0.2]) + 1
    enc = np.repeat(np.arange(n), per_enc)
    m = enc.size
    code_pick = rng.random(m).tolist()
    codes = [specs[e].procedures[int(u * len(specs[e].procedures))] for e, u in zip(enc.tolist(), code_pick, strict=True)]
    units = 1 + (rng.random(m) < 0.15).astype(int) + (rng.random(m) < 0.05).astype(int)
    price = np.array([ref.PROCEDURE_PRICES[c] for c in codes])
    charge = np.rint(price * units * providers.cost[prov[enc]] * np.exp(rng.normal(0, 0.12, size=m)) * 100)
    charge = charge.astype(np.int64)
    proc_off = admit_off[enc] + (rng.random(m) * (los[enc] + 1)).astype(int)
    proc_style = PROCEDURE_ID_STYLES[hospital % len(PROCEDURE_ID_STYLES)]
    procedures: Batch = {
        "procedure_id": [proc_style.format(counters.procedures + i + 1) for i in range(m)],
        "encounter_id": [enc_ids[e] for e in enc.tolist()],
        "npi": [npis[e] for e in enc.tolist()],
        "procedure_code": codes,
        "procedure_date": _days(month_start, proc_off),
        "units": units.tolist(),
        "charge_amount": charge.tolist(),
    }
    counters.procedures += m

    room = np.rint(np.where(etype == 0, los, 0) * INPATIENT_DAY_CHARGE * providers.cost[prov] * 100)
    billed = np.bincount(enc, weights=charge, minlength=n) + room
    claim_input = ClaimInput(
        # copies: defects injected into the encounter file must not leak into claims
        system=system, encounter_id=list(enc_ids), patient_id=list(encounters["patient_id"]), npi=list(npis),
        payer=[patients.payer[p] for p in pat.tolist()], admit=admit, discharge=discharge,
        billed_cents=billed.astype(np.int64),
    )
    return encounters, procedures, claim_input


def claims_month(rng: np.random.Generator, inputs: list[ClaimInput], first_id: int) -> Batch:
    """About one claim per encounter (7% have none) with payer-typical adjudication."""
    out: Batch = {c: [] for c in (
        "claim_id", "patient_source_system", "encounter_id", "patient_id", "npi", "payer",
        "billed_amount", "allowed_amount", "paid_amount", "status", "service_date",
        "submitted_date", "paid_date", "updated_at")}
    for ci in inputs:
        n = len(ci.encounter_id)
        rows = np.flatnonzero(rng.random(n) < 0.93)
        k = rows.size
        billed = ci.billed_cents[rows]
        ratio = np.array([ref.PAYER_ALLOWED_RATIO[ci.payer[r]] for r in rows.tolist()])
        allowed = np.minimum(billed, np.rint(billed * ratio * rng.uniform(0.9, 1.1, size=k))).astype(np.int64)
        status = rng.choice(len(ref.CLAIM_STATUSES), size=k, p=ref.CLAIM_STATUS_PROBS)
        share = np.select([status == 0, status == 3], [rng.uniform(0.8, 1.0, size=k), rng.uniform(0.3, 0.7, size=k)], 0.0)
        paid = np.rint(allowed * share).astype(np.int64)
        submit_lag = rng.integers(1, 15, size=k).tolist()
        pay_lag = rng.integers(7, 46, size=k).tolist()
        file_lag = rng.integers(0, 3, size=k).tolist()
        submitted = [ci.discharge[r] + timedelta(days=s) for r, s in zip(rows.tolist(), submit_lag, strict=True)]
        paid_date = [s + timedelta(days=p) if st in (0, 3) else None
                     for s, p, st in zip(submitted, pay_lag, status.tolist(), strict=True)]
        file_day = [(p or s) + timedelta(days=f) for s, p, f in zip(submitted, paid_date, file_lag, strict=True)]
        out["claim_id"] += [f"CLM{first_id + len(out['claim_id']) + i + 1:010d}" for i in range(k)]
        out["patient_source_system"] += [ci.system] * k
        out["encounter_id"] += [ci.encounter_id[r] for r in rows.tolist()]
        out["patient_id"] += [ci.patient_id[r] for r in rows.tolist()]
        out["npi"] += [ci.npi[r] for r in rows.tolist()]
        out["payer"] += [ci.payer[r] for r in rows.tolist()]
        out["billed_amount"] += billed.tolist()
        out["allowed_amount"] += allowed.tolist()
        out["paid_amount"] += paid.tolist()
        out["status"] += [ref.CLAIM_STATUSES[s] for s in status.tolist()]
        out["service_date"] += [ci.admit[r] for r in rows.tolist()]
        out["submitted_date"] += submitted
        out["paid_date"] += paid_date
        out["updated_at"] += _stamps(file_day, rng, 0, 6 * 3600)
    return out


def referrals_month(rng: np.random.Generator, n: int, providers: Providers,
                    hospitals: list[tuple[str, Patients]], month_start: date, days: int,
                    first_id: int) -> Batch:
    """``n`` referrals; ones leaving the referring provider's employer often leak."""
    every = np.arange(len(providers))
    primary = np.array([ref.SPECIALTIES[s].primary_care for s in providers.specialty.tolist()])
    weight = providers.volume * np.where(primary, 3.0, 1.0) * np.where(providers.active, 1.0, 0.02)
    referring = _choose(rng, every, weight, n)
    by_employer: dict[str, list[int]] = {}
    position = []  # of each provider within its employer's list
    for i, e in enumerate(providers.employer_id):
        position.append(len(by_employer.setdefault(e, [])))
        by_employer[e].append(i)
    anyone = _choose(rng, every, providers.volume, n).tolist()
    in_network = (rng.random(n) < 0.7).tolist()
    pick = rng.random(n).tolist()
    referred = []
    for r, other, inside, u in zip(referring.tolist(), anyone, in_network, pick, strict=True):
        colleagues = by_employer[providers.employer_id[r]]
        if inside and len(colleagues) > 1:
            k = int(u * (len(colleagues) - 1))
            referred.append(colleagues[k + 1 if k >= position[r] else k])  # never the referrer
        else:
            referred.append(other if other != r else (r + 1) % len(providers))
    same = np.array([providers.employer_id[a] == providers.employer_id[b] for a, b in zip(referring.tolist(), referred, strict=True)])
    status = np.where(same, rng.choice(4, size=n, p=[0.65, 0.2, 0.12, 0.03]),
                      rng.choice(4, size=n, p=[0.3, 0.08, 0.07, 0.55]))
    hosp_weight = np.array([len(p) for _, p in hospitals], dtype=float)
    hosp = rng.choice(len(hospitals), size=n, p=hosp_weight / hosp_weight.sum()).tolist()
    pat_pick = rng.random(n).tolist()
    ref_days = _days(month_start, rng.integers(0, days, size=n))
    return {
        "referral_id": [f"REF{first_id + i + 1:08d}" for i in range(n)],
        "referring_npi": [providers.npi[r] for r in referring.tolist()],
        "referred_to_npi": [providers.npi[r] for r in referred],
        "patient_source_system": [hospitals[h][0] for h in hosp],
        "patient_id": [hospitals[h][1].columns["patient_id"][int(u * len(hospitals[h][1]))]
                       for h, u in zip(hosp, pat_pick, strict=True)],
        "employer_id": [providers.employer_id[r] for r in referring.tolist()],
        "referral_date": ref_days,
        "status": [ref.REFERRAL_STATUSES[s] for s in status.tolist()],
        "specialty_requested": [ref.SPECIALTIES[providers.specialty[r]].name for r in referred],
        "updated_at": _stamps([d + timedelta(days=int(k)) for d, k in zip(ref_days, rng.integers(0, 21, size=n).tolist(), strict=True)], rng),
    }


def crm_month(rng: np.random.Generator, n: int, providers: Providers, month_start: date,
              days: int, first_id: int) -> Batch:
    """``n`` marketing activities aimed at providers, busier providers more often."""
    target = _choose(rng, np.arange(len(providers)), providers.volume, n)
    kind = rng.choice(len(ref.ACTIVITY_TYPES), size=n, p=[0.1, 0.35, 0.4, 0.15])
    bounds = np.array([ref.ACTIVITY_SPEND[t][:2] for t in ref.ACTIVITY_TYPES])[kind]
    spend = np.rint((bounds[:, 0] + rng.random(n) * (bounds[:, 1] - bounds[:, 0])) * 100).astype(np.int64)
    typical = np.array([ref.ACTIVITY_SPEND[t][2] for t in ref.ACTIVITY_TYPES])[kind]
    contacts = np.maximum(1, rng.poisson(typical))
    opportunity = np.rint(spend * np.exp(rng.normal(1.0, 0.5, size=n)) + contacts * 25_000).astype(np.int64)
    act_days = _days(month_start, rng.integers(0, days, size=n))
    return {
        "activity_id": [f"ACT{first_id + i + 1:08d}" for i in range(n)],
        "npi": [providers.npi[t] for t in target.tolist()],
        "activity_date": act_days,
        "activity_type": [ref.ACTIVITY_TYPES[k] for k in kind.tolist()],
        "marketing_spend": spend.tolist(),
        "contacts": contacts.tolist(),
        "opportunity_value": opportunity.tolist(),
        "updated_at": _stamps([d + timedelta(days=int(k)) for d, k in zip(act_days, rng.integers(0, 4, size=n).tolist(), strict=True)], rng),
    }
