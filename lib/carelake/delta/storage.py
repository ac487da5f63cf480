"""Storage options for delta-rs and the data source's pyarrow filesystems.

The object-store settings live in :mod:`carelake.storage.objectstore`; the Delta layer uses
these names for them. Credentials are never passed through Spark options (they could show in
plans and logs): executors read them from their own environment.
"""

from carelake.storage.objectstore import arrow_filesystem as filesystem
from carelake.storage.objectstore import decode_options, encode_options, storage_options

__all__ = ["decode_options", "encode_options", "filesystem", "storage_options"]
