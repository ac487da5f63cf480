"""How to reach the object store: settings from config, credentials from the environment.

Every client is built here from one set of options, the delta-rs ``storage_options`` keys:
delta-rs takes them as they are, :func:`arrow_filesystem` builds a pyarrow ``S3FileSystem``
from them (driver and executors alike), :func:`s3_client` a boto3 client and
:func:`s3a_options` the Hadoop S3A settings Spark's ``s3a://`` connector reads. Only the
public, non-secret part (:func:`public_options`) ever travels in Spark options; each process
adds the credentials of its own environment (:func:`with_env_credentials`; for S3A, the AWS
SDK's environment and profile credential providers).

A cluster's executors therefore need ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or
``AWS_PROFILE`` and its files) in their environment, e.g. ``spark-env.sh`` on standalone
workers or a Kubernetes secret mounted as environment variables.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any
from urllib.parse import urlparse

from pyarrow import fs as pafs

from carelake.config import Config
from carelake.storage.paths import is_remote, to_local_path

CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
S3_SCHEMES = ("s3", "s3a")
# AWS SDK v2 providers S3A tries in order: this JVM's environment, then AWS_PROFILE's files.
S3A_CREDENTIAL_PROVIDERS = (
    "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider",
    "software.amazon.awssdk.auth.credentials.ProfileCredentialsProvider",
)


class ObjectStoreError(RuntimeError):
    """The object store cannot be reached or used; the message says what, where and why."""


def uses_object_store(config: Config) -> bool:
    """True when the lakehouse root or the landing folder is on an object store."""
    return is_remote(config.root) or is_remote(config.landing)


def public_options(config: Config) -> dict[str, str]:
    """Non-secret delta-rs storage options from the ``storage`` section ({} for local roots).

    ``storage.endpoint_url`` (none: AWS itself), ``storage.region``, ``storage.path_style``
    (bucket in the path, as MinIO and SeaweedFS want) and ``storage.allow_http`` (default: true
    for an ``http://`` endpoint).
    """
    if not uses_object_store(config):
        return {}
    section = config.section("storage")
    options: dict[str, str] = {}
    endpoint = section.get("endpoint_url")
    if endpoint:
        options["AWS_ENDPOINT_URL"] = str(endpoint)
    allow_http = section.get("allow_http", str(endpoint or "").startswith("http://"))
    if allow_http:
        options["AWS_ALLOW_HTTP"] = "true"
    if section.get("region"):
        options["AWS_REGION"] = str(section["region"])
    if section.get("path_style") is not None:
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false" if section["path_style"] else "true"
    return options


def s3a_options(config: Config) -> dict[str, str]:
    """Hadoop S3A settings (``fs.s3a.*``) for the ``storage`` section; {} for local roots.

    The same endpoint, region, addressing style and plain-HTTP choice as :func:`public_options`;
    credentials are read by the AWS SDK from each JVM's environment (``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``), else from ``AWS_PROFILE``'s files, never
    from a setting.
    """
    if not uses_object_store(config):
        return {}
    public = public_options(config)
    options = {"fs.s3a.aws.credentials.provider": ",".join(S3A_CREDENTIAL_PROVIDERS)}
    if "AWS_ENDPOINT_URL" in public:
        options["fs.s3a.endpoint"] = public["AWS_ENDPOINT_URL"]
        options["fs.s3a.connection.ssl.enabled"] = "false" if public["AWS_ENDPOINT_URL"].startswith("http://") else "true"
    if "AWS_REGION" in public:
        options["fs.s3a.endpoint.region"] = public["AWS_REGION"]
    if "AWS_VIRTUAL_HOSTED_STYLE_REQUEST" in public:
        options["fs.s3a.path.style.access"] = "true" if public["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] == "false" else "false"
    return options


def credentials_from_env() -> dict[str, str]:
    """Access key, secret and session token present in this process's environment."""
    return {key: os.environ[key] for key in CREDENTIAL_ENV if os.environ.get(key)}


def require_credentials(where: str) -> None:
    """Raise :class:`ObjectStoreError` unless the environment holds keys or ``AWS_PROFILE``."""
    found = credentials_from_env()
    if os.environ.get("AWS_PROFILE") or {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= found.keys():
        return
    have = ", ".join(sorted(found)) or "neither"
    raise ObjectStoreError(
        f"object store {where}: no credentials: expected AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
        f"(or AWS_PROFILE) in the environment, found {have}"
    )


def with_env_credentials(options: dict[str, str]) -> dict[str, str]:
    """``options`` completed with this process's credentials (for delta-rs and pyarrow)."""
    return {**options, **credentials_from_env()}


def storage_options(config: Config) -> dict[str, str]:
    """All delta-rs storage options: {} for local roots, else public options plus credentials.

    Conditional put needs no option: delta-rs commits with S3's ``If-None-Match`` put, so neither
    ``aws_conditional_put`` nor ``AWS_S3_ALLOW_UNSAFE_RENAME`` is set.
    """
    if not uses_object_store(config):
        return {}
    require_credentials(config.root)
    return with_env_credentials(public_options(config))


def encode_options(options: dict[str, str]) -> str:
    """Options as JSON for a Spark data source option, with every credential left out."""
    return json.dumps({k: v for k, v in options.items() if k not in CREDENTIAL_ENV}, sort_keys=True)


def decode_options(text: str | None) -> dict[str, str]:
    """Options from a data source option, completed with this process's credentials."""
    options: dict[str, Any] = json.loads(text) if text else {}
    if not options:
        return {}
    return with_env_credentials({str(k): str(v) for k, v in options.items()})


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``; a clear error for other schemes."""
    parsed = urlparse(uri)
    if parsed.scheme not in S3_SCHEMES or not parsed.netloc:
        raise ObjectStoreError(f"unsupported object store URI {uri!r}: expected s3://bucket/prefix or a local path")
    return parsed.netloc, parsed.path.lstrip("/")


def arrow_filesystem(uri: str, options: dict[str, str]) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem serving ``uri`` and the path of ``uri`` inside it.

    ``options`` are delta-rs storage options (from :func:`storage_options` or
    :func:`decode_options`); local paths ignore them.
    """
    if not is_remote(uri):
        return pafs.LocalFileSystem(), to_local_path(uri)
    bucket, key = split_s3_uri(uri)
    return _s3_filesystem(tuple(sorted(options.items()))), f"{bucket}/{key}".rstrip("/")


@functools.lru_cache(maxsize=8)
def _s3_filesystem(items: tuple[tuple[str, str], ...]) -> pafs.S3FileSystem:
    # One client per distinct option set: building one per file costs a TLS/DNS setup each time.
    options = dict(items)
    endpoint = urlparse(options["AWS_ENDPOINT_URL"]) if options.get("AWS_ENDPOINT_URL") else None
    return pafs.S3FileSystem(
        access_key=options.get("AWS_ACCESS_KEY_ID"),
        secret_key=options.get("AWS_SECRET_ACCESS_KEY"),
        session_token=options.get("AWS_SESSION_TOKEN"),
        region=options.get("AWS_REGION"),
        endpoint_override=endpoint.netloc if endpoint else None,
        scheme=endpoint.scheme if endpoint else "https",
        force_virtual_addressing=options.get("AWS_VIRTUAL_HOSTED_STYLE_REQUEST") == "true",
        connect_timeout=5,
        request_timeout=60,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=3),
    )


def s3_client(config: Config) -> Any:
    """A boto3 S3 client for the configured endpoint, credentials from the environment."""
    import boto3
    from botocore.config import Config as BotoConfig

    require_credentials(config.root)
    options = public_options(config)
    path_style = options.get("AWS_VIRTUAL_HOSTED_STYLE_REQUEST") == "false"
    return boto3.session.Session().client(
        "s3",
        endpoint_url=options.get("AWS_ENDPOINT_URL"),
        region_name=options.get("AWS_REGION"),
        config=BotoConfig(
            s3={"addressing_style": "path" if path_style else "auto"},
            connect_timeout=5,
            retries={"max_attempts": 2, "mode": "standard"},
        ),
    )


def check_store(config: Config) -> None:
    """Fail fast, in one line, when the configured bucket cannot be used; no-op for local roots.

    Raises :class:`ObjectStoreError` for missing credentials, an endpoint that does not answer,
    a missing bucket or refused access.
    """
    if not uses_object_store(config):
        return
    from botocore.exceptions import ClientError, EndpointConnectionError

    uri = config.root if is_remote(config.root) else config.landing
    bucket, _ = split_s3_uri(uri)
    endpoint = public_options(config).get("AWS_ENDPOINT_URL", "the AWS default endpoint")
    client = s3_client(config)
    try:
        client.head_bucket(Bucket=bucket)
    except EndpointConnectionError as exc:
        raise ObjectStoreError(
            f"object store {uri}: cannot connect to {endpoint} (storage.endpoint_url in {config.source_file}): "
            "connection refused or host unreachable; is the S3 server running?"
        ) from exc
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            raise ObjectStoreError(
                f"object store {uri}: bucket {bucket!r} does not exist at {endpoint}; create it first"
            ) from exc
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise ObjectStoreError(
                f"object store {uri}: access to bucket {bucket!r} at {endpoint} denied for the credentials "
                "in the environment (AWS_ACCESS_KEY_ID / AWS_PROFILE)"
            ) from exc
        raise ObjectStoreError(f"object store {uri}: bucket {bucket!r} at {endpoint} answered {code}") from exc
