"""API keys: which key speaks for which role database, from the environment or a secret file.

Keys never live in the repository or in conf. Entries are ``<role database>:<key>`` — the role
databases of ``access.roles``: ``analyst``, ``clinician_<hospital>``, ``engineer`` — one per line
in the file named by ``$CARELAKE_API_KEYS_FILE`` (``#`` starts a comment), or comma-separated in
``$CARELAKE_API_KEYS``. Only SHA-256 digests of the keys are kept in memory, and a key is looked
up by its digest, so no key value is compared character by character or logged.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from carelake.config import ConfigError

KEYS_ENV = "CARELAKE_API_KEYS"
KEYS_FILE_ENV = "CARELAKE_API_KEYS_FILE"
MIN_KEY_LENGTH = 16


def key_digest(key: str) -> str:
    """The SHA-256 hex digest a key is known by."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKeys:
    """``{key digest: role database}``."""

    roles_by_digest: Mapping[str, str]

    def role_of(self, key: str | None) -> str | None:
        """The role database of ``key``, or None for no key or an unknown one."""
        if not key:
            return None
        return self.roles_by_digest.get(key_digest(key))


def parse_entries(entries: list[tuple[str, str]], known_roles: set[str]) -> ApiKeys:
    """``entries`` of (where, ``role:key`` text) as :class:`ApiKeys`; a clear error (naming the
    entry's place, never the key) for a malformed entry, an unknown role or a short key."""
    roles: dict[str, str] = {}
    for where, text in entries:
        role, sep, key = text.partition(":")
        role, key = role.strip(), key.strip()
        if not sep or not role or not key:
            raise ConfigError(f"{where}: expected '<role database>:<key>'")
        if role not in known_roles:
            raise ConfigError(
                f"{where}: role {role!r} is not a role database of access.roles "
                f"(known: {', '.join(sorted(known_roles)) or 'none'})"
            )
        if len(key) < MIN_KEY_LENGTH:
            raise ConfigError(f"{where}: the key of {role} is shorter than {MIN_KEY_LENGTH} characters")
        roles[key_digest(key)] = role
    return ApiKeys(roles)


def load_api_keys(known_roles: set[str], env: Mapping[str, str] | None = None) -> ApiKeys:
    """The keys of ``$CARELAKE_API_KEYS_FILE`` and ``$CARELAKE_API_KEYS`` (both may be set)."""
    env = os.environ if env is None else env
    entries: list[tuple[str, str]] = []
    path = env.get(KEYS_FILE_ENV)
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"${KEYS_FILE_ENV}: cannot read {path}: {exc.strerror}") from exc
        for number, line in enumerate(lines, 1):
            text = line.split("#", 1)[0].strip()
            if text:
                entries.append((f"{path}:{number}", text))
    for index, text in enumerate((env.get(KEYS_ENV) or "").split(","), 1):
        if text.strip():
            entries.append((f"${KEYS_ENV} entry {index}", text.strip()))
    return parse_entries(entries, known_roles)
