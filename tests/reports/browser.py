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
    drawn: dict[str, dict] = field(default_factory=dict)  # div id -> what PROBE read off the drawn plot
    tables: dict[str, dict] = field(default_factory=dict)  # figure id -> the HTML table's headers and cell texts
    captions: dict[str, str] = field(default_factory=dict)  # figure id -> caption and notes as the page shows them


# What each drawn plot shows, read from the page: the ∅ marks as drawn (scatter text points and heatmap cell
# texts) and whether the ∅ points are hollow (their path has no fill); error bars drawn on bars and on scatter
# points; the layout's shapes and the shape paths drawn; and each trace's data after plotly decoded it
# (`_fullData`: numbers, not the base64 the page carries).
PROBE = """() => Object.fromEntries(Array.from(document.querySelectorAll('.js-plotly-plot')).map(d => {
  const nulls = Array.from(d.querySelectorAll('.scatterlayer .trace')).filter(
    g => Array.from(g.querySelectorAll('.textpoint text')).some(t => t.textContent === '∅'));
  const points = nulls.flatMap(g => Array.from(g.querySelectorAll('.points path')));
  const list = a => (a === undefined || a === null) ? null : Array.from(a, v => (v === null || v === undefined) ? null : v);
  return [d.id, {
    null_texts: Array.from(d.querySelectorAll('text')).filter(t => t.textContent === '∅').length,
    null_points: points.length,
    null_hollow: points.filter(p => /fill: none/.test(p.getAttribute('style') || '')).length,
    bar_error_bars: d.querySelectorAll('.barlayer path.yerror').length,
    point_error_bars: d.querySelectorAll('.scatterlayer path.yerror, .scatterlayer path.xerror').length,
    shapes: (d.layout.shapes || []).map(s => ({x0: s.x0, x1: s.x1, y0: s.y0, y1: s.y1})),
    shapes_drawn: d.querySelectorAll('.shapelayer path').length,
    traces: d._fullData.map(t => ({name: t.name, type: t.type, mode: t.mode || null, x: list(t.x), y: list(t.y),
      symbol: t.marker ? t.marker.symbol : null, colour: t.marker ? t.marker.color : null,
      error_y: t.error_y && t.error_y.visible ? list(t.error_y.array) : null,
      error_x: t.error_x && t.error_x.visible ? list(t.error_x.array) : null,
      z: t.z ? Array.from(t.z, row => list(row)) : null, text: t.text ? list(t.text) : null}))}];
}))"""
TABLES = """() => Object.fromEntries(Array.from(document.querySelectorAll('h3[id^="table-"]')).map(h => {
  const table = h.parentElement.querySelector('#' + h.id + ' ~ div.scroll table');
  return [h.id.slice(6), {headers: Array.from(table.querySelectorAll('thead th'), th => th.textContent),
                          rows: Array.from(table.querySelectorAll('tbody tr'), tr => Array.from(tr.querySelectorAll('td'), td => td.textContent))}];
}))"""
CAPTIONS = """() => Object.fromEntries(Array.from(document.querySelectorAll('section.figure')).map(s => [s.id.slice(8),
  Array.from(s.querySelectorAll('.caption, .caveat'), p => p.innerText).join('\\n')]))"""


def chromium_path() -> Path | None:
    return CHROMIUM if CHROMIUM.is_file() else (Path(found) if (found := shutil.which("chromium")) else None)


def visit(index: Path, profile: Path, screenshot: Path) -> PageVisit:
    """Load `index` with every non-file:// request aborted, wait for plotly to draw, record what happened
    (and what the plots, tables and captions show) and write a full-page screenshot."""
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
            seen.drawn, seen.tables, seen.captions = page.evaluate(PROBE), page.evaluate(TABLES), page.evaluate(CAPTIONS)
            seen.title = page.title()
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            context.close()
    return seen
