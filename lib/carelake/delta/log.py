"""Delta log access through delta-rs: open a table, list its files, commit written files.

Never materialise data through delta-rs here (``to_pyarrow_table`` / ``to_pandas`` abort the
process at exit on these machines): data files are read with pyarrow from the file list.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Field
from deltalake.exceptions import CommitFailedError
from deltalake.exceptions import TableNotFoundError as RsTableNotFoundError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions
from pyspark.sql.types import StructType

from carelake.delta.conflicts import (
    ReadScope,
    check_winners,
)
from carelake.delta.errors import DeltaConflictError, SchemaMismatchError, TableNotFoundError
from carelake.delta.faults import hold_point
from carelake.delta.files import DataFile
from carelake.delta.types import (
    delta_schema_from_spark,
    format_partition_value,
    nullable,
    spark_schema_from_delta,
)

WRITE_ID_KEY = "carelake.write_id"
METRICS_KEY = "carelake.metrics"


def table_exists(uri: str, options: dict[str, str]) -> bool:
    """True when a Delta log exists at ``uri``."""
    return DeltaTable.is_deltatable(uri, storage_options=options or None)


def open_table(uri: str, options: dict[str, str], version: int | None = None, without_files: bool = False) -> DeltaTable:
    """The delta-rs table at ``uri`` (at ``version``), or :class:`TableNotFoundError`.

    ``without_files``: skip loading the list of live files (enough for versions and history)."""
    try:
        return DeltaTable(uri, version=version, storage_options=options or None, without_files=without_files)
    except RsTableNotFoundError as exc:
        raise TableNotFoundError(uri, str(exc).splitlines()[0]) from exc


def add_actions(table: DeltaTable) -> list[dict[str, Any]]:
    """The table's live files: path, size, partition_values, num_records, stats columns."""
    partition_columns = table.metadata().partition_columns
    rows = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    files = []
    for row in rows:
        files.append(
            {
                "path": row["path"],
                "size": row["size_bytes"],
                "partition_values": {
                    c: format_partition_value(row.get(f"partition.{c}")) for c in partition_columns
                },
                "num_records": row.get("num_records"),
                "modification_time": row.get("modification_time"),
                "min": {k[4:]: v for k, v in row.items() if k.startswith("min.")},
                "max": {k[4:]: v for k, v in row.items() if k.startswith("max.")},
            }
        )
    return files


def file_uri(table_uri: str, path: str) -> str:
    """Where a file listed in the log lives: absolute paths stay, relative ones join the table."""
    # The log stores URI-encoded paths (delta-rs encodes on commit, lists them as stored).
    decoded = unquote(path)
    if "://" in decoded or decoded.startswith("/"):
        return decoded
    return f"{table_uri.rstrip('/')}/{decoded}"


@dataclass
class WriteRequest:
    """What a data source write asks the log to commit (everything but the files)."""

    uri: str
    mode: str
    schema: StructType
    partition_by: list[str] | None
    replace_where: dict[str, list[str | None]] | None
    schema_mode: str | None
    commit_metadata: dict[str, str]
    write_id: str
    read_version: int | None
    storage_options: dict[str, str]
    remove_files: list[dict[str, Any]] = field(default_factory=list)
    # What the writer read besides the files it replaces (merge, delete); None: derived from mode.
    read_scope: ReadScope | None = None

    def scope(self, table: DeltaTable) -> ReadScope:
        """What this write read at its read version: an overwrite reads what it replaces, a
        rewrite what its caller says, a plain append nothing."""
        if self.read_scope is not None:
            return self.read_scope
        if self.mode == "overwrite" and self.replace_where:
            files = [f for f in add_actions(table) if _replaced(f, self.replace_where)]
            combos = _partition_combinations(self.replace_where)
            return ReadScope.of_partitions(combos, [f["path"] for f in files])
        if self.mode == "overwrite":
            return ReadScope(whole=True, files=frozenset(f["path"] for f in add_actions(table)))
        return ReadScope(files=frozenset(f["path"] for f in self.remove_files))


def commit_write(request: WriteRequest, files: list[DataFile]) -> None:
    """Commit ``files`` as ONE Delta transaction: create, append, overwrite or replace partitions.

    ``request.remove_files`` (log entries: path, size, partition_values) are removed in the
    same transaction: a rewrite of those files. The files an overwrite replaces are the ones of
    its read version, so a concurrent blind append survives it as Delta's own engine does.
    Commits that won since the read version are checked as Delta checks them
    (:mod:`carelake.delta.conflicts`); a conflicting one raises :class:`DeltaConflictError`.
    """
    adds = [
        AddAction(f.path, f.size, f.partition_values, f.modification_time, True, f.stats)
        for f in files
    ]
    rows = sum(f.num_records for f in files)
    schema = nullable(request.schema)
    hold_point("before-commit", request.uri)
    try:
        if not table_exists(request.uri, request.storage_options):
            metadata = _metadata(request, len(adds), 0, rows, blind=True)
            create_table_with_add_actions(
                request.uri,
                delta_schema_from_spark(schema),
                adds,
                mode="error",
                partition_by=request.partition_by or None,
                storage_options=request.storage_options or None,
                commit_properties=CommitProperties(custom_metadata=metadata),
            )
            hold_point("after-commit", request.uri)
            return
        read = open_table(request.uri, request.storage_options, request.read_version)
        _check_partitioning(request, read)
        scope = request.scope(read)
        removes = _removes(request, read)
        base = read.version()
        if _add_new_columns(request, read, schema):
            # The schema change is this writer's own commit: check the winners before it, then
            # go on from it.
            schema_version = open_table(request.uri, request.storage_options).version()
            check_winners(request.uri, request.storage_options, base, schema_version - 1, scope)
            base = schema_version
        metadata = _metadata(request, len(adds), len(removes), rows, blind=scope.blind and not removes)
        _commit_checked(request, base, scope, [*adds, *removes], metadata)
    except CommitFailedError as exc:
        raise DeltaConflictError(request.uri, str(exc).splitlines()[0]) from exc
    hold_point("after-commit", request.uri)


