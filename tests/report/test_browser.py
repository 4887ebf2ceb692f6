"""The QC report opened in a real headless Chromium, looked at as a person would: the
fused image is drawn (not blank, coloured), moving a slider changes the picture, the
opacity slider at the MRI end shows the MRI, a click moves the linked cursor, the index
filters by status, and no page makes a network request. Skips without a chromium."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers.browser import Browser
from helpers.cli import run

CHROMIUM = Browser.find()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (Debian: "
                                "apt-get install chromium); the report's browser tests skip")


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    assert CHROMIUM is not None
    with Browser(CHROMIUM, width=1400, height=1000) as b:
        yield b


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, small_study) -> Path:  # type: ignore[no-untyped-def]
    from helpers.engines import MeanEngine
    from medfuse.cli.options import injected_engine

    root = tmp_path_factory.mktemp("browser")
    with injected_engine(MeanEngine):
        res = run("fuse", small_study.path("mri"), small_study.path("other"), "-o",
                  root / "fused.nii.gz", "--modality", "pet", "--report", root / "qc")
    assert res.code == 0, res.text
    return root / "qc" / "index.html"


def canvas(b: Browser, cid: str) -> np.ndarray:
    """A canvas's pixels as (H, W, 3) uint8, read back through the page."""
    flat = b.evaluate(f"(() => {{ const c = document.getElementById('{cid}');"
                      "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, "
                      "c.height).data); })()")
    h = b.evaluate(f"document.getElementById('{cid}').height")
    return np.asarray(flat, np.uint8).reshape(h, -1, 4)[..., :3]


def set_range(b: Browser, rid: str, value: int) -> None:
    b.evaluate(f"(() => {{ const s = document.getElementById('{rid}'); s.value = {value};"
               "s.dispatchEvent(new Event('input')); })()")


def only_local(requests: list[str], page: Path) -> None:
    """Every request is the page itself, an embedded data: URI, or a file in its folder."""
    folder = page.parent.resolve().as_uri()
    bad = [u for u in requests if not (u.startswith("data:") or u.startswith(folder))]
    assert not bad, bad


def test_page_draws_the_fusion_offline(browser: Browser, page: Path) -> None:
    browser.events.clear()
    seconds = browser.open(page)
    assert seconds < 30
    shot = cv2.imdecode(np.frombuffer(browser.screenshot(), np.uint8), cv2.IMREAD_COLOR)
    assert shot.shape[:2] == (1000, 1400) and shot.std() > 20  # not a blank page
    fused = canvas(browser, "axial-fused").astype(int)
    lit = fused.max(axis=-1) > 30
    coloured = (fused.max(axis=-1) - fused.min(axis=-1)) > 40
    assert lit.mean() > 0.2 and coloured.mean() > 0.05, (lit.mean(), coloured.mean())
    mri = canvas(browser, "axial-mri").astype(int)
    assert (mri.max(axis=-1) - mri.min(axis=-1) <= 2).mean() > 0.95  # grey, under a crosshair
    only_local(browser.requests, page)
    assert browser.requests[0] == page.resolve().as_uri()


def test_sliders_change_the_picture(browser: Browser, page: Path) -> None:
    browser.open(page)
    before_shot = browser.screenshot()
    before = canvas(browser, "axial-fused")
    n = browser.evaluate("+document.getElementById('slider-axial').max")
    set_range(browser, "slider-axial", max(0, n // 2 - 4))
    after = canvas(browser, "axial-fused")
    assert np.abs(after.astype(int) - before.astype(int)).mean() > 2
    assert browser.screenshot() != before_shot
    set_range(browser, "opacity", 0)  # all MRI: the middle panel shows the MRI
    middle, mri = canvas(browser, "axial-fused"), canvas(browser, "axial-mri")
    assert np.abs(middle.astype(int) - mri.astype(int)).max() <= 1


def test_click_moves_the_linked_cursor(browser: Browser, page: Path) -> None:
    browser.open(page)
    before = browser.evaluate("+document.getElementById('slider-axial').value")
    # a click near the top of the coronal view picks a slice near the top of the head
    browser.evaluate("(() => { const c = document.getElementById('coronal-mri');"
                     "const b = c.getBoundingClientRect();"
                     "c.dispatchEvent(new MouseEvent('click', {clientX: b.left + b.width / 2,"
                     "clientY: b.top + b.height * 0.1, bubbles: true})); })()")
    after = browser.evaluate("+document.getElementById('slider-axial').value")
    assert after != before
    assert "cursor" in browser.evaluate("document.getElementById('cursor').textContent")


def test_index_lists_sorts_and_filters(browser: Browser, tmp_path: Path, cohort: Path) -> None:
    from helpers.engines import MeanEngine
    from medfuse.cli.options import injected_engine

    with injected_engine(MeanEngine):
        res = run("batch", cohort, tmp_path / "out", "--report", tmp_path / "qc")
    assert res.code == 1
    index = tmp_path / "qc" / "index.html"
    browser.events.clear()
    browser.open(index)
    rows = browser.evaluate("document.querySelectorAll('#table tbody tr').length")
    assert rows == 4
    browser.evaluate("window.scrollTo(0, 0)")
    browser.wait_for("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    only_local(browser.requests, index)
    browser.evaluate("(() => { const s = document.getElementById('status'); s.value = 'failed';"
                     "s.dispatchEvent(new Event('input')); })()")
    text = browser.evaluate("document.querySelector('#table tbody').innerText")
    assert "broken" in text and "p0" not in text
