"""Patient tokens: HMAC-SHA256 of a key, computed as a Spark expression.

Spark has no built-in HMAC, and a Python UDF would move every row through Python workers. HMAC
is two nested SHA-256s over the key XOR-ed with fixed pads (RFC 2104), so the padded keys are
computed once in the driver and the hashing runs as native ``sha2`` over binary columns. The key
comes from the environment only and is never put in a log, an error or a plan string that is
printed: the padded keys are embedded as binary literals in the plan, so plans of tokenising
queries are not to be logged either.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import secrets

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from carelake.config import Config
from carelake.storage import is_remote, to_local_path

log = logging.getLogger(__name__)

TOKEN_KEY_ENV = "CARELAKE_TOKEN_KEY"
PATIENT_KEY, PATIENT_TOKEN = "patient_key", "patient_token"
DEV_KEY_DIR, DEV_KEY_FILE = "_secrets", "token.key"
_BLOCK = 64  # SHA-256 block size in bytes
_MIN_KEY_BYTES = 32


class TokenKeyError(RuntimeError):
    """The token key is missing or too weak; the message never contains the key."""


def token_key(env: dict[str, str] | os._Environ[str] | None = None) -> bytes:
    """The token key from ``$CARELAKE_TOKEN_KEY`` (hex or base64, at least 32 bytes)."""
    text = (os.environ if env is None else env).get(TOKEN_KEY_ENV, "").strip()
    if not text:
        raise TokenKeyError(
            f"{TOKEN_KEY_ENV} is not set: patient tokens need a secret key of at least "
            f"{_MIN_KEY_BYTES} bytes (hex or base64), e.g. `export {TOKEN_KEY_ENV}=$(openssl rand -hex 32)`"
        )
    if re.fullmatch(r"[0-9a-fA-F]+", text) and len(text) % 2 == 0:
        key = bytes.fromhex(text)
    else:
        try:
            key = base64.b64decode(text, validate=True)
        except ValueError:
            raise TokenKeyError(f"{TOKEN_KEY_ENV} is neither hex nor base64") from None
    if len(key) < _MIN_KEY_BYTES:
        raise TokenKeyError(f"{TOKEN_KEY_ENV} is {len(key)} bytes: at least {_MIN_KEY_BYTES} are required")
    return key


def _padded(key: bytes) -> tuple[bytes, bytes]:
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\x00")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def hmac_sha256_hex(value: Column, key: bytes) -> Column:
    """``hex(HMAC-SHA256(key, utf8(value)))`` as a native Spark expression; null stays null."""
    inner_pad, outer_pad = _padded(key)
    message = F.encode(value.cast("string"), "UTF-8")
    inner = F.unhex(F.sha2(F.concat(F.lit(inner_pad), message), 256))
    return F.sha2(F.concat(F.lit(outer_pad), inner), 256)


def dev_key_path(config: Config) -> str:
    """Where a local lakehouse keeps its generated development key: ``<root>/_secrets/token.key``."""
    return os.path.join(to_local_path(config.root), DEV_KEY_DIR, DEV_KEY_FILE)


def resolve_token_key(config: Config, env: dict[str, str] | os._Environ[str] | None = None) -> bytes:
    """The token key: ``$CARELAKE_TOKEN_KEY`` when set; else, for a local lakehouse only, a
    random development key generated once into :func:`dev_key_path` (mode 0600) with a warning.

    An object-store lakehouse without the variable fails: a key stored beside the data it
    protects would let anyone who reads the lake recompute tokens, and a key that changes
    between runs would break every join on ``patient_token``.
    """
    env = os.environ if env is None else env
    if env.get(TOKEN_KEY_ENV, "").strip():
        return token_key(env)
    if is_remote(config.root):
        raise TokenKeyError(
            f"{TOKEN_KEY_ENV} is not set and lakehouse.root is an object store ({config.root}): "
            "set it from your secret manager; development keys are generated for local lakehouses only"
        )
    path = dev_key_path(config)
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        # O_EXCL: two runs starting together must not each write a different key.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(_MIN_KEY_BYTES) + "\n")
        log.warning(
            "%s is not set: using a development token key generated into %s; set %s for real data "
            "(see docs/security.md)", TOKEN_KEY_ENV, path, TOKEN_KEY_ENV,
        )
    with open(path, encoding="ascii") as key_file:
        return token_key({TOKEN_KEY_ENV: key_file.read()})


def tokenise_patient_key(df: DataFrame, key: bytes) -> DataFrame:
    """Rows with ``patient_key`` -> the same rows with ``patient_token`` = HMAC-SHA256(key,
    patient_key) in its place; frames without ``patient_key`` are returned unchanged.

    ``patient_key`` is an unkeyed hash of source system and local id, so it can be recomputed by
    anyone who guesses the id; the keyed token cannot without the key.
    """
    if PATIENT_KEY not in df.columns:
        return df
    return df.select(
        *[hmac_sha256_hex(F.col(c), key).alias(PATIENT_TOKEN) if c == PATIENT_KEY else F.col(c) for c in df.columns]
    )
