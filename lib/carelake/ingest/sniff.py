"""Decide from a file's first bytes whether it can be ingested, and read its header.

Cheap checks in the driver, before Spark reads anything: an empty or binary file, an
undecodable one, a header that matches none of the configured source columns, or a file with
a header and no data is rejected whole with the reason; the rest of the batch goes on.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from carelake.config import SourceEntity, SourceSystem
from carelake.sources import raw_column_name
from carelake.sources.fhir import RAW_COLUMNS


@dataclass(frozen=True)
class SniffResult:
    """``columns`` is the file's header (CSV) or the union of keys seen (JSON); ``reason`` says why not."""

    columns: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def accepted(self) -> bool:
        return self.reason is None


def _decode(head: bytes, encoding: str) -> str | None:
    try:
        return head.decode(encoding)
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the sniff window is not an encoding error.
        if exc.start >= len(head) - 4:
            return head[: exc.start].decode(encoding)
        return None


def sniff_file(head: bytes, size: int, system: SourceSystem, entity: SourceEntity) -> SniffResult:
    """Check the first bytes of a file of ``system``/``entity``; ``size`` is the whole file's."""
    if size == 0 or not head.strip():
        return SniffResult(reason="empty file: no header and no rows")
    if b"\x00" in head:
        return SniffResult(reason="binary content: NUL bytes found, not a text file")
    encoding = system.options.get("encoding", "UTF-8")
    text = _decode(head.removeprefix(b"\xef\xbb\xbf"), encoding)
    if text is None:
        return SniffResult(reason=f"not decodable as {encoding}")
    if system.format == "fhir":
        return _sniff_fhir(text, entity)
    expected = set(entity.columns.values())
    if system.format == "json":
        return _sniff_json(text, expected, truncated=len(head) < size)
    return _sniff_csv(text, system.options.get("delimiter", ","), expected)


def _sniff_csv(text: str, delimiter: str, expected: set[str]) -> SniffResult:
    lines = text.splitlines()
    header = next(csv.reader(io.StringIO(lines[0]), delimiter=delimiter))
    header = [h.strip() for h in header]
    found = expected.intersection(header)
    if not found:
        return SniffResult(
            reason=f"header matches no configured column (delimiter {delimiter!r}): "
            f"expected some of {sorted(expected)[:6]}..., found {header[:6]}"
        )
    if len({raw_column_name(h) for h in header if h}) != len(header):
        return SniffResult(reason=f"header has blank or repeated column names (case-insensitive): {header}")
    if not any(line.strip() for line in lines[1:]):
        return SniffResult(reason="header only: no data rows")
    return SniffResult(columns=tuple(header))


def _sniff_json(text: str, expected: set[str], truncated: bool) -> SniffResult:
    lines = [line for line in text.splitlines() if line.strip()]
    if truncated and len(lines) > 1:
        lines = lines[:-1]  # the sniff window may cut the last line
    keys: dict[str, None] = {}
    parsed = 0
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a bad line becomes a malformed raw row, not a rejected file
        if isinstance(record, dict):
            keys.update(dict.fromkeys(record))
            parsed += 1
    if parsed == 0:
        return SniffResult(reason="no JSON object found in the first lines: not JSON lines")
    if not expected.intersection(keys):
        return SniffResult(
            reason=f"JSON keys match no configured column: expected some of {sorted(expected)[:6]}..., "
            f"found {list(keys)[:6]}"
        )
    return SniffResult(columns=tuple(dict.fromkeys([*keys, *sorted(expected)])))


def _sniff_fhir(text: str, entity: SourceEntity) -> SniffResult:
    """A FHIR file (NDJSON or a Bundle) starts with a JSON object naming its resourceType."""
    start = text.lstrip()[:1]
    if start != "{" or '"resourceType"' not in text:
        return SniffResult(reason=f"not FHIR JSON: expected a resource or Bundle object with a resourceType, found {text.lstrip()[:40]!r}")
    return SniffResult(columns=(*entity.paths, *RAW_COLUMNS))
