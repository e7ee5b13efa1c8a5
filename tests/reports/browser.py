"""Opening a report in headless Chromium (Debian's, not playwright's download) with the network cut off."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@dataclass
class PageVisit:
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)  # every request that was not file://
    plots: dict[str, int] = field(default_factory=dict)  # div id -> number of traces it draws
    title: str = ""


def chromium_path() -> Path | None:
    return CHROMIUM if CHROMIUM.is_file() else (Path(found) if (found := shutil.which("chromium")) else None)


def visit(index: Path, profile: Path, screenshot: Path) -> PageVisit:
    """Load `index` with every non-file:// request aborted, wait for plotly to draw, record what happened
    and write a full-page screenshot."""
    from playwright.sync_api import sync_playwright

    seen = PageVisit()
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(profile), executable_path=str(chromium_path()), args=ARGS,
                                                       headless=True, viewport={"width": 1280, "height": 900})
        try:
            def route(request_route):
                url = request_route.request.url
                if url.startswith("file://"):
                    request_route.continue_()
                else:
                    seen.blocked.append(url)
                    request_route.abort()

            context.route("**/*", route)
            page = context.new_page()
            page.on("console", lambda m: seen.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: seen.page_errors.append(str(e)))
            page.goto(index.resolve().as_uri(), wait_until="load")
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0", timeout=30_000)
            page.wait_for_timeout(500)  # let the last plots finish drawing
            seen.plots = page.evaluate("""() => Object.fromEntries(Array.from(
                document.querySelectorAll('.js-plotly-plot')).map(d => [d.id, (d.data || []).length]))""")
            seen.title = page.title()
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            context.close()
    return seen
