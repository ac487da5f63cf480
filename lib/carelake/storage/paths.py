"""Zone and table URIs: ``<lakehouse.root>/<zone>/<table>``."""

from __future__ import annotations

import os
from urllib.parse import urlparse

from carelake.config import Config

ZONES = ("landing", "raw", "processed", "curated")


def is_remote(uri: str) -> bool:
    """True for object-store URIs (``s3://`` and friends), False for local paths."""
    return urlparse(uri).scheme not in ("", "file")


def join_uri(base: str, *parts: str) -> str:
    """Join path parts onto a local path or URI with single slashes."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts if p)])


def to_local_path(uri: str) -> str:
    """An absolute local path for a local URI (``file://`` or plain path)."""
    parsed = urlparse(uri)
    path = parsed.path if parsed.scheme == "file" else uri
    return os.path.abspath(path)


def table_uri(config: Config, zone: str, table: str) -> str:
    """The URI of ``table`` in ``zone``; local roots are made absolute."""
    if zone not in ZONES:
        raise ValueError(f"unknown zone {zone!r}: expected one of {', '.join(ZONES)}")
    root = config.root if is_remote(config.root) else to_local_path(config.root)
    return join_uri(root, zone, table)
