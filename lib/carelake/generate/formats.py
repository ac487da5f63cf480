"""How generated records become bytes in a source system's own file layout.

Records are columnar batches keyed by canonical column name with typed Python values
(``date``, ``datetime``, amounts as integer cents, ``bool``, ``int``, ``str``, ``None``).
Rendering applies the source's column names, value codes, date/timestamp patterns and
amount unit, all taken from the configuration.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import PurePosixPath
from typing import Any

from carelake.config import SourceEntity, SourceSystem

# Spark datetime-pattern letters this generator can write, mapped to strftime directives.
_SPARK_TO_STRFTIME = {
    "yyyy": "%Y", "yy": "%y", "MMM": "%b", "MM": "%m", "dd": "%d",
    "HH": "%H", "mm": "%M", "ss": "%S", "EEE": "%a",
}
_PATTERN_TOKEN = re.compile(r"'[^']*'|([A-Za-z])\1*|[^A-Za-z']+")


class Raw(str):
    """A cell written exactly as given, bypassing formatting (used for malformed values)."""


def spark_to_strftime(pattern: str) -> str:
    """Translate a Spark datetime pattern (``MM/dd/yyyy``, ``yyyy-MM-dd'T'HH:mm:ss'Z'``) to strftime."""
    out: list[str] = []
    pos = 0
    while pos < len(pattern):
        match = _PATTERN_TOKEN.match(pattern, pos)
        if match is None:
            raise ValueError(f"date pattern {pattern!r}: unbalanced quote at position {pos}")
        token = match.group(0)
        if token.startswith("'"):
            out.append(token[1:-1].replace("%", "%%") or "'")
        elif token[0].isalpha():
            if token not in _SPARK_TO_STRFTIME:
                raise ValueError(
                    f"date pattern {pattern!r}: field {token!r} not supported; "
                    f"expected one of {', '.join(_SPARK_TO_STRFTIME)}"
                )
            out.append(_SPARK_TO_STRFTIME[token])
        else:
            out.append(token.replace("%", "%%"))
        pos = match.end()
    return "".join(out)


def file_name(entity: SourceEntity, tag: str) -> str:
    """The file path (relative to the landing folder) for ``entity`` and a tag like ``2024-01``.

    The glob's directory part is used as is; its file part's ``*`` becomes ``<stem>_<tag>``
    where the stem is the name of the folder the files sit in (``claims/*.csv`` ->
    ``claims/claims_2024-01.csv``).
    """
    glob = PurePosixPath(entity.path)
    if any(ch in part for part in glob.parent.parts for ch in "*?["):
        raise ValueError(f"source path {entity.path!r} of entity {entity.entity!r}: "
                         "expected wildcards only in the file name")
    name = glob.name
    if name.count("*") != 1 or any(ch in name for ch in "?["):
        raise ValueError(f"source path {entity.path!r} of entity {entity.entity!r}: "
                         "expected exactly one '*' in the file name, e.g. 'dir/*.csv'")
    stem = glob.parent.name or entity.entity
    filled = name.replace("*", f"{stem}_{tag}" if name.startswith("*") else tag)
    return str(glob.parent / filled)


class Renderer:
    """Renders one entity's batches in one source system's conventions."""

    def __init__(self, system: SourceSystem, entity: SourceEntity, types: dict[str, str]):
        missing = [c for c in entity.columns if c not in types]
        if missing:
            raise ValueError(
                f"sources.{system.name}.entities.{entity.entity}.columns: no generator for "
                f"canonical column(s) {', '.join(missing)}; expected some of {', '.join(types)}"
            )
        self.system = system
        self.entity = entity
        self.columns = list(entity.columns)
        self.header = [entity.columns[c] for c in self.columns]
        self.types = types
        self.json = system.format == "json"
        self.cents = system.amount_unit == "cents"
        self.date_fmt = spark_to_strftime(system.date_format)
        self.ts_fmt = spark_to_strftime(system.timestamp_format)
        # values maps source code -> canonical value; writing needs the reverse.
        self.codes = {c: {v: k for k, v in m.items()} for c, m in entity.values.items()}
        self._dates: dict[date, str] = {}

    def _date(self, value: date) -> str:
        text = self._dates.get(value)
        if text is None:
            text = self._dates[value] = value.strftime(self.date_fmt)
        return text

    def _amount(self, cents: int) -> Any:
        if self.cents:
            return cents if self.json else str(cents)
        sign = "-" if cents < 0 else ""
        whole, frac = divmod(abs(cents), 100)
        text = f"{sign}{whole}.{frac:02d}"
        return float(text) if self.json else text

    def _cell_writer(self, column: str) -> Callable[[Any], Any] | None:
        """The function turning one non-null typed value of ``column`` into a cell (None: as is)."""
        kind = self.types[column]
        codes = self.codes.get(column)
        if codes is not None:
            if kind == "bool":
                return lambda v: codes.get("true" if v else "false", "true" if v else "false")
            return lambda v: codes.get(str(v), str(v))
        if kind == "date":
            return self._date
        if kind == "ts":
            fmt = self.ts_fmt
            return lambda v: v.strftime(fmt)
        if kind == "amount":
            return self._amount
        if self.json:
            return None
        if kind == "bool":
            return lambda v: "true" if v else "false"
        return str if kind == "int" else None

    def render_column(self, column: str, values: Sequence[Any]) -> list[Any]:
        """One column of typed values as the cells written to the file."""
        null = None if self.json else ""
        write = self._cell_writer(column)
        if write is None:
            return [null if v is None else v for v in values]
        return [null if v is None else (str(v) if type(v) is Raw else write(v)) for v in values]

    def render(self, batch: dict[str, list[Any]]) -> list[list[Any]]:
        """A batch as rendered columns, in the configured column order."""
        return [self.render_column(c, batch[c]) for c in self.columns]

    def to_bytes(self, columns: list[list[Any]], truncate_last: bool = False) -> bytes:
        """File content for rendered columns; ``truncate_last`` cuts the final line in half."""
        buf = io.StringIO()
        rows = list(zip(*columns, strict=True))
        if self.json:
            names = self.header
            for row in rows:
                buf.write(json.dumps(dict(zip(names, row, strict=True)), ensure_ascii=False, separators=(",", ":")))
                buf.write("\n")
        else:
            writer = csv.writer(buf, delimiter=self.system.options.get("delimiter", ","),
                                lineterminator="\n")
            writer.writerow(self.header)
            writer.writerows(rows)
        text = buf.getvalue()
        if truncate_last and rows:
            body = text[:-1]
            cut = body.rfind("\n") + 1
            # a sender that died mid-write: half the last line, no newline
            text = body[: cut + (len(body) - cut) // 2]
        return text.encode(self.system.options.get("encoding", "UTF-8"))


def as_datetime(day: date, seconds: int) -> datetime:
    """Midnight of ``day`` plus ``seconds``."""
    return datetime(day.year, day.month, day.day, seconds // 3600, seconds // 60 % 60, seconds % 60)
