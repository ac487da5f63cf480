"""The hidden truth behind a generated landing zone, saved beside the manifest.

The generator plants provider effects (quality, cost efficiency, specialisation), patient
risk that is confounded with provider choice, real readmission encounters and area demand.
:class:`TruthWriter` saves them as CSV files in ``<out_dir>/_truth/`` so tests (and anyone
checking a measure) can compare what the curated tables find with what was planted.
Same seed, same truth. The files and their columns are described in docs/measures.md.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from carelake.generate import reference as ref
from carelake.generate.persons import PersonTruth
from carelake.generate.world import (
    CHRONIC_CODES,
    DEMAND_GROWTH,
    SHORT_AREA_KEEP,
    SHORT_AREAS,
    Batch,
    Patients,
    Providers,
)

TRUTH_DIR = "_truth"
PROVIDERS_FILE = "providers.csv"
SPECIALTY_HISTORY_FILE = "specialty_history.csv"
PATIENTS_FILE = "patients.csv"
ENCOUNTERS_FILE = "encounters.csv"
AREAS_FILE = "areas.csv"
PERSONS_FILE = "persons.csv"
EFFECTS_FILE = "effects.json"


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(header)
        out.writerows(["" if v is None else v for v in row] for row in rows)


class TruthWriter:
    """Writes the truth files into ``<out_dir>/_truth/``: the per-encounter truth month by month
    as it is generated (nothing is kept), the rest once at the end (:meth:`finish`)."""

    def __init__(self, out_dir: str | Path):
        self.folder = Path(out_dir) / TRUTH_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        self._encounters = (self.folder / ENCOUNTERS_FILE).open("w", newline="", encoding="utf-8")
        self._rows = csv.writer(self._encounters, lineterminator="\n")
        self._columns: list[str] | None = None

    def encounters(self, batch: Batch) -> None:
        """Append one hospital-month of per-encounter truth."""
        if self._columns is None:
            self._columns = list(batch)
            self._rows.writerow(self._columns)
        self._rows.writerows(["" if v is None else v for v in row]
                             for row in zip(*(batch[c] for c in self._columns), strict=True))

    def persons(self, persons: PersonTruth) -> None:
        """Write who every patient record is (``persons.csv``): records of one person share a
        ``person_id``; ``variations`` says how a second registration differs from the first."""
        _write_csv(self.folder / PERSONS_FILE, ("source_system", "patient_id", "person_id", "variations", "twin_of"),
                   zip(persons.source_system, persons.patient_id, persons.person_id, persons.variations,
                       persons.twin_of, strict=True))

    def finish(self, providers: Providers, patients: Sequence[tuple[str, Patients]], effects: dict[str, Any],
               population: tuple[Any, Any]) -> Path:
        """Write the provider, specialty history, patient, area and effect files; the folder.

        ``patients``: (source system, its patients) per hospital; ``effects``: the planted
        effect sizes (JSON-ready); ``population``: (market share, residents) per area."""
        self._encounters.close()
        folder = self.folder
        _write_csv(folder / PROVIDERS_FILE,
                   ("npi", "first_specialty", "quality", "cost_factor", "volume", "case_mix_pull",
                    "specialised_procedure", "practice_zip3"),
                   ((providers.npi[i], ref.SPECIALTIES[providers.specialty_history[i][0][1]].name,
                     round(float(providers.quality[i]), 6), round(float(providers.cost[i]), 6),
                     round(float(providers.volume[i]), 6), round(float(providers.case_mix_pull[i]), 6),
                     providers.specialised[i], ref.ZIP_AREAS[int(providers.area[i])][0])
                    for i in range(len(providers))))
        _write_csv(folder / SPECIALTY_HISTORY_FILE, ("npi", "specialty", "valid_from"),
                   ((providers.npi[i], ref.SPECIALTIES[s].name, d.isoformat())
                    for i in range(len(providers)) for d, s in providers.specialty_history[i]))
        _write_csv(folder / PATIENTS_FILE, ("source_system", "patient_id", "age", "risk", "chronic_code", "zip3"),
                   ((system, pats.columns["patient_id"][i], int(pats.age[i]), round(float(pats.risk[i]), 6),
                     pats.chronic_code[i], ref.ZIP_AREAS[int(pats.area[i])][0])
                    for system, pats in patients for i in range(len(pats))))
        share, residents = population
        _write_csv(folder / AREAS_FILE, ("zip3", "city", "demand_growth", "provider_shortage", "providers_kept_share",
                                         "market_share", "population"),
                   ((zip3, city, DEMAND_GROWTH[a], a in SHORT_AREAS, SHORT_AREA_KEEP if a in SHORT_AREAS else 1.0,
                     round(float(share[a]), 6), int(residents[a]))
                    for a, (zip3, city, _) in enumerate(ref.ZIP_AREAS)))
        (folder / EFFECTS_FILE).write_text(
            json.dumps({**effects, "chronic_codes": list(CHRONIC_CODES)}, indent=1, sort_keys=True) + "\n",
            encoding="utf-8")
        return folder
