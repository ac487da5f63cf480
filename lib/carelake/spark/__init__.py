"""The one SparkSession builder used by every job, test and notebook."""

from carelake.spark.session import JavaError, build_session, check_java

__all__ = ["JavaError", "build_session", "check_java"]
