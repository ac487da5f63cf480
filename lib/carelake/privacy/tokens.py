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
import os
import re

from pyspark.sql import Column
from pyspark.sql import functions as F

TOKEN_KEY_ENV = "CARELAKE_TOKEN_KEY"
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
