"""The viewers, used the way a learner uses them: JupyterLab in a real browser.

nbval runs the notebooks' cells but never moves a widget. This test starts JupyterLab on loopback
(throwaway config, runtime, settings and workspace folders, a token, ``CAMVID_SMOKE=1``; the fixtures
are in ``conftest.py``, the steps in ``harness.py``), opens a copy of notebook 05 in Debian's Chromium
driven headless by Playwright, runs all cells, then moves the frame slider, the opacity slider, the
class picker and the view selector. After each move it waits for the line the viewer prints
(``frame 1: <stem>  view=...  opacity=0.55  class=car  frame mIoU 0.412``) to show the new values,
and checks that the viewer's images changed by comparing screenshots taken before and after. A new
frame must first show ``predicting frame 1: <stem> …`` with its controls disabled. Last it checks
that no image is stretched or runs past the cell's edge. A second test does the same for notebook
01's frame browser and its one slider. Screenshots, the step timings and JupyterLab's log go to
``artifacts/browser/<frontend>/`` (or ``$BROWSER_ARTIFACTS``) so CI can keep them.

It runs in whichever frontend the environment holds: JupyterLab 4 with ipywidgets 8 (the main
environment) or JupyterLab 3.6 with ipywidgets 7.7.1, what Google Colab ships (CI's second
environment, ``tests/requirements-ipywidgets7.txt``). Both draw the same widget classes
(``.widget-slider``, ``.widget-output``, ...); only the slider's handle and the user settings differ.
Before and after every move the viewer must be rendered, not blank: its printed line visible in its
``Output`` widget, each image decoded, visible and not of one flat colour. A frontend that renders
a box holding an ``Output`` widget blank (widgetsnbextension 3.6.10 does that to ipywidgets 7) fails
here, as does one that shows the widgets' text form (JupyterLab 3.6 with jupyterlab_widgets 3).

Without Chromium or the ``playwright`` package the test is skipped and says how to enable it;
with ``CAMVID_REQUIRE_BROWSER=1`` (set by CI) a missing browser is a failure instead.
``CAMVID_BROWSER_NOTEBOOK=path`` points the test at another copy of the notebook (used to check that
the test fails when the viewer's callback is broken).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from browser.harness import ARTIFACTS, REPO, exercise_frame_browser, exercise_viewer

pytestmark = pytest.mark.browser

NOTEBOOK = REPO / "notebooks" / "05_inspecting_predictions.ipynb"
BROWSER_NOTEBOOK = REPO / "notebooks" / "01_data_exploration.ipynb"


def test_viewer_responds_to_every_control(lab, browser):
    """Every control of notebook 05's viewer redraws it, in JupyterLab in Chromium, as a learner sees it."""
    notebook = Path(os.environ.get("CAMVID_BROWSER_NOTEBOOK") or NOTEBOOK)
    assert notebook.is_file(), f"{notebook} is missing; the browser test drives its viewer"
    exercise_viewer(browser, lab, notebook, ARTIFACTS / notebook.stem)


def test_frame_browser_shows_another_frame(lab, browser):
    """Notebook 01's frame browser renders and its slider shows the next frame and its label."""
    assert BROWSER_NOTEBOOK.is_file(), f"{BROWSER_NOTEBOOK} is missing; the browser test drives its viewer"
    exercise_frame_browser(browser, lab, BROWSER_NOTEBOOK, ARTIFACTS / BROWSER_NOTEBOOK.stem)
