"""Land files in the landing zone (``carelake land --from DIR``), and show what a root holds.

On an object store each file is one boto3 upload (multipart above ``MULTIPART_BYTES``) with a
SHA-256 checksum the server verifies and the file's whole SHA-256 kept as object metadata;
a file whose landed object has the same size and SHA-256 is skipped. S3 makes an object
visible only when its PUT or multipart upload completes, so an interrupted upload leaves
nothing for ingest to list. On local disk a file is copied beside its target and renamed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from carelake.config import Config
from carelake.storage.objectstore import ObjectStoreError, check_store, s3_client, split_s3_uri
from carelake.storage.paths import ZONES, is_remote, join_uri, to_local_path

log = logging.getLogger(__name__)

MULTIPART_BYTES = 64 * 1024 * 1024
SHA256_METADATA = "sha256"
_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class LandedObject:
    """One file landed: its URI, size, SHA-256 and whether it was uploaded or already there."""

    uri: str
    size: int
    sha256: str
    uploaded: bool


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _local_files(from_dir: Path) -> list[Path]:
    if not from_dir.is_dir():
        raise FileNotFoundError(f"carelake land: --from {from_dir} is not a folder")
    # Hidden files are editor and OS leftovers, never deliveries.
    return sorted(
        p for p in from_dir.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(from_dir).parts)
    )


def land_files(
    config: Config, from_dir: str | Path, progress: Callable[[str], None] | None = None,
    multipart_bytes: int = MULTIPART_BYTES,
) -> list[LandedObject]:
    """Copy every file under ``from_dir`` to ``config.landing``, keeping relative paths.

    Returns one :class:`LandedObject` per file; ``progress`` (e.g. ``print``) gets one line each.
    """
    source = Path(from_dir)
    files = _local_files(source)
    say = progress or log.info
    landed = []
    if is_remote(config.landing):
        check_store(config)
        land_one = _uploader(config, multipart_bytes)
    else:
        land_one = _copy_local
    for number, path in enumerate(files, 1):
        relative = path.relative_to(source).as_posix()
        result = land_one(path, join_uri(config.landing, relative), _sha256(path))
        landed.append(result)
        verb = "landed" if result.uploaded else "unchanged"
        say(f"[{number}/{len(files)}] {verb} {relative} ({result.size:,} bytes)")
    return landed


def _uploader(config: Config, multipart_bytes: int) -> Callable[[Path, str, str], LandedObject]:
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import ClientError

    client = s3_client(config)
    transfer = TransferConfig(multipart_threshold=multipart_bytes, multipart_chunksize=min(multipart_bytes, 64 * 1024 * 1024))

    def upload(path: Path, uri: str, digest: str) -> LandedObject:
        bucket, key = split_s3_uri(uri)
        size = path.stat().st_size
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in ("404", "NoSuchKey"):
                raise
            head = None
        if head and head["ContentLength"] == size and head.get("Metadata", {}).get(SHA256_METADATA) == digest:
            return LandedObject(uri, size, digest, uploaded=False)
        client.upload_file(
            str(path), bucket, key, Config=transfer,
            ExtraArgs={"Metadata": {SHA256_METADATA: digest}, "ChecksumAlgorithm": "SHA256"},
        )
        after = client.head_object(Bucket=bucket, Key=key)
        if after["ContentLength"] != size or after.get("Metadata", {}).get(SHA256_METADATA) != digest:
            raise ObjectStoreError(
                f"landing {uri}: expected {size} bytes with sha256 {digest[:12]}…, found "
                f"{after['ContentLength']} bytes with sha256 {after.get('Metadata', {}).get(SHA256_METADATA)}"
            )
        return LandedObject(uri, size, digest, uploaded=True)

    return upload


def _copy_local(path: Path, uri: str, digest: str) -> LandedObject:
    target = Path(to_local_path(uri))
    size = path.stat().st_size
    if target.is_file() and target.stat().st_size == size and _sha256(target) == digest:
        return LandedObject(str(target), size, digest, uploaded=False)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Ingest must never list a half-copied file: copy under a hidden name, then rename.
    partial = target.with_name(f".{target.name}.partial")
    shutil.copyfile(path, partial)
    os.replace(partial, target)
    return LandedObject(str(target), size, digest, uploaded=True)


def layout(config: Config) -> dict[str, tuple[int, int]]:
    """Objects under the lakehouse root per ``zone/table`` (landing: per system), else per top folder: (count, bytes)."""
    groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    if is_remote(config.root):
        bucket, prefix = split_s3_uri(config.root)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        pages = s3_client(config).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        entries = ((obj["Key"][len(prefix):], obj["Size"]) for page in pages for obj in page.get("Contents", []))
    else:
        base = Path(to_local_path(config.root))
        entries = ((p.relative_to(base).as_posix(), p.stat().st_size) for p in base.rglob("*") if p.is_file())
    for relative, size in entries:
        if not relative or relative.endswith("/"):
            continue  # folder markers some writers (pyarrow's create_dir) leave
        parts = relative.split("/")
        group = "/".join(parts[:2]) if parts[0] in ZONES and len(parts) > 2 else parts[0]
        groups[group][0] += 1
        groups[group][1] += size
    return {name: (count, size) for name, (count, size) in sorted(groups.items())}


def print_layout(config: Config, out: Callable[[str], None] = print) -> None:
    """Print :func:`layout` as one line per group under a heading naming the root."""
    groups = layout(config)
    out(f"{config.root}: {sum(c for c, _ in groups.values())} objects")
    for name, (count, size) in groups.items():
        out(f"  {name:<40} {count:>6} objects {size:>14,} bytes")
