"""The provider API (``carelake api``, ``make api``): HTTP on 127.0.0.1 over the curated Delta
tables, read into memory with delta-rs' log and pyarrow (no Spark session), reloaded when a
served table commits a new version. See docs/api.md.

- :mod:`.snapshot`: the tables in memory, per role what it may see, reloads;
- :mod:`.keys`: API keys -> role databases, from the environment or a secret file;
- :mod:`.queries`: the questions as pure functions over Arrow tables;
- :mod:`.app`: the FastAPI routes, ETags and errors.
"""

from __future__ import annotations

import logging
import os
import secrets

from carelake.config import Config, ConfigError
from carelake.serve.access import role_policies
from carelake.storage.paths import is_remote, to_local_path

log = logging.getLogger(__name__)

DEFAULT_PORT = 8787
DEV_KEYS_FILE = os.path.join("_secrets", "api-keys")


def dev_keys_path(config: Config) -> str:
    """Where a local lakehouse keeps generated development API keys: ``<root>/_secrets/api-keys``."""
    return os.path.join(to_local_path(config.root), DEV_KEYS_FILE)


def ensure_dev_keys(config: Config, roles: list[str]) -> str:
    """Write one random key per role database into :func:`dev_keys_path` (mode 0600) unless the
    file exists; returns its path. For a local lakehouse only: real keys come from a secret store."""
    path = dev_keys_path(config)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    with os.fdopen(fd, "w") as out:
        out.write("# development API keys of this local lakehouse: <role database>:<key>\n")
        for role in roles:
            out.write(f"{role}:{secrets.token_urlsafe(24)}\n")
    return path


def run_api(config: Config, host: str | None = None, port: int | None = None) -> int:
    """Serve the API until Ctrl-C/SIGTERM; returns the exit code."""
    import uvicorn

    from carelake.serve.api.app import create_app
    from carelake.serve.api.keys import KEYS_ENV, KEYS_FILE_ENV, load_api_keys
    from carelake.serve.api.snapshot import SnapshotStore

    section = config.section("api")
    host = host or section.get("host") or "127.0.0.1"
    port = int(port or section.get("port") or DEFAULT_PORT)
    roles = [p.database for p in role_policies(config)]
    env = dict(os.environ)
    if not env.get(KEYS_ENV) and not env.get(KEYS_FILE_ENV):
        if is_remote(config.root):
            raise ConfigError(
                f"no API keys: set {KEYS_FILE_ENV} (a secret file) or {KEYS_ENV}; development keys are "
                "generated for local lakehouses only"
            )
        env[KEYS_FILE_ENV] = ensure_dev_keys(config, roles)
        print(f"carelake api: {KEYS_FILE_ENV} is not set: development keys in {env[KEYS_FILE_ENV]}")
    keys = load_api_keys(set(roles), env)
    # Request lines and reloads are what an operator of the API watches.
    for name in ("carelake.api.access", "carelake.serve.api"):
        logging.getLogger(name).setLevel(logging.INFO)
    store = SnapshotStore(config)
    store.start(float(section.get("refresh_seconds", 5)))
    app = create_app(lambda: store.current, keys)
    print(f"carelake api: http://{host}:{port}/v1 (OpenAPI: http://{host}:{port}/openapi.json); Ctrl-C stops")
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        store.stop()
    return 0
