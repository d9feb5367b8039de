"""Notebook 06's clip player in JupyterLab, driven in headless Chromium: Play advances the frames.

nbval runs the notebook's cells but never presses a button. This test reuses the JupyterLab server,
the browser and the session of ``tests/test_browser.py`` (Debian's Chromium through Playwright,
``CAMVID_SMOKE=1``; skipped without a browser, a failure under ``CAMVID_REQUIRE_BROWSER=1``), runs
notebook 06, presses the player's Play button and checks that the frame the player prints moves on to
the clip's last frame, through frames in between, and that the picture changes. The Play control is
linked to the frame slider in the browser (``jslink``), so this is the path a learner's click takes:
browser -> slider -> kernel -> picture. Screenshots and timings go to
``artifacts/browser/<frontend>/video/``.
"""

from __future__ import annotations

import re
import time

import pytest
import test_browser
from test_browser import ARTIFACTS, FRONTEND, REPO, STEP_TIMEOUT, _changed_fraction, _shot, session

# The Chromium, JupyterLab server and browser of test_browser.py, as fixtures of this module too.
chromium, lab, browser = test_browser.chromium, test_browser.lab, test_browser.browser

pytestmark = pytest.mark.browser

NOTEBOOK = REPO / "notebooks" / "06_video.ipynb"
RUN_ALL_TIMEOUT = 600  # s: notebook 06 predicts its clip twice, on a CPU shared with the other tests
PLAYER_LINE = re.compile(r"frame (?P<frame>\d+)/(?P<last>\d+): (?P<name>\S+)")


def _line(cell) -> re.Match | None:
    return PLAYER_LINE.search(cell.locator(".widget-output").first.inner_text())


def test_play_advances_the_clip_and_the_picture_changes(lab, browser, monkeypatch):
    monkeypatch.setattr(test_browser, "RUN_ALL_TIMEOUT", RUN_ALL_TIMEOUT)
    shots = ARTIFACTS / "video"
    with session(browser, lab, NOTEBOOK, shots) as (page, lap):
        cell = page.locator(".jp-Cell", has=page.locator(".widget-play")).first
        cell.wait_for()
        cell.scroll_into_view_if_needed()
        first = _line(cell)
        assert first and first["frame"] == "0", f"{FRONTEND}: the player does not open on frame 0: {first}"
        picture = cell.locator(".widget-image").first
        before = _shot(picture, shots / "frame-first.png")

        cell.locator(".widget-play button").first.click()  # the play button, first in 7 and 8
        seen, deadline = [], time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            line = _line(cell)
            if line and (not seen or seen[-1] != line["frame"]):
                seen.append(line["frame"])
            if line and line["frame"] == line["last"]:
                break
            time.sleep(0.05)
        lap(f"Play pressed: frames shown {seen}")
        if not seen or seen[-1] != first["last"]:
            pytest.fail(f"{FRONTEND}: after Play the player showed frames {seen}, not up to {first['last']}")
        assert len(set(seen) - {"0", first["last"]}) >= 1, f"Play jumped straight to the end: {seen}"
        after = _shot(picture, shots / "frame-last.png")
        changed = _changed_fraction(before, after)
        lap(f"picture changed on {changed:.1%} of its pixels")
        assert changed > 0.05, f"{FRONTEND}: the picture barely changed ({changed:.1%}) over the clip"
