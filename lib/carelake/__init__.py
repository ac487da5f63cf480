"""carelake: a healthcare-analytics lakehouse on Apache Spark and Delta Lake."""

__version__ = "0.1.0"
