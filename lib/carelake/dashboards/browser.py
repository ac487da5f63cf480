"""Opening dashboard pages in a real browser: headless Chromium (Debian's ``chromium`` package)
driven by Playwright, one screenshot per page, and what each chart reported.

Playwright's own browser download cannot be used here, so the system Chromium is launched by
path (``CARELAKE_CHROMIUM`` or ``/usr/bin/chromium``). Used by the browser tests and by
``python -m carelake.dashboards.browser <report folder> <screenshot folder>``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = (
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
)
READY_TIMEOUT_MS = 60_000


def chromium_path() -> str | None:
    """The Chromium binary to drive, or None when none is installed."""
    configured = os.environ.get("CARELAKE_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def missing_browser_reason() -> str | None:
    """Why pages cannot be opened here (no Chromium, no Playwright), or None when they can."""
    if chromium_path() is None:
        return "no Chromium: apt-get install chromium (or set CARELAKE_CHROMIUM to its path)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed: pip install -c requirements.lock -e '.[test]'"
    return None


@dataclass
class PageCheck:
    """What one page showed: its charts' states and values drawn, errors, the screenshot."""

    url: str
    screenshot: str
    title: str = ""
    charts: dict[str, dict[str, str]] = field(default_factory=dict)  # chart id -> {state, points}
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions


@contextmanager
def browser_context(width: int = 1400, height: int = 900) -> Iterator[Any]:
    """A Playwright browser context in headless system Chromium; closed on exit."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError(missing_browser_reason())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=list(CHROMIUM_FLAGS))
        try:
            yield browser.new_context(viewport={"width": width, "height": height})
        finally:
            browser.close()


def check_page(context: Any, url: str, screenshot: Path, ready: Callable[[Any], None] | None = None) -> PageCheck:
    """Open ``url`` in a new tab of ``context``, wait until it says it is drawn (``body[data-state=ready]`` for the static
    report, or ``ready(page)``), read every chart's ``data-state``/``data-points`` and save a
    full-page screenshot."""
    check = PageCheck(url=url, screenshot=str(screenshot))
    page = context.new_page()
    page.on("console", lambda msg: check.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: check.errors.append(str(exc)))
    page.goto(url, wait_until="load")
    if ready is None:
        page.wait_for_selector("body[data-state=ready]", timeout=READY_TIMEOUT_MS)
        check.charts = page.eval_on_selector_all(
            ".chart", "els => Object.fromEntries(els.map(e => [e.id, {state: e.dataset.state, points: e.dataset.points}]))"
        )
    else:
        ready(page)
    check.title = page.title()
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    page.close()
    return check


def check_report(report_dir: Path, screenshots: Path) -> list[PageCheck]:
    """Every ``*.html`` page of a static report folder, one screenshot each under ``screenshots``."""
    checks = []
    with browser_context() as context:
        for html in sorted(report_dir.glob("*.html")):
            checks.append(check_page(context, html.resolve().as_uri(), screenshots / f"{html.stem}.png"))
    return checks


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m carelake.dashboards.browser <report folder> <screenshot folder>", file=sys.stderr)
        return 2
    reason = missing_browser_reason()
    if reason:
        print(f"cannot open the pages: {reason}", file=sys.stderr)
        return 1
    bad = 0
    for check in check_report(Path(argv[0]), Path(argv[1])):
        broken = {k: v for k, v in check.charts.items() if v.get("state") != "rendered"}
        bad += bool(broken or check.errors)
        print(f"{check.url}: {len(check.charts)} chart(s), not rendered: {broken or 'none'}, errors: {check.errors or 'none'}")
        print(f"  screenshot {check.screenshot}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
