"""How source column names become raw-zone column names.

Delta and Spark match column names case-insensitively and forbid characters such as spaces
and commas, so ``ZIP`` (one hospital) and ``zip`` (another) cannot be two columns, and a header
like ``Patient Name`` cannot be one. Raw columns are therefore the source names lower-cased with
every run of other characters turned into ``_``; conformance looks source columns up by the
same rule.
"""

from __future__ import annotations

import re

_NON_WORD = re.compile(r"[^a-z0-9]+")


def raw_column_name(source_column: str) -> str:
    """``"NPI_NUM"`` -> ``"npi_num"``, ``"firstName"`` -> ``"firstname"``, ``"Zip Code"`` -> ``"zip_code"``."""
    name = _NON_WORD.sub("_", source_column.strip().lower()).strip("_")
    if not name:
        raise ValueError(f"source column {source_column!r} has no letters or digits to name a raw column")
    return name if not name[0].isdigit() else f"c_{name}"
