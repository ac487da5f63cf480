"""Write a deterministic sample landing zone for every source system in the configuration.

The layout (paths, column names, value codes, date patterns, amount units, file format)
comes from ``config.sources``; what the records mean comes from this package. Generation
streams month by month: a month's activity is written and dropped before the next.
"""

from __future__ import annotations

import calendar
import hashlib
from datetime import date, datetime, timedelta
from pathlib import Path, PurePosixPath

import numpy as np

from carelake.config import Config, SourceEntity, SourceSystem
from carelake.generate import activity, fhir
from carelake.generate import reference as ref
from carelake.generate.defects import HEADER_ONLY, SPECS, TRUNCATED_LINE, Injected, inject
from carelake.generate.fhir import FhirRenderer
from carelake.generate.formats import Renderer, file_name
from carelake.generate.manifest import Defect, FileEntry, Manifest
from carelake.generate.persons import (
    LINKED_CLAIM_OFFSET,
    LINKED_ENCOUNTER_OFFSET,
    LINKED_PROCEDURE_OFFSET,
    LINKED_TAG,
    LINKED_VISIT_RATE,
    READMIT_ELSEWHERE_SEED_OFFSET,
    PersonTruth,
    linked_rng,
    other_registrations,
    plant_persons,
    readmissions_elsewhere,
)
from carelake.generate.truth import TruthWriter
from carelake.generate.world import Batch, Patients, Providers, area_population

# Volumes at scale 1 over twelve months.
ENCOUNTERS_PER_YEAR = 100_000
PROVIDERS = 2_000
PATIENTS = 40_000
REFERRALS_PER_YEAR = 15_000
CRM_ACTIVITIES_PER_YEAR = 5_000
CHANGE_EVERY_MONTHS = 3  # providers/patients change files at months 3, 6, 9 ...


