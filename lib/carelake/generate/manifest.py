"""The record of what a generator run wrote: parameters, files, clean counts and defects."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "_manifest.json"


@dataclass(frozen=True)
class FileEntry:
    """One written file; ``rows`` counts data lines (a truncated last line included)."""

    path: str  # relative to the output folder, '/'-separated
    source_system: str
    entity: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class Defect:
    """One deliberately broken record (or file).

    ``key`` is the record's business key as written (None when the key itself was nulled or
    for a whole-file defect); ``column``/``source_column`` name the broken field in canonical
    and source terms; ``row`` is the 0-based data row in the file; ``value`` the cell as written.
    """

    kind: str
    source_system: str
    entity: str
    file: str
    key: str | None
    column: str | None
    source_column: str | None
    row: int | None
    value: Any = None


@dataclass
class Manifest:
    """What :func:`carelake.generate.generate` wrote; saved as ``<out_dir>/_manifest.json``.

    ``clean_rows`` counts, per entity, the written rows that carry no defect: original rows
    of duplicates count, the inserted copies and every broken or truncated row do not.
    """

    parameters: dict[str, Any]
    files: list[FileEntry] = field(default_factory=list)
    clean_rows: dict[str, int] = field(default_factory=dict)
    defects: list[Defect] = field(default_factory=list)

    def defect_counts(self) -> dict[tuple[str, str], int]:
        """Number of defects per (entity, kind)."""
        return dict(Counter((d.entity, d.kind) for d in self.defects))

    def rows_by_entity(self) -> dict[str, int]:
        """Data rows written per entity, over all its files."""
        totals: Counter[str] = Counter()
        for f in self.files:
            totals[f.entity] += f.rows
        return dict(totals)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "parameters": self.parameters,
            "files": [asdict(f) for f in self.files],
            "clean_rows": self.clean_rows,
            "defects": [asdict(d) for d in self.defects],
        }

    def write(self, out_dir: str | Path) -> Path:
        """Write ``_manifest.json`` into ``out_dir``; its path."""
        path = Path(out_dir) / MANIFEST_NAME
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read a manifest written by :meth:`write` (a folder means its ``_manifest.json``)."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            parameters=data["parameters"],
            files=[FileEntry(**f) for f in data["files"]],
            clean_rows=dict(data["clean_rows"]),
            defects=[Defect(**d) for d in data["defects"]],
        )


_MONTH = re.compile(r"\d{4}-\d{2}")


def send_order(path: Path) -> tuple[str, int, str]:
    """Sort key of a generated landing file in the order its sources would send it: by month,
    then reference data (providers, patients) before encounters (and FHIR Bundles, which carry
    their own), before what refers to encounters; a re-sent file after the one it corrects.
    A FHIR Condition (an encounter's diagnosis) goes with the encounters, just before them: the
    process stage joins it into the encounter it names, so it must be there first."""
    month = _MONTH.search(path.name)
    kind = f"{path.parent.name}/{path.name}".lower()
    if any(k in kind for k in ("provider", "practitioner", "patient")):
        rank = 0
    elif "encounter" in kind or "bundle" in kind or "condition" in kind:
        rank = 1
    else:
        rank = 2
    return (month.group(0) if month else "", rank + ("resend" in kind), str(path))


def landing_files(out_dir: Path) -> list[Path]:
    """The landing files ``generate`` wrote under ``out_dir`` (not its manifest nor the planted
    truth), in :func:`send_order`."""
    files = (p for p in Path(out_dir).rglob("*") if p.is_file() and p.name != MANIFEST_NAME and "_truth" not in p.relative_to(out_dir).parts)
    return sorted(files, key=send_order)
