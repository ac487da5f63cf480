"""Zones on an S3 server (local SeaweedFS): options, errors, Delta tables on both engines, landing,
ingest, and the race between two S3A writers of one Delta commit file that the writer lock prevents."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from carelake.config import Config
from carelake.delta import open_tables
from carelake.delta.spec import MergeSpec
from carelake.ingest import INGEST_LOG_TABLE, run_ingest
from carelake.pipeline import run_pipeline
from carelake.spark.session import object_store_conf
from carelake.storage import (
    ObjectStoreError,
    check_store,
    list_files,
    object_store_uri,
    s3_client,
    spark_uri,
    storage_options,
    table_uri,
)
from carelake.storage.land import land_files, layout
from carelake.storage.objectstore import encode_options, s3a_options
from carelake.storage.s3server import S3Server, free_ports
from tests import s3_fixtures
from tests.delta_engines import ENGINES, engine_tables
from tests.s3_fixtures import BUCKET

s3_server, s3_config, s3_spark = s3_fixtures.s3_server, s3_fixtures.s3_config, s3_fixtures.s3_spark  # the module's fixtures

A_PROVIDERS = (
    "provider_npi,first_name,last_name,status,last_updated\n"
    "1234567893,Ann,Lee,A,2024-01-01 00:00:00\n"
    "1497758544,Bo,Kim,I,2024-01-01 00:00:00\n"
)
B_PROVIDERS = '{"npi": "1003000126", "firstName": "Zo\u00eb", "active": false, "updatedAt": "2024-01-02T00:00:00Z"}\n'
C_PROVIDERS = "NPI_NUM|PROV_FIRST|PROV_LAST|ACTIVE_FLAG\n1003000126|Cy|Ray|1\n1003000127|Di\n"
LANDING = {
    "hospital_a/providers/providers_2024-01.csv": A_PROVIDERS.encode(),
    "hospital_b/providers/providers_2024-01.jsonl": B_PROVIDERS.encode(),
    "hospital_c/providers/providers_2024-01.txt": C_PROVIDERS.encode(),  # last line truncated
    "hospital_a/providers/providers_garbage.csv": b"\x00\x01\x02\xffgarbage",  # rejected whole
}


def write_tree(base: Path, files: dict[str, bytes]) -> Path:
    for relative, content in files.items():
        path = base / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return base


def test_only_public_options_travel_and_no_unsafe_commit_option(s3_config: Config) -> None:
    options = storage_options(s3_config)
    assert options["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert options["AWS_ALLOW_HTTP"] == "true" and options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] == "false"
    assert "AWS_S3_ALLOW_UNSAFE_RENAME" not in options and "aws_conditional_put" not in options
    encoded = encode_options(options)
    assert options["AWS_SECRET_ACCESS_KEY"] not in encoded and "AWS_ACCESS_KEY_ID" not in encoded


def test_s3a_settings_come_from_the_storage_section_and_hold_no_secret(s3_config: Config) -> None:
    endpoint = s3_config.section("storage")["endpoint_url"]
    assert s3a_options(s3_config) == {
        "fs.s3a.endpoint": endpoint,
        "fs.s3a.endpoint.region": "us-east-1",
        "fs.s3a.path.style.access": "true",
        "fs.s3a.connection.ssl.enabled": "false",
        "fs.s3a.aws.credentials.provider": (
            "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider,"
            "software.amazon.awssdk.auth.credentials.ProfileCredentialsProvider"
        ),
    }
    spark_conf = object_store_conf(s3_config)
    assert spark_conf["spark.hadoop.fs.s3a.endpoint"] == endpoint
    secrets = {os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]}
    assert not any(secret in value for secret in secrets for value in spark_conf.values())
    aws = s3_config.with_overrides(**{"storage.endpoint_url": None, "storage.path_style": False})
    assert "fs.s3a.endpoint" not in s3a_options(aws) and s3a_options(aws)["fs.s3a.path.style.access"] == "false"
    assert s3a_options(s3_config.with_overrides(**{"lakehouse.root": "/tmp/lake"})) == {}


def test_tables_are_addressed_as_s3a_and_the_object_store_clients_name_them_s3(s3_config: Config) -> None:
    prefix = s3_config.root.removeprefix(f"s3://{BUCKET}/")
    assert table_uri(s3_config, "raw", "providers") == f"s3a://{BUCKET}/{prefix}/raw/providers"
    assert table_uri(s3_config.with_overrides(**{"lakehouse.root": f"s3a://{BUCKET}/x"}), "raw", "p") == f"s3a://{BUCKET}/x/raw/p"
    assert object_store_uri(f"s3a://{BUCKET}/x/raw/p") == f"s3://{BUCKET}/x/raw/p"
    assert spark_uri("/tmp/lake/raw/p") == object_store_uri("/tmp/lake/raw/p") == "/tmp/lake/raw/p"


def test_missing_credentials_is_one_clear_line(s3_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ObjectStoreError) as error:
        check_store(s3_config)
    message = str(error.value)
    assert "\n" not in message and s3_config.root in message
    assert "expected AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)" in message


def test_refused_endpoint_is_one_clear_line(s3_config: Config) -> None:
    endpoint = f"http://127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
    with pytest.raises(ObjectStoreError) as error:
        check_store(s3_config.with_overrides(**{"storage.endpoint_url": endpoint}))
    message = str(error.value)
    assert "\n" not in message and f"cannot connect to {endpoint}" in message
    assert "storage.endpoint_url" in message


def test_missing_bucket_is_one_clear_line(s3_config: Config) -> None:
    with pytest.raises(ObjectStoreError) as error:
        check_store(s3_config.with_overrides(**{"lakehouse.root": "s3://no-such-bucket/lake"}))
    message = str(error.value)
    assert "\n" not in message and "bucket 'no-such-bucket' does not exist" in message


@pytest.mark.parametrize("engine", ENGINES)
def test_delta_write_append_merge_and_time_travel_on_s3(s3_spark, s3_config: Config, engine: str) -> None:
    spark = s3_spark
    tables = engine_tables(spark, s3_config, engine)
    uri = table_uri(s3_config, "processed", "tiny")
    assert uri.startswith(f"s3a://{BUCKET}/")
    tables.write(spark.createDataFrame([(1, "a"), (2, "b")], "id int, v string"), uri, mode="overwrite")
    tables.write(spark.createDataFrame([(3, "c")], "id int, v string"), uri, mode="append")
    tables.merge(spark.createDataFrame([(2, "B"), (4, "d")], "id int, v string"), uri, MergeSpec(keys=("id",)))

    current = sorted(tuple(r) for r in tables.read(uri).collect())
    assert current == [(1, "a"), (2, "B"), (3, "c"), (4, "d")]
    assert sorted(tuple(r) for r in tables.read(uri, version=0).collect()) == [(1, "a"), (2, "b")]
    assert tables.version(uri) == 2
    keys = [o["Key"] for o in s3_client(s3_config).list_objects_v2(Bucket=BUCKET, Prefix=uri.split(f"{BUCKET}/")[1])["Contents"]]
    assert any("/_delta_log/00000000000000000002.json" in k for k in keys)


def test_two_s3a_writers_of_one_commit_file_both_succeed_and_the_later_wins(s3_spark, s3_config: Config) -> None:
    """Why one writing driver at a time (the writer lock): Delta's S3 log store checks that a
    commit file is absent, in this JVM only, then creates it without overwrite; S3A checks with a
    HEAD and then PUTs unconditionally, so a second driver racing for the same version replaces
    the first one's commit silently."""
    jvm = s3_spark._jvm
    path = jvm.org.apache.hadoop.fs.Path(f"{table_uri(s3_config, 'raw', 'race')}/_delta_log/00000000000000000000.json")
    fs = path.getFileSystem(s3_spark._jsc.hadoopConfiguration())
    first, second = fs.create(path, False), fs.create(path, False)  # both pass the existence check
    first.write(b"first writer")
    first.close()
    second.write(b"second writer")
    second.close()
    bucket, key = path.toString().removeprefix("s3a://").split("/", 1)
    assert s3_client(s3_config).get_object(Bucket=bucket, Key=key)["Body"].read() == b"second writer"