def _month(start: date, offset: int) -> tuple[date, int]:
    """First day of the ``offset``-th month from ``start`` and its number of days."""
    index = start.year * 12 + start.month - 1 + offset
    first = date(index // 12, index % 12 + 1, 1)
    return first, calendar.monthrange(first.year, first.month)[1]


class _Writer:
    """Renders, breaks (when asked), writes and records each file."""

    def __init__(self, out: Path, config: Config, rate: float, rng: np.random.Generator,
                 manifest: Manifest):
        self.out = out
        self.rate = rate
        self.rng = rng
        self.manifest = manifest
        self.renderers: dict[tuple[str, str], Renderer] = {}
        self.fhir: dict[tuple[str, str], FhirRenderer] = {}
        self.month = 0  # which month is being written: FHIR sources send odd months as Bundles
        self.pending: dict[str, list[tuple[str, list[dict], Batch | None, list[Injected]]]] = {}
        self.systems = config.sources
        for system in config.sources.values():
            # a FHIR entity that only feeds another one's joined columns is written by that one's renderer
            fed = {j.entity for e in system.entities.values() for j in e.joined.values()}
            for name, entity in system.entities.items():
                if name in fed:
                    continue
                if name not in SPECS:
                    raise ValueError(
                        f"sources.{system.name}.entities.{name}: no generator for this entity; "
                        f"expected one of {', '.join(SPECS)}")
                if SPECS[name].key not in entity.columns:
                    raise ValueError(
                        f"sources.{system.name}.entities.{name}.columns: expected the business key "
                        f"{SPECS[name].key!r}, found {', '.join(entity.columns)}")
                if system.format == "fhir":
                    self.fhir[(system.name, name)] = FhirRenderer(system, entity)
                else:
                    self.renderers[(system.name, name)] = Renderer(system, entity, SPECS[name].types)
            if (system.name, "encounters") in self.fhir and (system.name, "procedures") in self.fhir:
                shared = self.fhir[(system.name, "encounters")].patient_of_encounter
                self.fhir[(system.name, "procedures")].patient_of_encounter = shared

    def _save(self, system: SourceSystem, entity: SourceEntity, path: str, data: bytes, rows: int) -> None:
        target = self.out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self.manifest.files.append(FileEntry(path, system.name, entity.entity, rows,
                                             hashlib.sha256(data).hexdigest()))

    def write(self, system: SourceSystem, entity_name: str, tag: str, batch: Batch) -> None:
        """Write one file of ``entity_name`` for ``system`` tagged ``tag`` (e.g. ``2024-03``)."""
        if system.format == "fhir":
            self._write_fhir(system, entity_name, tag, batch)
            return
        entity = system.entities[entity_name]
        renderer = self.renderers[(system.name, entity_name)]
        spec = SPECS[entity_name]
        batch, injected, truncate = inject(batch, spec, renderer.columns, self.rate, self.rng,
                                           truncatable=not renderer.json)
        cells = renderer.render(batch)
        rows = len(batch[spec.key])
        path = file_name(entity, tag)
        self._save(system, entity, path, renderer.to_bytes(cells, truncate_last=truncate), rows)
        # an empty CSV cell is a null: record it as None like a JSON null
        keys = [k if k != "" else None for k in cells[renderer.columns.index(spec.key)]]
        for d in injected:
            col = renderer.columns.index(d.column) if d.column in renderer.columns else None
            value = cells[col][d.row] if col is not None else None
            self.manifest.defects.append(Defect(
                d.kind, system.name, entity_name, path, keys[d.row], d.column,
                entity.columns.get(d.column) if d.column else None, d.row,
                value if value != "" else None))
        if truncate:
            self.manifest.defects.append(Defect(
                TRUNCATED_LINE, system.name, entity_name, path, keys[-1], None, None, rows - 1))
        clean = rows - len(injected) - int(truncate)
        self.manifest.clean_rows[entity_name] = self.manifest.clean_rows.get(entity_name, 0) + clean

    def _write_fhir(self, system: SourceSystem, entity_name: str, tag: str, batch: Batch) -> None:
        """A FHIR source's batch: bulk NDJSON now, or held for this month's Bundle (odd months)."""
        spec = SPECS[entity_name]
        renderer = self.fhir[(system.name, entity_name)]
        batch, injected, _ = inject(batch, spec, renderer.columns, self.rate, self.rng, truncatable=False)
        resources = renderer.resources(batch)
        if system.bundles and self.month % 2 == 1:
            self.pending.setdefault(system.name, []).append((entity_name, resources, batch, injected))
            for name, companions in renderer.companion_resources.items():
                self.pending[system.name].append((name, companions, None, []))
            return
        entity = system.entities[entity_name]
        path = file_name(entity, tag)
        self._save(system, entity, path, fhir.ndjson(resources), len(resources))
        self._record_fhir(system, entity_name, path, batch, injected)
        for name, companions in renderer.companion_resources.items():
            self._save(system, system.entities[name], file_name(system.entities[name], tag), fhir.ndjson(companions), len(companions))
            self._record_companions(name, companions)

    def _record_companions(self, entity_name: str, resources: list[dict]) -> None:
        # their rows' defects are recorded once, on the entity that planted them
        self.manifest.clean_rows[entity_name] = self.manifest.clean_rows.get(entity_name, 0) + len(resources)

    def _record_fhir(self, system: SourceSystem, entity_name: str, path: str, batch: Batch, injected: list[Injected]) -> None:
        spec = SPECS[entity_name]
        keys = batch[spec.key]
        for d in injected:
            value = batch[d.column][d.row] if d.column else None
            self.manifest.defects.append(Defect(
                d.kind, system.name, entity_name, path, None if keys[d.row] is None else str(keys[d.row]), d.column,
                d.column, d.row, None if value is None else str(value)))
        clean = len(keys) - len(injected)
        self.manifest.clean_rows[entity_name] = self.manifest.clean_rows.get(entity_name, 0) + clean

    def flush_bundles(self, tag: str) -> None:
        """Write each FHIR source's held resources of the month as one collection Bundle."""
        for name, parts in self.pending.items():
            system = self.systems[name]
            path = str(PurePosixPath(system.bundles or "").parent / f"bundle_{tag}.json")
            data = fhir.bundle(f"{name}-{tag}", [r for _, resources, _, _ in parts for r in resources])
            target = self.out / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            digest = hashlib.sha256(data).hexdigest()
            for entity_name, resources, batch, injected in parts:
                # One entry per entity the Bundle feeds: each entity reads its own resources from it.
                self.manifest.files.append(FileEntry(path, name, entity_name, len(resources), digest))
                if batch is not None:
                    self._record_fhir(system, entity_name, path, batch, injected)
                else:
                    self._record_companions(entity_name, resources)
        self.pending.clear()

    def header_only(self, system: SourceSystem, entity_name: str, tag: str) -> None:
        """Write a file with a header and no rows (a resend that lost its body)."""
        entity = system.entities[entity_name]
        renderer = self.renderers[(system.name, entity_name)]
        path = file_name(entity, tag)
        self._save(system, entity, path, renderer.to_bytes([[] for _ in renderer.columns]), 0)
        self.manifest.defects.append(Defect(HEADER_ONLY, system.name, entity_name, path,
                                            None, None, None, None))
        self.manifest.clean_rows.setdefault(entity_name, 0)


def carried_by(system: SourceSystem, rows: Batch, senders: list[SourceSystem]) -> Batch:
    """The rows of a claims or referrals batch that ``system`` sends, among ``senders`` of that entity.

    A FHIR hospital that sends the entity is the source of record for its own patients' rows
    (``patient_source_system``); the feed (clearinghouse, CRM) carries everyone else's. Each row
    is sent once, so nothing arrives twice.
    """
    own = {s.name for s in senders if s.format == "fhir"}
    keep = [i for i, h in enumerate(rows["patient_source_system"])
            if (h == system.name if system.name in own else h not in own)]
    return {c: [column[i] for i in keep] for c, column in ((c, list(v)) for c, v in rows.items())}


def _population(hospitals: int, scale: float, rng: np.random.Generator, start: date
                ) -> tuple[np.ndarray, Providers, list[Patients]]:
    """Each hospital's share of the activity, the providers and each hospital's own patients."""
    weights = np.array([1.0 / (1 + 0.25 * i) for i in range(hospitals)])
    weights = weights / weights.sum() if hospitals else weights
    providers = Providers.create(max(8, round(PROVIDERS * scale)), max(1, hospitals), rng, start)
    patients = [Patients.create(max(10, round(PATIENTS * scale * w)), i, rng, start)
                for i, w in enumerate(weights.tolist())]
    return weights, providers, patients


def _write_area_population(out: Path, residents: np.ndarray) -> None:
    """The reference file of residents per area (zip3, population)."""
    target = out / ref.AREA_POPULATION_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    lines = ["zip3,population"] + [f"{zip3},{n}" for (zip3, _, _), n in zip(ref.ZIP_AREAS, residents.tolist(), strict=True)]
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _before(start: date) -> datetime:
    return datetime(start.year, start.month, start.day) - timedelta(days=1)


def patient_registrations(config: Config, scale: float = 1.0, seed: int = 42, start: date = date(2024, 1, 1)
                          ) -> tuple[list[tuple[str, Patients]], PersonTruth]:
    """The patient records :func:`generate` writes in its first month for these parameters -- each
    hospital's own and the extra (linked and twin) ones, as (source system, patients) -- and the
    person behind each, without writing anything (for matching tests)."""
    hospitals = [s.name for s in config.sources.values() if "encounters" in s.entities]
    data_seq, _ = np.random.SeedSequence(seed).spawn(2)
    _, _, patients = _population(len(hospitals), scale, np.random.default_rng(data_seq), start)
    linked, persons = plant_persons(linked_rng(seed), patients, hospitals, _before(start))
    return [(h, p[i]) for p in (patients, linked) for i, h in enumerate(hospitals)], persons


def generate(out_dir: str | Path, config: Config, scale: float = 1.0, seed: int = 42,
             defect_rate: float = 0.0, start: date = date(2024, 1, 1), months: int = 12,
             persons: bool = True) -> Manifest:
    """Generate ``months`` months of sample files for every configured source into ``out_dir``.

    Rows grow linearly with ``scale`` (1.0: ~100k encounters, ~2k providers, ~40k patients).
    The same ``seed``, ``scale`` and ``defect_rate`` give byte-identical files; about
    ``defect_rate`` of each file's rows carry a recorded defect. Returns the manifest, also
    written to ``<out_dir>/_manifest.json``; the planted truth (provider quality and cost
    efficiency, patient risk, readmission links, area demand) goes to ``<out_dir>/_truth/``
    (:mod:`carelake.generate.truth`). ``persons``: also plant people registered at several
    hospitals, and twins (:mod:`carelake.generate.persons`; their own files, ``*-linked``).
    """
    if scale <= 0:
        raise ValueError(f"scale: expected > 0, found {scale}")
    if not 0 <= defect_rate < 1:
        raise ValueError(f"defect_rate: expected 0 <= rate < 1, found {defect_rate}")
    if months < 1:
        raise ValueError(f"months: expected >= 1, found {months}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # separate streams: the clean content does not depend on the defect rate
    data_seq, defect_seq = np.random.SeedSequence(seed).spawn(2)
    rng, defect_rng = np.random.default_rng(data_seq), np.random.default_rng(defect_seq)
    manifest = Manifest(parameters={"scale": scale, "seed": seed, "defect_rate": defect_rate,
                                    "start": start.isoformat(), "months": months})
    writer = _Writer(out, config, defect_rate, defect_rng, manifest)
    systems = config.sources
    hospitals = [s for s in systems.values() if "encounters" in s.entities]
    for h in hospitals:
        if "patients" not in h.entities:
            raise ValueError(f"sources.{h.name}.entities: has 'encounters' but no 'patients' to refer to")
    with_entity = {e: [s for s in systems.values() if e in s.entities] for e in SPECS}
    weights, providers, patients = _population(len(hospitals), scale, rng, start)
    index = {h.name: i for i, h in enumerate(hospitals)}
    members = {s.name: (providers.at_hospital(index[s.name]) if s.name in index else list(range(len(providers))))
               for s in with_entity["providers"]}
    counters = [activity.Counters() for _ in hospitals]
    due: list[list[activity.Readmission]] = [[] for _ in hospitals]
    truth = TruthWriter(out)
    claim_seq = referral_seq = activity_seq = 0
    # People registered at several hospitals, and twins: drawn from a stream of their own and
    # written to files of their own (tag suffix LINKED_TAG), so the records above do not move.
    link_rng = linked_rng(seed)
    linked, who = plant_persons(link_rng, patients, [h.name for h in hospitals], _before(start), extra=persons)
    link_writer = _Writer(out, config, defect_rate, np.random.default_rng(link_rng.integers(0, 2**63)), manifest)
    link_counters = [activity.Counters(LINKED_ENCOUNTER_OFFSET, LINKED_PROCEDURE_OFFSET) for _ in hospitals]
    link_due: list[list[activity.Readmission]] = [[] for _ in hospitals]
    link_claim_seq = LINKED_CLAIM_OFFSET
    # Readmissions at another hospital of the same person: their own stream, so the records
    # above stay as they were; they are written with the linked records' files.
    elsewhere_rng = np.random.default_rng(np.random.SeedSequence([seed, READMIT_ELSEWHERE_SEED_OFFSET]))
    registrations = other_registrations(who, [patients[index[h.name]] for h in hospitals],
                                        [linked[index[h.name]] for h in hospitals], [h.name for h in hospitals])
    patient_index = [{pid: j for j, pid in enumerate(patients[index[h.name]].columns["patient_id"])} for h in hospitals]
    elsewhere_due: list[list[activity.Readmission]] = [[] for _ in hospitals]

    for m in range(months):
        month_start, days = _month(start, m)
        tag = month_start.strftime("%Y-%m")
        writer.month = m
        if m == 0:
            for s in with_entity["providers"]:
                writer.write(s, "providers", tag, providers.batch(members[s.name]))
            for h in hospitals:
                writer.write(h, "patients", tag, patients[index[h.name]].batch())
                if len(linked[index[h.name]]):
                    link_writer.write(h, "patients", f"{tag}-{LINKED_TAG}", linked[index[h.name]].batch())
        elif m % CHANGE_EVERY_MONTHS == 0:
            changed = set(providers.change(rng, month_start, days))
            # a system none of whose records changed gets no change file that month
            for s in with_entity["providers"]:
                rows = [i for i in members[s.name] if i in changed]
                if rows:
                    writer.write(s, "providers", tag, providers.batch(rows))
            for h in hospitals:
                pats = patients[index[h.name]]
                writer.write(h, "patients", tag, pats.batch(pats.change(rng, month_start, days)))

        season = 1 + 0.08 * np.cos(2 * np.pi * (month_start.month - 1) / 12)  # winter peak
        claim_inputs = []
        for h, w in zip(hospitals, weights.tolist(), strict=True):
            i = index[h.name]
            n = max(1, round(ENCOUNTERS_PER_YEAR * scale * w / 12 * season))
            produced = activity.hospital_month(
                rng, i, h.name, n, providers, patients[i], month_start, days, counters[i], due[i], m / 12)
            due[i] = produced.scheduled  # readmissions after the last month are never written
            writer.write(h, "encounters", tag, produced.encounters)
            if "procedures" in h.entities:
                writer.write(h, "procedures", tag, produced.procedures)
            claim_inputs.append(produced.claim_input)
            truth.encounters(produced.truth)
            if registrations:
                for w, readmission in readmissions_elsewhere(elsewhere_rng, produced.truth, i, registrations, patient_index[i]):
                    elsewhere_due[w].append(readmission)
        if with_entity["claims"]:
            claims = activity.claims_month(rng, claim_inputs, claim_seq)
            claim_seq += len(claims["claim_id"])
            for s in with_entity["claims"]:
                writer.write(s, "claims", tag, carried_by(s, claims, with_entity["claims"]))
        link_writer.month = m
        link_claims = []
        for h, w in zip(hospitals, weights.tolist(), strict=True):
            i = index[h.name]
            # the extra records visit at LINKED_VISIT_RATE of the rate of the hospital's own patients
            if not len(linked[i]):
                continue
            month_end = month_start + timedelta(days=days - 1)
            link_due[i] = link_due[i] + [r for r in elsewhere_due[i] if r.admit <= month_end]
            elsewhere_due[i] = [r for r in elsewhere_due[i] if r.admit > month_end]
            # at least one a month, as for every hospital: each month has its linked files
            n = max(1, round(ENCOUNTERS_PER_YEAR * scale * w / 12 * season * LINKED_VISIT_RATE
                             * len(linked[i]) / len(patients[i])))
            produced = activity.hospital_month(
                link_rng, i, h.name, n, providers, linked[i], month_start, days, link_counters[i], link_due[i], m / 12)
            link_due[i] = produced.scheduled
            link_writer.write(h, "encounters", f"{tag}-{LINKED_TAG}", produced.encounters)
            if "procedures" in h.entities:
                link_writer.write(h, "procedures", f"{tag}-{LINKED_TAG}", produced.procedures)
            link_claims.append(produced.claim_input)
            truth.encounters(produced.truth)
        if with_entity["claims"] and link_claims:
            claims = activity.claims_month(link_rng, link_claims, link_claim_seq)
            link_claim_seq += len(claims["claim_id"])
            for s in with_entity["claims"]:
                link_writer.write(s, "claims", f"{tag}-{LINKED_TAG}", carried_by(s, claims, with_entity["claims"]))
        if with_entity["referrals"] and hospitals:
            n = max(1, round(REFERRALS_PER_YEAR * scale / 12))
            referrals = activity.referrals_month(
                rng, n, providers, [(h.name, patients[index[h.name]]) for h in hospitals],
                month_start, days, referral_seq)
            referral_seq += n
            for s in with_entity["referrals"]:
                writer.write(s, "referrals", tag, carried_by(s, referrals, with_entity["referrals"]))
        if with_entity["crm_activity"]:
            n = max(1, round(CRM_ACTIVITIES_PER_YEAR * scale / 12))
            crm = activity.crm_month(rng, n, providers, month_start, days, activity_seq)
            activity_seq += n
            for s in with_entity["crm_activity"]:
                writer.write(s, "crm_activity", tag, {c: list(v) for c, v in crm.items()})
        writer.flush_bundles(tag)
        link_writer.flush_bundles(f"{tag}-{LINKED_TAG}")

    if defect_rate > 0:
        csv_hospitals = [h for h in hospitals if h.format == "csv"]
        if csv_hospitals:
            month_start, _ = _month(start, months // 2)
            writer.header_only(csv_hospitals[0], "encounters", month_start.strftime("%Y-%m") + "-resend")
    market_share, residents = area_population(seed, patients)
    _write_area_population(out, residents)
    truth.finish(providers, [(h.name, p[index[h.name]]) for p in (patients, linked) for h in hospitals],
                 activity.planted_effects(), (market_share, residents))
    truth.persons(who)
    manifest.write(out)
    return manifest
