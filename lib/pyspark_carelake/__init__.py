"""Registers the ``carelake`` Spark data source (Delta tables through delta-rs).

Spark 4 imports every top-level module named ``pyspark_<name>`` and registers its
``DefaultSource``, so ``spark.read.format("carelake")`` works in every session.
"""

from carelake.delta.datasource import CarelakeDataSource as DefaultSource

__all__ = ["DefaultSource"]
