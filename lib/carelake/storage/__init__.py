"""Where each zone and table lives, on local disk or an object store."""

from carelake.storage.files import FileInfo, filesystem_for, list_files, read_head, sha256_of
from carelake.storage.objectstore import ObjectStoreError, check_store, s3_client, storage_options
from carelake.storage.paths import (
    ZONES,
    is_remote,
    join_uri,
    object_store_uri,
    spark_uri,
    table_uri,
    to_local_path,
)

__all__ = [
    "ZONES",
    "FileInfo",
    "ObjectStoreError",
    "check_store",
    "filesystem_for",
    "is_remote",
    "join_uri",
    "list_files",
    "object_store_uri",
    "read_head",
    "s3_client",
    "sha256_of",
    "spark_uri",
    "storage_options",
    "table_uri",
    "to_local_path",
]
