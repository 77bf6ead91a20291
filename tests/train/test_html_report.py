"""`medjax report --html`: one self-contained page, checked in a real browser (headless Chromium via Playwright).

The browser test needs Debian's ``chromium`` and the ``playwright`` package (no browser download: it drives the
system Chromium). Elsewhere it skips saying why; `.ci/run` installs Chromium and sets ``MEDJAX_REQUIRE_BROWSER=1``,
under which a missing browser fails the test instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from medjax.train import loop
from medjax.train.html_report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _browser():
    reason = None
    if CHROMIUM is None:
        reason = "no chromium on PATH (Debian: apt-get install chromium)"
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            reason = "playwright is not installed (pip install playwright; it drives the system chromium)"
    if reason:
        if os.environ.get("MEDJAX_REQUIRE_BROWSER") == "1":
            pytest.fail(f"MEDJAX_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return sync_playwright


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from tests.train.conftest import make_config, make_task

    workdir = tmp_path_factory.mktemp("run")
    loop.train(make_task(), make_config(workdir), "blobs")
    return workdir


def _report(workdir):
    result = subprocess.run([sys.executable, "-m", "medjax.cli", "report", "--workdir", str(workdir), "--html"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return workdir / "report.html"


def test_the_page_loads_without_errors_every_image_decodes_and_the_figures_are_results_json(finished):
    sync_playwright = _browser()
    page_path = _report(finished)
    results = json.loads((finished / "results.json").read_text())
    text = page_path.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text  # nothing to fetch
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for width in (375, 1280):  # a phone and a laptop
                page = browser.new_page(viewport={"width": width, "height": 800})
                problems = []
                page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
                page.on("pageerror", lambda error: problems.append(str(error)))
                page.on("request", lambda request: problems.append(f"request {request.url}")
                        if not request.url.startswith(("file:", "data:")) else None)
                page.goto(page_path.as_uri(), wait_until="load")
                images = page.eval_on_selector_all("img", "els => els.map(e => [e.alt, e.complete, e.naturalWidth])")
                assert {alt for alt, _, _ in images} >= {"learning_curves.png", "roc.png", "confusion_matrix.png"}
                assert all(complete and natural > 0 for _, complete, natural in images), images
                shown = page.eval_on_selector_all("[data-key]", "els => els.map(e => [e.dataset.key, e.textContent])")
                assert {key for key, _ in shown} == {k for k in results if k.startswith(("val_", "test_"))}
                for key, value in shown:
                    assert value == f"{results[key]:.4f}", key
                # Nothing wider than the screen but the scrollable tables.
                assert page.evaluate("document.documentElement.scrollWidth") <= width
                assert not problems, problems
                page.close()
        finally:
            browser.close()


def test_an_unfinished_run_says_so(finished, tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.json", "metrics.jsonl"):
        shutil.copy(finished / name, unfinished / name)
    page = write_report(unfinished).read_text()
    assert "Unfinished: 3 of 3 epochs done, no results.json yet." in page and "data-key" not in page


def test_a_folder_that_is_no_run_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "medjax.cli", "report", "--workdir", str(tmp_path), "--html"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and str(tmp_path) in result.stderr
