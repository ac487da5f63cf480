"""Typed ways to say which rows and how to merge, rendered once per engine.

Engines speak different SQL (delta-spark: Spark SQL with backticks; delta-rs: DataFusion with
double quotes) and callers used to quote predicates by hand for each. A :class:`Rows` names rows by
column values and renders itself as a Spark ``Column`` or as SQL text for either dialect; a
:class:`MergeSpec` says what a merge does. Both engines take only these, so they cannot drift.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column
from pyspark.sql import functions as F

from carelake.delta.types import format_partition_value

DIALECTS = ("spark", "datafusion")


def _identifier(name: str, dialect: str, alias: str | None = None) -> str:
    if dialect == "spark":
        quoted = "`" + name.replace("`", "``") + "`"
    else:
        quoted = '"' + name.replace('"', '""') + '"'
    return f"{alias}.{quoted}" if alias else quoted


def sql_literal(value: Any, dialect: str = "spark") -> str:
    """``value`` as a SQL literal of ``dialect`` (strings quoted, dates and timestamps typed)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, decimal.Decimal)):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    text = str(value)
    if dialect == "spark":
        text = text.replace("\\", "\\\\")  # Spark SQL reads a backslash as an escape; DataFusion does not
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Rows:
    """Rows chosen by column values: any of ``terms``, each term all of ``column IN values``.

    ``Rows.where(batch_id=["b1"], entity=["claims"])`` is one term; ``Rows.keys(["npi"], rows)``
    one term per key tuple. A None among the values also matches NULL.
    """

    terms: tuple[tuple[tuple[str, tuple[Any, ...]], ...], ...]

    def __post_init__(self) -> None:
        if not self.terms or any(not term for term in self.terms):
            raise ValueError(f"Rows needs at least one term of at least one column, found {self.terms!r}")
        for term in self.terms:
            for column, values in term:
                if not values:
                    raise ValueError(f"Rows: column {column!r} needs at least one value, found none")

    @classmethod
    def where(cls, values: Mapping[str, Sequence[Any]] | None = None, **columns: Sequence[Any]) -> Rows:
        """One term: every column in ``values`` / ``columns`` takes one of its values."""
        merged = {**(values or {}), **columns}
        return cls((tuple((c, tuple(v)) for c, v in merged.items()),))

    @classmethod
    def keys(cls, key_columns: Sequence[str], rows: Iterable[Any]) -> Rows:
        """One term per row (a Spark Row, dict or tuple in ``key_columns`` order)."""
        terms = []
        for row in rows:
            if isinstance(row, Mapping) or hasattr(row, "asDict"):
                values = [row[c] for c in key_columns]
            else:
                values = list(row)
            terms.append(tuple((c, (v,)) for c, v in zip(key_columns, values, strict=True)))
        return cls(tuple(terms))

    @property
    def columns(self) -> list[str]:
        """The columns the predicate reads, in first-use order."""
        seen: dict[str, None] = {}
        for term in self.terms:
            for column, _ in term:
                seen.setdefault(column, None)
        return list(seen)

    def matches(self, partition_values: Mapping[str, str | None]) -> bool:
        """True when a file with ``partition_values`` (log strings) may hold selected rows; only
        meaningful when every column of the predicate is a partition column."""
        return any(
            all(partition_values.get(c) in {format_partition_value(v) for v in values} for c, values in term)
            for term in self.terms
        )

    def column(self, alias: str | None = None) -> Column:
        """The predicate as a Spark Column (``alias.column`` when ``alias`` is given).

        Built from its SQL text: one call into the JVM whatever the number of values, where
        ``Column.isin`` makes one per value (80,000 batch ids: 25 s against 2 s)."""
        return F.expr(self.sql("spark", alias))

    def sql(self, dialect: str = "spark", alias: str | None = None) -> str:
        """The predicate as SQL text of ``dialect`` (``spark`` or ``datafusion``)."""
        if dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {DIALECTS}, found {dialect!r}")

        def one(column: str, values: tuple[Any, ...]) -> str:
            ref = _identifier(column, dialect, alias)
            present = [v for v in values if v is not None]
            parts = [f"{ref} IN ({', '.join(sql_literal(v, dialect) for v in present)})"] if present else []
            if len(present) < len(values):
                parts.append(f"{ref} IS NULL")
            return "(" + " OR ".join(parts) + ")"

        terms = ["(" + " AND ".join(one(c, v) for c, v in term) + ")" for term in self.terms]
        return " OR ".join(terms)


@dataclass(frozen=True)
class MergeSpec:
    """What a merge of a source into a target does, matched on ``keys`` (aliases s and t).

    - ``update``: matched target rows take the source row's values (all columns);
      ``update_if_newer`` (a column) only when the source's value is >= the target's or either is
      null, so a late, older record does not overwrite a newer one;
    - ``insert``: unmatched source rows are inserted;
    - ``delete_unmatched``: target rows no source row matches are deleted — all of them (True)
      or only those of the given :class:`Rows` (over target columns), e.g. the keys a batch
      recomputed.
    """

    keys: tuple[str, ...]
    update: bool = True
    insert: bool = True
    update_if_newer: str | None = None
    delete_unmatched: Rows | bool = False

    def __post_init__(self) -> None:
        if isinstance(self.keys, str) or not self.keys:
            raise ValueError(f"MergeSpec.keys must be a non-empty sequence of column names, found {self.keys!r}")
        object.__setattr__(self, "keys", tuple(self.keys))

    def on_sql(self, dialect: str = "spark") -> str:
        """The match condition ``t.k = s.k AND ...``."""
        return " AND ".join(
            f"{_identifier(k, dialect, 't')} = {_identifier(k, dialect, 's')}" for k in self.keys
        )

    def update_condition_sql(self, dialect: str = "spark") -> str | None:
        """The condition a matched row must meet to be updated, or None (always)."""
        if not self.update_if_newer:
            return None
        s, t = (_identifier(self.update_if_newer, dialect, a) for a in ("s", "t"))
        return f"coalesce({s} >= {t}, true)"

    def update_condition_column(self) -> Column | None:
        """:meth:`update_condition_sql` as a Spark Column over aliases s and t."""
        if not self.update_if_newer:
            return None
        c = self.update_if_newer
        return F.coalesce(F.col(f"s.`{c}`") >= F.col(f"t.`{c}`"), F.lit(True))

    def delete_condition_sql(self, dialect: str = "spark") -> str | None:
        """The condition on unmatched target rows to delete (None: all of them)."""
        return self.delete_unmatched.sql(dialect, alias="t") if isinstance(self.delete_unmatched, Rows) else None
