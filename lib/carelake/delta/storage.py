"""Storage options for delta-rs and pyarrow, from configuration and the environment.

This is the one place that knows how to reach the object store; everything in the Delta layer
passes its result to delta-rs and to the data source's executors.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlparse

from pyarrow import fs as pafs

from carelake.config import Config
from carelake.storage import is_remote, to_local_path

# Credentials are never passed through Spark options (they could show in plans and logs):
# executors read them from their own environment.
CREDENTIAL_ENV = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN": "AWS_SESSION_TOKEN",
}


def credentials_from_env() -> dict[str, str]:
    """Object-store credentials present in this process's environment (may be empty)."""
    return {key: os.environ[env] for key, env in CREDENTIAL_ENV.items() if os.environ.get(env)}


def public_storage_options(config: Config) -> dict[str, str]:
    """Non-secret delta-rs storage options for ``config.root``: {} for local roots.

    For ``s3://`` roots: ``storage.endpoint``, ``storage.region`` and ``storage.path_style``
    from the ``storage`` section.
    """
    if not is_remote(config.root):
        return {}
    section = config.section("storage")
    options: dict[str, str] = {}
    endpoint = section.get("endpoint")
    if endpoint:
        options["AWS_ENDPOINT_URL"] = str(endpoint)
        if str(endpoint).startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    if section.get("region"):
        options["AWS_REGION"] = str(section["region"])
    if section.get("path_style") is not None:
        options["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false" if section["path_style"] else "true"
    return options


def storage_options(config: Config) -> dict[str, str]:
    """All delta-rs storage options for ``config.root``: {} for local roots, else endpoint,
    region and path style from config plus credentials from the environment."""
    if not is_remote(config.root):
        return {}
    return {**public_storage_options(config), **credentials_from_env()}


def encode_options(options: dict[str, str]) -> str:
    """Storage options as a JSON string for a Spark data source option (no secrets in it)."""
    public = {k: v for k, v in options.items() if k not in CREDENTIAL_ENV}
    return json.dumps(public, sort_keys=True)


def decode_options(text: str | None) -> dict[str, str]:
    """Storage options from a data source option, completed with this process's credentials."""
    options: dict[str, Any] = json.loads(text) if text else {}
    return {**{str(k): str(v) for k, v in options.items()}, **credentials_from_env()}


def filesystem(uri: str, options: dict[str, str]) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem for ``uri`` and the path of ``uri`` inside it."""
    if not is_remote(uri):
        return pafs.LocalFileSystem(), to_local_path(uri)
    parsed = urlparse(uri)
    if parsed.scheme not in ("s3", "s3a"):
        raise ValueError(f"unsupported table URI scheme {parsed.scheme!r} in {uri}: expected s3:// or a local path")
    endpoint = options.get("AWS_ENDPOINT_URL")
    endpoint_parsed = urlparse(endpoint) if endpoint else None
    s3 = pafs.S3FileSystem(
        access_key=options.get("AWS_ACCESS_KEY_ID"),
        secret_key=options.get("AWS_SECRET_ACCESS_KEY"),
        session_token=options.get("AWS_SESSION_TOKEN"),
        region=options.get("AWS_REGION"),
        endpoint_override=endpoint_parsed.netloc if endpoint_parsed else None,
        scheme=endpoint_parsed.scheme if endpoint_parsed else "https",
        force_virtual_addressing=options.get("AWS_VIRTUAL_HOSTED_STYLE_REQUEST") == "true",
    )
    return s3, f"{parsed.netloc}{parsed.path}".rstrip("/")
