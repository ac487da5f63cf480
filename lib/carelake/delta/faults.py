"""A hold point for crash and race tests: stop a writer at a named moment, then kill or release it.

``CARELAKE_HOLD_AT`` names the moments (comma-separated), e.g. ``before-commit:raw/encounters``
(the data files are written, the Delta commit is not) or ``after-commit:processed/providers``.
The first process to reach one creates ``<CARELAKE_HOLD_DIR>/<moment>.held`` holding its pid and
waits while that file exists, so a test can SIGKILL the job at exactly that point, or rename the
file to ``<moment>.released`` to let it go on (after making a concurrent commit, say). Later
arrivals pass straight through. Unset (always, outside tests), a hold point costs one
environment lookup.
"""

from __future__ import annotations

import os
import time

HOLD_AT_ENV = "CARELAKE_HOLD_AT"
HOLD_DIR_ENV = "CARELAKE_HOLD_DIR"
# Long enough for any test to act; short enough that a forgotten hold ends.
HOLD_SECONDS = 300


def hold_marker(folder: str, moment: str) -> str:
    """The marker file of ``moment`` (``<moment>:<zone>/<table>``) in ``folder``, without suffix."""
    return os.path.join(folder, moment.replace("/", "__").replace(":", "--"))


def hold_point(moment: str, uri: str) -> None:
    """Hold here when ``CARELAKE_HOLD_AT`` names ``<moment>:<zone>/<table>`` of ``uri``."""
    wanted = os.environ.get(HOLD_AT_ENV)
    if not wanted:
        return
    name = f"{moment}:{'/'.join(uri.rstrip('/').split('/')[-2:])}"
    if name not in {w.strip() for w in wanted.split(",")}:
        return
    marker = hold_marker(os.environ.get(HOLD_DIR_ENV, "."), name)
    if os.path.exists(marker + ".released"):
        return
    try:
        fd = os.open(marker + ".held", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as out:
        out.write(str(os.getpid()))
    deadline = time.monotonic() + HOLD_SECONDS
    while os.path.exists(marker + ".held") and time.monotonic() < deadline:
        time.sleep(0.1)
