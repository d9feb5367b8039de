"""Notebook 06's clip player in JupyterLab, driven in headless Chromium: Play advances the frames.

nbval runs the notebook's cells but never presses a button. This test reuses the JupyterLab server,
the browser and the session of ``tests/browser/conftest.py`` and ``harness.py`` (Debian's Chromium
through Playwright, ``CAMVID_SMOKE=1``; skipped without a browser, a failure under
``CAMVID_REQUIRE_BROWSER=1``), runs notebook 06, presses the player's Play button and checks that
the frame the player shows moves on to the clip's last frame, through frames in between, and that
the picture changes. The Play control is
linked to the frame slider in the browser (``jslink``), so this is the path a learner's click takes.
With ipywidgets 8 the slider selects a page of a ``Stack`` in the browser too: every frame must be
shown, in order, at no less than 60% of the clip's rate (a margin for a loaded CI machine). With
ipywidgets 7 the picture comes from the kernel (browser -> slider -> kernel -> picture) and may skip
frames, as the player's docstring says. Screenshots and timings go to
``artifacts/browser/<frontend>/video/``.
"""

from __future__ import annotations

import re

import ipywidgets
import pytest

from browser import harness
from browser.harness import ARTIFACTS, FRONTEND, REPO, STEP_TIMEOUT, _changed_fraction, _shot, session

pytestmark = pytest.mark.browser

NOTEBOOK = REPO / "notebooks" / "06_video.ipynb"
RUN_ALL_TIMEOUT = 600  # s: notebook 06 predicts its clip twice, on a CPU shared with the other tests
PLAYER_LINE = re.compile(r"frame (?P<frame>\d+)/(?P<last>\d+): (?P<name>\S+)\s+(?P<seconds>\d+\.\d+) s")
STACKED = hasattr(ipywidgets, "Stack")  # the kernel runs in this environment: its ipywidgets

# Every change of the caption in sight, with its time, until the caption of frame ``last`` shows or ``ms``
# have passed; Play is pressed once watching has begun (requestAnimationFrame: one look a painted frame).
WATCH = """(el, [ms, last]) => new Promise(done => {
    const seen = []; const end = performance.now() + ms;
    const look = () => {
        const shown = Array.from(el.querySelectorAll('.widget-output, code'))
            .filter(e => e.offsetParent !== null).map(e => e.innerText).join(' ');
        if (!seen.length || seen[seen.length - 1][0] !== shown) seen.push([shown, performance.now()]);
        const over = shown.includes(`frame ${last}/${last}:`) || performance.now() > end;
        if (over) done(seen); else requestAnimationFrame(look);
    };
    look();
    el.querySelector('.widget-play button').click();  // the play button, first in 7 and 8
})"""


def _line(cell) -> re.Match | None:
    shown = cell.locator(".widget-output, code").evaluate_all(
        "els => els.filter(e => e.offsetParent !== null).map(e => e.innerText).join(' ')"
    )
    return PLAYER_LINE.search(shown)


def test_play_advances_the_clip_and_the_picture_changes(lab, browser, monkeypatch):
    monkeypatch.setattr(harness, "RUN_ALL_TIMEOUT", RUN_ALL_TIMEOUT)
    shots = ARTIFACTS / "video"
    with session(browser, lab, NOTEBOOK, shots) as (page, lap):
        cell = page.locator(".jp-Cell", has=page.locator(".widget-play")).first
        cell.wait_for()
        cell.scroll_into_view_if_needed()
        first = _line(cell)
        assert first and first["frame"] == "0", f"{FRONTEND}: the player does not open on frame 0: {first}"
        picture = cell.locator(".widget-image:visible").first  # the frame in sight (the legend comes after)
        before = _shot(picture, shots / "frame-first.png")

        last = int(first["last"])
        watched = cell.evaluate(WATCH, [1000 * STEP_TIMEOUT, last])
        seen, times, clip_seconds = [], [], None
        for text, ms in watched:
            line = PLAYER_LINE.search(text)
            if line and (not seen or seen[-1] != int(line["frame"])):
                seen.append(int(line["frame"]))
                times.append(ms / 1000)
            if line and int(line["frame"]) == last:
                clip_seconds = float(line["seconds"])  # frame `last` is shown at last / fps seconds
                break
        lap(f"Play pressed: frames shown {seen}")
        if not seen or seen[-1] != last:
            pytest.fail(f"{FRONTEND}: after Play the player showed frames {seen}, not up to {last}")
        assert len(set(seen) - {0, last}) >= 1, f"Play jumped straight to the end: {seen}"
        if STACKED:  # every frame, in order, at the clip's rate
            assert seen == list(range(last + 1)), f"{FRONTEND}: Play skipped frames: {seen}"
            fps = last / clip_seconds
            rate = last / (times[-1] - times[0])
            lap(f"{rate:.1f} frames shown per second, the clip plays at {fps:.1f}")
            assert rate >= 0.6 * fps, (
                f"{FRONTEND}: {rate:.1f} frames shown per second, the clip is {fps:.1f} fps"
            )
        after = _shot(picture, shots / "frame-last.png")
        changed = _changed_fraction(before, after)
        lap(f"picture changed on {changed:.1%} of its pixels")
        assert changed > 0.05, f"{FRONTEND}: the picture barely changed ({changed:.1%}) over the clip"
