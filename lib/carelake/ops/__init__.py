"""Operations on a running lakehouse: restore a table by version, roll a batch back, retry on conflict."""

from carelake.ops.recovery import ROLLED_BACK_KEY, restore_table, rollback_batch
from carelake.ops.retry import retry_on_conflict

__all__ = ["ROLLED_BACK_KEY", "restore_table", "retry_on_conflict", "rollback_batch"]