def test_land_uploads_with_checksum_and_skips_unchanged(s3_config: Config, tmp_path: Path) -> None:
    source = write_tree(tmp_path / "out", {"crm/activity/a.csv": b"activity_id,npi\n1,2\n", "claims/c.csv": b"x" * 2048})
    first = land_files(s3_config, source, multipart_bytes=1024)  # c.csv goes up in two parts
    assert [o.uploaded for o in first] == [True, True]
    client = s3_client(s3_config)
    bucket, key = first[0].uri.removeprefix("s3://").split("/", 1)
    head = client.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"]["sha256"] == first[0].sha256 and head["ContentLength"] == 2048

    again = land_files(s3_config, source)
    assert [o.uploaded for o in again] == [False, False]
    (source / "claims/c.csv").write_bytes(b"y" * 2048)
    assert [o.uploaded for o in land_files(s3_config, source)] == [True, False]


def test_ingest_from_the_bucket_keeps_bad_lines_and_rejects_bad_files(s3_spark, s3_config: Config, tmp_path: Path) -> None:
    spark = s3_spark
    land_files(s3_config, write_tree(tmp_path / "out", LANDING))
    summary = run_pipeline(spark, s3_config, ["ingest"], run_id="run-s3")

    tables = open_tables(spark, s3_config)
    raw = tables.read(table_uri(s3_config, "raw", "providers"))
    assert raw.count() == 5
    truncated = raw.where(F.col("npi_num") == "1003000127").first()
    assert truncated["prov_first"] == "Di" and truncated["_corrupt_record"] == "1003000127|Di"
    assert raw.where(F.col("npi") == "1003000126").first()["firstname"] == "Zo\u00eb"
    assert {r["_source_file"] for r in raw.select("_source_file").distinct().collect()} == {
        f"{s3_config.landing}/{name}" for name in LANDING if "garbage" not in name
    }
    statuses = {(r.file_name, r.status) for r in tables.read(table_uri(s3_config, "raw", INGEST_LOG_TABLE)).collect()}
    assert ("hospital_a/providers/providers_garbage.csv", "rejected") in statuses

    # the run summary is on the object store too
    key = f"{s3_config.root.removeprefix(f's3://{BUCKET}/')}/_runs/run-s3.json"
    written = json.loads(s3_client(s3_config).get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert written["status"] == summary.status == "ok"
    assert written["stages"][0]["entities"]["providers"]["rows_written"] == 5
    groups = set(layout(s3_config))
    assert {"landing/hospital_a", "raw/providers", "raw/_ingest_log", "_runs"} <= groups
    assert "_locks" not in groups  # the run released its writer lock


def test_interrupted_upload_is_never_ingested(s3_spark, s3_server: S3Server, s3_config: Config) -> None:
    spark = s3_spark
    client = s3_client(s3_config)
    _, prefix = s3_config.landing.removeprefix("s3://").split("/", 1)
    key = f"{prefix}/hospital_a/providers/providers_2024-02.csv"
    upload = client.create_multipart_upload(Bucket=BUCKET, Key=key)
    client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=A_PROVIDERS.encode())
    aborted = client.create_multipart_upload(Bucket=BUCKET, Key=key + ".2")
    client.upload_part(Bucket=BUCKET, Key=key + ".2", UploadId=aborted["UploadId"], PartNumber=1, Body=b"npi\n1\n")
    client.abort_multipart_upload(Bucket=BUCKET, Key=key + ".2", UploadId=aborted["UploadId"])

    assert list_files(s3_config.landing, "hospital_a/providers/*", s3_config) == []
    summary = run_ingest(spark, s3_config, open_tables(spark, s3_config), "run-partial")
    assert summary.status == "nothing-to-do"
    client.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"])


