"""Operations on a running lakehouse: restore a table by version, roll a batch back, retry on
conflict, the writer lock. Import from the modules (``carelake.ops.recovery``, ``.retry``,
``.lock``): recovery pulls in the stages, which a lock or retry user does not need."""
