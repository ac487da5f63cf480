"""Serving the lakehouse: SQL over the Spark Thrift server, a local standalone cluster, notebooks.

Submodules are imported on use (``carelake.serve.thrift``, ``.catalog``, ``.cluster``,
``.notebook``) so a notebook importing the shim does not load the server code.
"""