def _comparable(frame) -> list[tuple]:
    """Sorted rows without run timestamps and file locations (the only values a root changes)."""
    kept = sorted(
        f.name for f in frame.schema
        if not (f.name.startswith("_") and f.dataType.typeName() == "timestamp")
        and f.name not in ("logged_at", "processed_at") and "file" not in f.name
    )
    return sorted((tuple(r) for r in frame.select(*kept).collect()), key=repr)


@pytest.mark.parametrize("engine", ENGINES)
def test_local_and_s3_roots_give_the_same_tables(s3_spark, s3_config: Config, config: Config, tmp_path: Path, engine: str) -> None:
    from carelake.process import run_process

    spark = s3_spark
    source = write_tree(tmp_path / "out", LANDING)
    results = {}
    for name, root in (("local", config), ("s3", s3_config)):
        target = root.with_overrides(**{"delta.engine": engine})
        land_files(target, source)
        tables = engine_tables(spark, target, engine)
        assert tables.engine == engine
        run_ingest(spark, target, tables, "run-same")
        run_process(spark, target, tables, "run-same")
        for zone, table in (("raw", "providers"), ("raw", INGEST_LOG_TABLE), ("processed", "providers")):
            results[(name, zone, table)] = _comparable(tables.read(table_uri(target, zone, table)))
    assert len(results[("s3", "raw", "providers")]) == 5
    assert len(results[("s3", "processed", "providers")]) > 0
    for zone, table in (("raw", "providers"), ("raw", INGEST_LOG_TABLE), ("processed", "providers")):
        assert results[("local", zone, table)] == results[("s3", zone, table)], f"{zone}/{table} differs"
