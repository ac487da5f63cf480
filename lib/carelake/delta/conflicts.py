"""Delta's optimistic-concurrency rules for the ``rs`` engine's commits.

delta-rs checks a commit built from explicit actions only for concurrent deletes and metadata
changes: it knows nothing of what the writer read. The ``rs`` engine therefore checks the
commits that won since its read version itself, with the rules delta-spark 4.4 applies (measured
by ``tests/test_resilience_concurrency.py`` on both engines), and then commits with no automatic
retry at exactly the next version, so no commit slips in between the check and the write:

- a winner that changed the table's metadata or protocol conflicts;
- a winner that removed a file this transaction read (or removes) conflicts;
- a winner's data files added where this transaction read conflict — blind appends included:
  delta-spark 4.4 raises ConcurrentAppendException for an append into the partitions a
  replaceWhere replaces, and into any part of a table a MERGE reads, at its default isolation
  level as under ``Serializable``;
- a blind append reads nothing, so it conflicts only with metadata changes.

What a transaction read is a :class:`ReadScope`: nothing, the whole table, or some partitions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from carelake.delta.errors import DeltaConflictError
from carelake.delta.storage import filesystem


@dataclass(frozen=True)
class ReadScope:
    """What a transaction read: ``whole`` table, these ``partitions`` (partition-value dicts as
    the log writes them), and these ``files`` (log paths); nothing at all for a blind append."""

    whole: bool = False
    partitions: tuple[tuple[tuple[str, str | None], ...], ...] = ()
    files: frozenset[str] = frozenset()

    @classmethod
    def of_partitions(cls, partitions: list[dict[str, str | None]], files: list[str]) -> ReadScope:
        """A scope of some partitions and the files read in them."""
        return cls(False, tuple(tuple(sorted(p.items())) for p in partitions), frozenset(files))

    @property
    def blind(self) -> bool:
        """True when nothing was read (a blind append)."""
        return not self.whole and not self.partitions and not self.files

    def covers(self, partition_values: dict[str, str | None]) -> bool:
        """True when a file with ``partition_values`` lies where this transaction read."""
        if self.whole:
            return True
        return any(all(partition_values.get(c) == v for c, v in p) for p in self.partitions)

    def to_json(self) -> str:
        """The scope as JSON (a data source option)."""
        return json.dumps({"whole": self.whole, "partitions": [dict(p) for p in self.partitions], "files": sorted(self.files)})

    @classmethod
    def from_json(cls, text: str | None) -> ReadScope:
        """A scope from :meth:`to_json` (blind when ``text`` is empty)."""
        if not text:
            return cls()
        data = json.loads(text)
        scope = cls.of_partitions(data.get("partitions", []), data.get("files", []))
        return cls(bool(data.get("whole")), scope.partitions, scope.files)


def commit_actions(uri: str, options: dict[str, str], version: int) -> list[dict[str, Any]]:
    """The actions of commit ``version`` of the table at ``uri`` (one dict per log line)."""
    fs, base = filesystem(uri, options)
    with fs.open_input_stream(f"{base}/_delta_log/{version:020d}.json") as stream:
        text = stream.read().decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def check_winners(
    uri: str,
    options: dict[str, str],
    read_version: int,
    latest_version: int,
    scope: ReadScope,
) -> None:
    """Raise :class:`DeltaConflictError` when a commit in (``read_version``, ``latest_version``]
    conflicts with a transaction that read ``scope`` at ``read_version``."""
    for version in range(read_version + 1, latest_version + 1):
        actions = commit_actions(uri, options, version)
        info = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
        operation = info.get("operation", "?")
        if any("metaData" in a or "protocol" in a for a in actions):
            raise DeltaConflictError(uri, f"MetadataChangedException: version {version} ({operation}) changed the table's metadata")
        if scope.blind:
            continue
        for action in actions:
            removed = action.get("remove")
            if removed and (scope.whole or removed["path"] in scope.files):
                raise DeltaConflictError(
                    uri, f"ConcurrentDeleteReadException: version {version} ({operation}) removed {removed['path']}, which this transaction read"
                )
        for action in actions:
            added = action.get("add")
            if added and added.get("dataChange", True) and scope.covers(added.get("partitionValues") or {}):
                raise DeltaConflictError(
                    uri,
                    f"ConcurrentAppendException: version {version} ({operation}) added data where this "
                    "transaction read",
                )
