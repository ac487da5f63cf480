"""Who wrote: the actor recorded with every Delta commit and run summary.

The actor is ``$CARELAKE_ACTOR`` when set (a scheduler or service account names itself there),
else the OS user running the process. With the run id and stage already in the commit metadata
and the commit's own timestamp and version, each table version says who, what and when.
"""

from __future__ import annotations

import getpass
import os

ACTOR_ENV = "CARELAKE_ACTOR"
ACTOR_KEY = "carelake.actor"


def current_actor(env: dict[str, str] | os._Environ[str] | None = None) -> str:
    """``$CARELAKE_ACTOR``, else the OS login name, else ``unknown`` (no user database entry)."""
    actor = (os.environ if env is None else env).get(ACTOR_ENV, "").strip()
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # e.g. a container uid with no passwd entry
        return "unknown"


def audited(commit_metadata: dict[str, str] | None) -> dict[str, str]:
    """Commit metadata plus ``carelake.actor`` (a value already given is kept)."""
    return {ACTOR_KEY: current_actor(), **(commit_metadata or {})}
