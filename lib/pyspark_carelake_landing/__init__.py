"""Registers the ``carelake_landing`` Spark data source (landing CSV / JSON-lines files as strings).

Spark 4 imports every top-level module named ``pyspark_<name>`` and registers its
``DefaultSource``, so ``spark.read.format("carelake_landing")`` works in every session.
"""

from carelake.ingest.read import LandingFileSource as DefaultSource

__all__ = ["DefaultSource"]