# A conflict-free commit that lost the race for its version re-checks the new winners and
# tries the next version, this many times.
MAX_COMMIT_ATTEMPTS = 50


def _commit_checked(
    request: WriteRequest, base: int, scope: ReadScope, actions: list, metadata: dict[str, Any]
) -> None:
    """Check the winners since ``base``, then commit ``actions`` at exactly the next version;
    when another writer took it, check the new winner(s) and try again."""
    checked = base
    for _ in range(MAX_COMMIT_ATTEMPTS):
        latest = open_table(request.uri, request.storage_options)
        check_winners(request.uri, request.storage_options, checked, latest.version(), scope)
        checked = latest.version()
        try:
            latest.create_write_transaction(
                actions,
                "append",
                latest.schema(),
                list(latest.metadata().partition_columns),
                commit_properties=CommitProperties(custom_metadata=metadata, max_commit_retries=0),
            )
            return
        except CommitFailedError:
            if open_table(request.uri, request.storage_options).version() == checked:
                raise
    raise DeltaConflictError(request.uri, f"no free version after {MAX_COMMIT_ATTEMPTS} attempts")


def _removes(request: WriteRequest, read: DeltaTable) -> list[RemoveAction]:
    """Remove actions for the files this write replaces, as of its read version."""
    if request.mode == "overwrite":
        entries = [f for f in add_actions(read) if not request.replace_where or _replaced(f, request.replace_where)]
    else:
        entries = request.remove_files
    now = int(time.time() * 1000)
    return [RemoveAction(unquote(f["path"]), True, now, f.get("size"), f.get("partition_values")) for f in entries]


def _replaced(file: dict[str, Any], replace_where: dict[str, list[str | None]]) -> bool:
    return all(file["partition_values"].get(c) in set(v) for c, v in replace_where.items())


def _partition_combinations(replace_where: dict[str, list[str | None]]) -> list[dict[str, str | None]]:
    combos: list[dict[str, str | None]] = [{}]
    for column, values in replace_where.items():
        combos = [{**c, column: v} for c in combos for v in values]
    return combos


def _metadata(request: WriteRequest, added: int, removed: int, rows: int, blind: bool) -> dict[str, Any]:
    metrics = {"files_added": added, "files_removed": removed, "rows_inserted": rows}
    return {
        **request.commit_metadata,
        WRITE_ID_KEY: request.write_id,
        METRICS_KEY: json.dumps(metrics),
        # Read by Delta's conflict checkers (ours and delta-spark's): a blind append reads nothing.
        "isBlindAppend": blind,
    }


def _check_partitioning(request: WriteRequest, table: DeltaTable) -> list[str]:
    existing = list(table.metadata().partition_columns)
    if request.partition_by is not None and list(request.partition_by) != existing:
        raise SchemaMismatchError(
            f"partition_by {request.partition_by} does not match the partitioning {existing} "
            f"of the existing table {request.uri}"
        )
    return existing


def _add_new_columns(request: WriteRequest, table: DeltaTable, incoming: StructType) -> bool:
    """Check ``incoming`` fits the table; add its new columns when ``schema_mode`` is merge.

    True when columns were added (a commit was made)."""
    current = spark_schema_from_delta(table.schema())
    known = {f.name: f for f in current.fields}
    new_fields = [f for f in incoming.fields if f.name not in known]
    changed = [
        f"{f.name}: table {known[f.name].dataType.simpleString()}, incoming {f.dataType.simpleString()}"
        for f in incoming.fields
        if f.name in known and known[f.name].dataType != f.dataType
    ]
    if changed:
        raise SchemaMismatchError(f"column types differ from the table {request.uri}: {'; '.join(changed)}")
    if new_fields and request.schema_mode != "merge":
        raise SchemaMismatchError(
            f"columns {[f.name for f in new_fields]} are not in the table {request.uri} "
            f"(columns {list(known)}); write with schema_mode='merge' to add them"
        )
    if new_fields:
        delta_fields = delta_schema_from_spark(StructType(new_fields)).fields
        table.alter.add_columns(
            [Field(f.name, f.type, nullable=True) for f in delta_fields],
            commit_properties=CommitProperties(custom_metadata={**request.commit_metadata}),
        )
    return bool(new_fields)
