"""File listing, hashing and sniffing on local disk or an object store, through pyarrow.fs."""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass

from pyarrow import fs as pafs

from carelake.config import Config
from carelake.storage.objectstore import arrow_filesystem, storage_options
from carelake.storage.paths import is_remote, join_uri

_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class FileInfo:
    """A file found under a folder: its URI, path relative to that folder, and size."""

    uri: str
    relative_path: str
    size: int


def filesystem_for(uri: str, config: Config) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem serving ``uri`` (endpoint and region from ``config``) and the path inside it."""
    return arrow_filesystem(uri, storage_options(config))


def list_files(base_uri: str, pattern: str, config: Config) -> list[FileInfo]:
    """Files under ``base_uri`` whose relative path matches the glob ``pattern``, sorted by path.

    A missing base folder yields no files rather than an error: nothing has landed yet.
    """
    filesystem, base = filesystem_for(base_uri, config)
    if not is_remote(base_uri):
        base_uri = base  # absolute, as Spark reports the files it reads
    selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    found = []
    for info in filesystem.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        relative = info.path[len(base) :].lstrip("/")
        if fnmatch.fnmatchcase(relative, pattern):
            found.append(FileInfo(join_uri(base_uri, relative), relative, info.size or 0))
    return sorted(found, key=lambda f: f.relative_path)


def sha256_of(uri: str, config: Config) -> str:
    """Hex SHA-256 of a file's bytes, streamed in chunks (never the whole file in memory)."""
    filesystem, path = filesystem_for(uri, config)
    digest = hashlib.sha256()
    with filesystem.open_input_stream(path) as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_head(uri: str, config: Config, max_bytes: int = 64 * 1024) -> bytes:
    """The first ``max_bytes`` bytes of a file, for sniffing its header and content."""
    filesystem, path = filesystem_for(uri, config)
    with filesystem.open_input_stream(path) as stream:
        return stream.read(max_bytes)
