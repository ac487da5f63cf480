"""Storage options and URIs for delta-rs and the data source's pyarrow filesystems.

The object-store settings live in :mod:`carelake.storage.objectstore`; the Delta layer uses
these names for them. Credentials are never passed through Spark options (they could show in
plans and logs): executors read them from their own environment. Table URIs arrive as
``s3a://`` (Spark's scheme, decided by :func:`carelake.storage.table_uri`); delta-rs and pyarrow
accept it, and :func:`rs_uri` names it the way they do (``s3://``).
"""

from carelake.storage.objectstore import arrow_filesystem as filesystem
from carelake.storage.objectstore import decode_options, encode_options, storage_options
from carelake.storage.paths import object_store_uri as rs_uri

__all__ = ["decode_options", "encode_options", "filesystem", "rs_uri", "storage_options"]
