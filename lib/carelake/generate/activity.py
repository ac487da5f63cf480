"""One month of activity: encounters, procedures, claims, referrals and CRM activity.

Everything is drawn column-wise with numpy; hidden provider factors make some providers
measurably better (fewer readmissions and complications, happier patients) or cheaper.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

from carelake.generate import reference as ref
from carelake.generate.world import DAY, DEMAND_GROWTH, Batch, Patients, Providers

ENCOUNTER_ID_STYLES = ("E{:08d}", "enc-{:d}", "V{:09d}")
PROCEDURE_ID_STYLES = ("PR{:09d}", "proc-{:d}", "{:010d}")

# The source's readmission flag on outpatient / emergency visits is noise at these rates
# (index = encounter type: inpatient, outpatient, emergency); inpatient flags are real.
READMIT_BASE = np.array([0.16, 0.08, 0.12])
COMPLICATION_BASE = np.array([0.08, 0.02, 0.05])
INPATIENT_DAY_CHARGE = 1800.0  # dollars per night, before the provider's cost factor
# Planted effects (log-odds or log scale per standard deviation of patient risk / provider
# quality); see docs/measures.md for how the measures recover them.
READMIT_INDEX_BASE = 0.14  # unplanned 30-day readmission of an average patient and provider
READMIT_RISK, READMIT_QUALITY = 0.6, 0.5
COMPLICATION_RISK, COMPLICATION_QUALITY = 0.5, 0.45
SPECIALISED_BENEFIT = 0.7  # fewer complications when the provider does what it excels at
SPECIALISED_SHARE = 0.35  # share of a provider's encounters built around its specialised code
# A specialty's first listed code is its everyday procedure (office visit, delivery, biopsy):
# it takes this share of the procedures, the other codes split the rest evenly. A specialised
# code is never the everyday one, so a provider's most frequent code says what its specialty
# does and only a comparison with its peers shows what it does more of.
EVERYDAY_CODE_SHARE = 0.45
PLANNED_READMIT_RATE = 0.04
PLANNED_DIAGNOSIS = "Z51.11"  # encounter for antineoplastic chemotherapy: a planned stay
INPATIENT_EXTRA_NIGHTS = 2.0  # mean nights beyond the first of an average patient and provider
LOS_RISK, LOS_COST = 0.25, 1.5
CHRONIC_DIAGNOSIS_SHARE = 0.5  # encounters of a chronically ill patient coded with that condition
CASE_MIX_TILT = 0.8
INPATIENT_SPECIALTY_MIN = 0.2  # specialties admitting at least this share of their patients
PICK_CHUNK = 2048


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


def everyday_weighted_index(u: float, n_codes: int) -> int:
    """Index of the code a uniform draw ``u`` picks among ``n_codes``: 0 (the everyday code) with
    :data:`EVERYDAY_CODE_SHARE`, each other code evenly; one code, always 0."""
    if n_codes == 1 or u < EVERYDAY_CODE_SHARE:
        return 0
    return 1 + min(int((u - EVERYDAY_CODE_SHARE) / (1 - EVERYDAY_CODE_SHARE) * (n_codes - 1)), n_codes - 2)


def planted_effects() -> dict[str, float]:
    """The effect sizes this module plants, for the truth folder."""
    return {
        "readmission_index_base_rate": READMIT_INDEX_BASE, "readmission_log_odds_per_risk_sd": READMIT_RISK,
        "readmission_log_odds_per_quality_sd": -READMIT_QUALITY,
        "complication_log_rate_per_risk_sd": COMPLICATION_RISK,
        "complication_log_rate_per_quality_sd": -COMPLICATION_QUALITY,
        "complication_log_rate_specialised": -SPECIALISED_BENEFIT, "planned_readmission_rate": PLANNED_READMIT_RATE,
        "planned_readmission_diagnosis": PLANNED_DIAGNOSIS, "extra_nights_mean": INPATIENT_EXTRA_NIGHTS,
        "extra_nights_log_per_risk_sd": LOS_RISK, "extra_nights_cost_exponent": LOS_COST,
        "case_mix_tilt": CASE_MIX_TILT, "inpatient_day_charge": INPATIENT_DAY_CHARGE,
        "specialised_encounter_share": SPECIALISED_SHARE, "everyday_code_share": EVERYDAY_CODE_SHARE,
    }


@dataclass(frozen=True)
class Readmission:
    """A later inpatient stay caused by an earlier one, waiting for the month it falls in."""

    patient: int
    admit: date
    planned: bool
    index_encounter_id: str


@dataclass
class HospitalMonth:
    """What one hospital produced in a month, with the truth behind it and the stays still due."""

    encounters: Batch
    procedures: Batch
    claim_input: ClaimInput
    truth: Batch
    scheduled: list[Readmission]


def _days(start: date, offsets: np.ndarray) -> list[date]:
    return [start + timedelta(days=d) for d in offsets.tolist()]


def _stamps(days: list[date], rng: np.random.Generator, lo: int = 0, hi: int = DAY) -> list[datetime]:
    seconds = rng.integers(lo, hi, size=len(days)).tolist()
    return [datetime(d.year, d.month, d.day) + timedelta(seconds=s) for d, s in zip(days, seconds, strict=True)]


def _choose(rng: np.random.Generator, pool: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    return pool[rng.choice(pool.size, size=n, p=weights / weights.sum())]


def pick_providers(rng: np.random.Generator, providers: Providers, pool: np.ndarray,
                   areas: np.ndarray, risk: np.ndarray) -> np.ndarray:
    """A provider from ``pool`` for each patient (area, risk): mostly one practising in that
    area, busier ones more often, and sicker patients more often to providers with a high
    ``case_mix_pull`` (so case mix is confounded with quality)."""
    base = np.log(providers.volume[pool] * np.where(providers.active[pool], 1.0, 0.02))
    pull = providers.case_mix_pull[pool]
    home = providers.area[pool]
    local = rng.random(areas.size) < 0.85
    out = np.empty(areas.size, dtype=np.int64)
    for lo in range(0, areas.size, PICK_CHUNK):  # chunks bound the (patients x pool) matrix
        sl = slice(lo, lo + PICK_CHUNK)
        logits = base[None, :] + CASE_MIX_TILT * risk[sl, None] * pull[None, :]
        in_area = home[None, :] == areas[sl, None]
        restrict = local[sl] & in_area.any(axis=1)
        logits = np.where(restrict[:, None] & ~in_area, -np.inf, logits)
        out[sl] = pool[np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)]  # Gumbel-max draw
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _patient_draw(rng: np.random.Generator, patients: Patients, n: int, elapsed_years: float) -> np.ndarray:
    """``n`` patient indices: a few patients come back often, and areas grow at their
    planted :data:`reference`-area demand growth rate."""
    growth = np.array(DEMAND_GROWTH)[patients.area]
    weight = (np.arange(len(patients)) + 1.0) ** -0.286 * (1.0 + growth) ** elapsed_years
    return rng.choice(len(patients), size=n, p=weight / weight.sum())


def _concat(batches: list[Batch]) -> Batch:
    return {c: [v for b in batches for v in b[c]] for c in batches[0]}


def hospital_month(rng: np.random.Generator, hospital: int, system: str, n: int,
                   providers: Providers, patients: Patients, month_start: date, days: int,
                   counters: Counters, due: list[Readmission], elapsed_years: float) -> HospitalMonth:
    """``n`` new encounters of one hospital in one month plus the readmissions ``due`` in it
    (and those they cause within the month), their procedures, claim inputs and truth."""
    month_end = month_start + timedelta(days=days - 1)
    parts: list[HospitalMonth] = []
    later: list[Readmission] = []
    pending, first = list(due), True
    while first or pending:
        part = _encounter_batch(rng, hospital, system, n if first else 0, providers, patients,
                                month_start, days, counters, pending, elapsed_years)
        parts.append(part)
        pending = [r for r in part.scheduled if r.admit <= month_end]
        later += [r for r in part.scheduled if r.admit > month_end]
        first = False
    claims = ClaimInput(system=system, encounter_id=[], patient_id=[], npi=[], payer=[], admit=[], discharge=[],
                        billed_cents=np.concatenate([p.claim_input.billed_cents for p in parts]))
    for p in parts:
        for name in ("encounter_id", "patient_id", "npi", "payer", "admit", "discharge"):
            getattr(claims, name).extend(getattr(p.claim_input, name))
    return HospitalMonth(_concat([p.encounters for p in parts]), _concat([p.procedures for p in parts]),
                         claims, _concat([p.truth for p in parts]), later)


def _encounter_batch(rng: np.random.Generator, hospital: int, system: str, n_new: int,
                     providers: Providers, patients: Patients, month_start: date, days: int,
                     counters: Counters, readmissions: list[Readmission], elapsed_years: float) -> HospitalMonth:
    k = len(readmissions)
    n = n_new + k
    pool = np.array(providers.at_hospital(hospital))
    pat = np.concatenate([_patient_draw(rng, patients, n_new, elapsed_years),
                          np.array([r.patient for r in readmissions], dtype=np.int64)]).astype(np.int64)
    risk = patients.risk[pat]
    prov = pick_providers(rng, providers, pool, patients.area[pat], risk)
    if k:  # a readmission is an inpatient stay: the attending is one who admits patients
        admitting = pool[[ref.SPECIALTIES[s].type_probs[0] >= INPATIENT_SPECIALTY_MIN for s in providers.specialty[pool].tolist()]]
        prov[n_new:] = pick_providers(rng, providers, admitting if admitting.size else pool,
                                      patients.area[pat[n_new:]], risk[n_new:])
    spec = providers.specialty[prov]
    cum = np.cumsum(np.array([s.type_probs for s in ref.SPECIALTIES]), axis=1)[spec]
    etype = np.minimum((rng.random(n)[:, None] > cum).sum(axis=1), 2)
    etype[n_new:] = 0
    planned = np.zeros(n, dtype=bool)
    planned[n_new:] = [r.planned for r in readmissions]
    cost = providers.cost[prov]
    # Sicker patients and costlier providers stay longer; the provider's cost factor is utilisation too.
    stay = 1 + rng.poisson(INPATIENT_EXTRA_NIGHTS * np.exp(LOS_RISK * risk) * cost ** LOS_COST)
    los = np.where(etype == 0, np.where(planned, 1, np.minimum(stay, 10)),
                   np.where(etype == 2, (rng.random(n) < 0.3).astype(int), 0))
    admit_off = rng.integers(0, days, size=n)
    admit_off[n_new:] = [(r.admit - month_start).days for r in readmissions]
    q = providers.quality[prov]
    codes_of = [ref.SPECIALTIES[s].procedures for s in spec.tolist()]
    own = [providers.specialised[p] for p in prov.tolist()]
    specialised = (rng.random(n) < SPECIALISED_SHARE) & np.array(
        [c is not None and c in codes for c, codes in zip(own, codes_of, strict=True)])
    complication_p = COMPLICATION_BASE[etype] * np.exp(COMPLICATION_RISK * risk - COMPLICATION_QUALITY * q
                                                       - SPECIALISED_BENEFIT * specialised)
    complication = rng.random(n) < np.minimum(complication_p, 0.95)
    # 30-day outcome of an inpatient stay: an unplanned readmission (risk and quality driven) or
    # a planned one (chemotherapy, neither); the readmission itself is a later encounter.
    unplanned_p = _sigmoid(_logit(READMIT_INDEX_BASE) + READMIT_RISK * risk - READMIT_QUALITY * q)
    u = rng.random(n)
    index = (etype == 0) & ~planned
    will_unplanned = index & (u < unplanned_p)
    will_planned = index & ~will_unplanned & (u > 1 - PLANNED_READMIT_RATE)
    gap = np.where(will_unplanned, np.minimum(rng.geometric(0.1, size=n), 30), rng.integers(7, 29, size=n))
    # The source's own flag: any stay within 30 days after an inpatient stay, and noise elsewhere.
    flag = np.where(etype == 0, will_unplanned | will_planned, rng.random(n) < READMIT_BASE[etype])
    satisfaction = np.clip(np.rint(3.9 + 0.45 * q + rng.normal(0, 0.8, size=n) - 0.7 * complication), 1, 5)
    dx_pick = rng.random(n)
    chronic_pick = rng.random(n) < CHRONIC_DIAGNOSIS_SHARE
    specs = [ref.SPECIALTIES[s] for s in spec.tolist()]
    diagnoses = []
    for i, (s, v) in enumerate(zip(specs, dx_pick.tolist(), strict=True)):
        chronic = patients.chronic_code[pat[i]]
        if planned[i]:
            diagnoses.append(PLANNED_DIAGNOSIS)
        elif chronic is not None and chronic_pick[i]:
            diagnoses.append(chronic)
        else:
            diagnoses.append(s.diagnoses[int(v * len(s.diagnoses))])
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
        "diagnosis_code": diagnoses,
        "readmitted_30d": flag.tolist(),
        "complication": complication.tolist(),
        "satisfaction_score": satisfaction.astype(int).tolist(),
        "updated_at": _stamps([d + timedelta(days=1) for d in discharge], rng, 6 * 3600, 23 * 3600),
    }
    scheduled = [Readmission(int(pat[i]), discharge[i] + timedelta(days=int(gap[i])), bool(will_planned[i]), enc_ids[i])
                 for i in np.flatnonzero(will_unplanned | will_planned).tolist()]
    truth: Batch = {
        "source_system": [system] * n,
        "encounter_id": enc_ids,
        "patient_id": encounters["patient_id"],
        "npi": npis,
        "encounter_type": encounters["encounter_type"],
        "diagnosis_code": diagnoses,
        "admit_date": admit,
        "discharge_date": discharge,
        "complication": complication.tolist(),
        "readmitted_30d_flag": flag.tolist(),
        "filed_at": encounters["updated_at"],
        "patient_risk": np.round(risk, 4).tolist(),
        "readmission_of": [None] * n_new + [r.index_encounter_id for r in readmissions],
        "planned_readmission": planned.tolist(),
        "specialised_procedure": specialised.tolist(),
    }

    per_enc = rng.choice(3, size=n, p=[0.5, 0.3, 0.2]) + 1
    enc = np.repeat(np.arange(n), per_enc)
    m = enc.size
    code_pick = rng.random(m).tolist()
    codes = [specs[e].procedures[everyday_weighted_index(u, len(specs[e].procedures))]
             for e, u in zip(enc.tolist(), code_pick, strict=True)]
    first_of = np.r_[True, enc[1:] != enc[:-1]] if m else np.zeros(0, dtype=bool)
    codes = [own[e] if f and specialised[e] else c for e, f, c in zip(enc.tolist(), first_of.tolist(), codes, strict=True)]
    units = 1 + (rng.random(m) < 0.15).astype(int) + (rng.random(m) < 0.05).astype(int)
    price = np.array([ref.PROCEDURE_PRICES[c] for c in codes]) if m else np.zeros(0)
    charge = np.rint(price * units * cost[enc] * np.exp(rng.normal(0, 0.12, size=m)) * 100)
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

    room = np.rint(np.where(etype == 0, los, 0) * INPATIENT_DAY_CHARGE * cost * 100)
    billed = np.bincount(enc, weights=charge, minlength=n) + room
    claim_input = ClaimInput(
        # copies: defects injected into the encounter file must not leak into claims
        system=system, encounter_id=list(enc_ids), patient_id=list(encounters["patient_id"]), npi=list(npis),
        payer=[patients.payer[p] for p in pat.tolist()], admit=admit, discharge=discharge,
        billed_cents=billed.astype(np.int64),
    )
    return HospitalMonth(encounters, procedures, claim_input, truth, scheduled)


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
