"""The report opened the way a reader opens it: index.html from disk in headless Chromium, with every
network request refused. Needs Debian's chromium (`.ci/ensure-chromium` installs it) and the playwright
package (the `test` extra); playwright's own browser download is never used."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.reports.browser import chromium_path, visit


def test_report_opens_offline_with_every_figure_drawn(study_report, tmp_path):
    if chromium_path() is None:
        pytest.fail("no chromium at /usr/bin/chromium: run .ci/ensure-chromium")
    root, document = study_report
    artifacts = Path(os.environ.get("ISOPROBE_TEST_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    screenshot = artifacts / "report-index.png"
    seen = visit(root / "report" / "index.html", tmp_path / "profile", screenshot)
    print(f"\nscreenshot of the report: {screenshot}")
    assert seen.blocked == [], f"the page tried to reach the network: {seen.blocked}"
    assert seen.console_errors == [] and seen.page_errors == [], (seen.console_errors, seen.page_errors)
    assert seen.title == document["title"]
    for figure in document["figures"]:
        assert seen.plots.get(figure["div"], 0) > 0, f"{figure['id']}: no plot with data ({seen.plots})"
    assert screenshot.stat().st_size > 50_000
