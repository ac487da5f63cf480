"""Zone and table URIs: ``<lakehouse.root>/<zone>/<table>``.

A table on an object store is addressed as ``s3a://bucket/...`` whichever scheme the root is
written with: Spark reads and writes it through Hadoop's S3A connector (hadoop-aws), which owns
that scheme, while delta-rs, pyarrow and boto3 accept both and name it ``s3://``
(:func:`object_store_uri`). Landing files keep the root's scheme: only pyarrow reads them.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from carelake.config import Config

ZONES = ("landing", "raw", "processed", "curated")
SPARK_S3_SCHEME = "s3a"
OBJECT_STORE_SCHEME = "s3"


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


def _with_scheme(uri: str, scheme: str) -> str:
    parsed = urlparse(uri)
    if parsed.scheme not in (SPARK_S3_SCHEME, OBJECT_STORE_SCHEME):
        return uri
    return f"{scheme}://{uri.split('://', 1)[1]}"


def spark_uri(uri: str) -> str:
    """``s3://b/k`` or ``s3a://b/k`` as Spark's S3A connector names it (``s3a://b/k``); other URIs as they are."""
    return _with_scheme(uri, SPARK_S3_SCHEME)


def object_store_uri(uri: str) -> str:
    """``s3a://b/k`` or ``s3://b/k`` as delta-rs, pyarrow and boto3 name it (``s3://b/k``); other URIs as they are."""
    return _with_scheme(uri, OBJECT_STORE_SCHEME)


def table_uri(config: Config, zone: str, table: str) -> str:
    """The URI of ``table`` in ``zone``: local roots made absolute, object-store ones as ``s3a://``.

    This is where a table's scheme is decided: both engines and the SQL catalog take it as it is
    (Spark needs ``s3a://``; delta-rs accepts it and :func:`object_store_uri` maps it back).
    """
    if zone not in ZONES:
        raise ValueError(f"unknown zone {zone!r}: expected one of {', '.join(ZONES)}")
    root = spark_uri(config.root) if is_remote(config.root) else to_local_path(config.root)
    return join_uri(root, zone, table)
