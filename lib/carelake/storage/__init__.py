"""Where each zone and table lives, on local disk or an object store."""

from carelake.storage.paths import ZONES, is_remote, join_uri, table_uri, to_local_path

__all__ = ["ZONES", "is_remote", "join_uri", "table_uri", "to_local_path"]
