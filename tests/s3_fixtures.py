"""A local S3 server (SeaweedFS) for the object-store tests, and configs rooted in its bucket.

Import the fixtures into a test module with ``from tests.s3_fixtures import s3_server, s3_config``
(and ``s3_spark``: the suite's session with the S3A settings of ``s3_config``, for the jvm engine).
Test credentials are put in the environment when this module is imported, i.e. at collection,
before the suite's SparkSession starts: Spark's Python workers inherit the driver's
environment at start-up, so the executors sign requests with the same credentials.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from carelake.config import Config, load_config
from carelake.spark.session import apply_object_store_conf
from carelake.storage.s3server import S3Server, start_seaweedfs, weed_binary

REPO = Path(__file__).resolve().parents[1]
BUCKET = "carelake"

os.environ["AWS_ACCESS_KEY_ID"] = "carelake-test"
os.environ["AWS_SECRET_ACCESS_KEY"] = "carelake-test-secret"
os.environ.pop("AWS_SESSION_TOKEN", None)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS on free loopback ports with bucket ``carelake``; skipped when ``weed`` is absent."""
    try:
        weed_binary()
    except Exception as exc:  # the message names where it looked
        pytest.skip(str(exc))
    with start_seaweedfs(tmp_path_factory.mktemp("s3"), bucket=BUCKET) as server:
        yield server


@pytest.fixture
def s3_config(s3_server: S3Server, base_config: Config) -> Config:
    """conf/s3.yaml pointed at the test server, rooted at a fresh prefix of the bucket."""
    config = load_config(REPO / "conf" / "s3.yaml", env={})
    return config.with_overrides(**{
        "lakehouse.root": f"s3://{BUCKET}/{uuid.uuid4().hex[:10]}",
        "storage.endpoint_url": s3_server.endpoint_url,
        "spark.master": base_config.spark_master,
    })


@pytest.fixture
def s3_spark(spark, s3_config: Config):
    """The suite's SparkSession with ``s3_config``'s S3A settings, so Spark reads ``s3a://`` tables."""
    apply_object_store_conf(spark, s3_config)
    return spark
