"""What the browser tests share: JupyterLab's and Chromium's processes, and driving a notebook's viewer.

The fixtures that start them are in ``conftest.py``; the tests are ``test_viewers.py`` (notebooks 05
and 01) and ``test_clip_player.py`` (notebook 06).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import socket
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
LAB_MAJOR = int(version("jupyterlab").split(".")[0])
WIDGETS_MAJOR = int(version("ipywidgets").split(".")[0])
FRONTEND = f"jupyterlab{LAB_MAJOR}-ipywidgets{WIDGETS_MAJOR}"  # e.g. jupyterlab3-ipywidgets7
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS") or REPO / "artifacts" / "browser") / FRONTEND

# Chromium's background services try to reach Google; on a closed network every attempt is refused.
CHROMIUM_FLAGS = [
    "--no-sandbox",  # needed as root; harmless otherwise
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOW_TO_ENABLE = (
    "The browser test needs Debian's Chromium and the playwright package (never its own browser "
    "download): `apt-get install -y chromium chromium-driver` and "
    "`PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 pip install playwright`."
)
COMMON = ("road", "car", "sky")  # classes in nearly every CamVid frame
# Limits for a failure, not expected times: a busy machine is several times slower than CI.
START_TIMEOUT = 90  # s: JupyterLab answering; a kernel started and idle
RUN_ALL_TIMEOUT = 240  # s: smoke mode loads the model and predicts a few frames
STEP_TIMEOUT = 45  # s: one redraw after a widget move (a new frame runs the model)

# What every redraw of the viewer prints, e.g.
# "frame 1: 0016E5_08151  view=errors  opacity=0.55  class=car  frame mIoU 0.412"
LINE = re.compile(
    r"frame (?P<frame>\d+): (?P<stem>\S+)\s+view=(?P<view>.+?)\s+opacity=(?P<opacity>\d+\.\d+)"
    r"\s+class=(?P<cls>.+?)\s+frame mIoU (?P<miou>\d+\.\d+|nan)\s*$",
    re.MULTILINE,
)
# What the viewer shows while the model runs on a frame it has not seen: "predicting frame 1: <stem> …"
BUSY = re.compile(r"predicting frame (?P<frame>\d+): (?P<stem>\S+) …")
# What every redraw of notebook 01's frame browser prints, e.g.
# "frame 1: 0001TP_006690  Road 27%, Sky 21%, Building 19%  void 4%"
BROWSER_LINE = re.compile(
    r"frame (?P<frame>\d+): (?P<stem>\S+)\s+(?P<top>\S+ \d+%(, \S+ \d+%)*)\s+void (?P<void>\d+)%\s*$",
    re.MULTILINE,
)


# ---------------------------------------------------------------------------------------------
# Processes: everything this test starts is stopped by its own pid, also when the test fails.


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """Return (parent pid, start time) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parens
    return int(fields[1]), int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _descendants(root: int) -> dict[int, int]:
    """Return {pid: start time} of every live descendant of ``root`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))):
            children.setdefault(stat[0], []).append(int(entry.name))
            starts[int(entry.name)] = stat[1]
    found, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = starts[child]
            todo.append(child)
    return found


def _kill(processes: dict[int, int]) -> None:
    """SIGKILL each pid that is still the same process (same start time), never a reused pid."""
    for pid, start in processes.items():
        stat = _proc_stat(pid)
        if stat and stat[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ---------------------------------------------------------------------------------------------
# Skip or fail when the browser is missing.


def _require(what_is_missing: str) -> None:
    message = f"{what_is_missing}. {HOW_TO_ENABLE}"
    if os.environ.get("CAMVID_REQUIRE_BROWSER", "").strip() in ("1", "true", "yes"):
        pytest.fail(f"CAMVID_REQUIRE_BROWSER is set but {message}", pytrace=False)
    pytest.skip(message)


# ---------------------------------------------------------------------------------------------
# JupyterLab on loopback, with throwaway folders.


@dataclass
class Lab:
    url: str
    token: str
    root: Path  # the folder JupyterLab serves; notebooks are copied here

    def api(self, path: str, method: str = "GET") -> bytes:
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read()


def _write_settings(settings_dir: Path) -> None:
    """User settings: no news pop-up, no kernel dialog, no autosave, every cell kept in the DOM.

    JupyterLab 3.6 has no news, no windowing and no kernel dialog to turn off, and rejects a whole
    settings file that names a property it does not know.
    """
    settings = {"@jupyterlab/docmanager-extension/plugin": {"autosave": False}}
    if LAB_MAJOR >= 4:
        settings |= {
            "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
            "@jupyterlab/notebook-extension/tracker": {
                "windowingMode": "none",
                "autoStartDefaultKernel": True,
            },
        }
    for plugin, values in settings.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# Driving a notebook and its viewer.


def _shot(locator, path: Path | None = None) -> Image.Image:
    png = locator.screenshot(path=path, animations="disabled")
    return Image.open(io.BytesIO(png)).convert("RGB")


def _changed_fraction(before: Image.Image, after: Image.Image) -> float:
    """Return the fraction of pixels that differ (1.0 when the sizes differ)."""
    if before.size != after.size:
        return 1.0
    return float((np.asarray(before) != np.asarray(after)).any(axis=2).mean())


# What a viewer looks like when rendered, checked in the page: its Output widget visible and showing
# text, each image decoded and visible. A blank render (an empty box, a 0x0 image) fails here.
RENDER_PROBLEMS = """cell => {
    const problems = [];
    const size = e => {
        const b = e.getBoundingClientRect();
        return `${Math.round(b.width)}x${Math.round(b.height)} px`;
    };
    const shown = e => { const b = e.getBoundingClientRect();
        return b.width >= 10 && b.height >= 10
            && e.checkVisibility({opacityProperty: true, visibilityProperty: true}); };
    const outputs = [...cell.querySelectorAll('.widget-output')];
    if (!outputs.length) problems.push('no Output widget is drawn');
    outputs.forEach(o => {
        if (!shown(o)) problems.push(`its Output widget is not visible (${size(o)})`);
        if (!o.innerText.trim()) problems.push('its Output widget shows no text');
    });
    const images = [...cell.querySelectorAll('.jp-OutputArea-output img')];
    if (images.length < 2) problems.push(`it shows ${images.length} images instead of 2`);
    images.forEach((image, i) => {
        if (!image.complete || !image.naturalWidth) problems.push(`image ${i} holds no decoded picture`);
        if (!shown(image)) problems.push(`image ${i} is not visible (${size(image)})`);
    });
    return problems;
}"""

# Record, from now on, what the viewer's Output widget shows and whether its controls are disabled,
# at every change of the cell's DOM: a busy state shorter than any polling interval is still seen.
WATCH = """cell => {
    const seen = window.__viewerSeen = [];
    const controls = () => ({
        select: [...cell.querySelectorAll('.widget-dropdown select')].map(e => e.disabled),
        buttons: [...cell.querySelectorAll('.widget-toggle-buttons button')].map(e => e.disabled),
        readouts: [...cell.querySelectorAll('.widget-slider .widget-readout')]
            .map(e => e.contentEditable === 'false'),
    });
    const record = () => seen.push({
        text: [...cell.querySelectorAll('.widget-output')].map(o => o.innerText).join('\\n'),
        disabled: controls(),
    });
    window.__viewerObserver?.disconnect();
    window.__viewerObserver = new MutationObserver(record);
    window.__viewerObserver.observe(
        cell, {subtree: true, childList: true, characterData: true, attributes: true});
    record();
}"""


def _all_disabled(state: dict) -> bool:
    return all(flags and all(flags) for flags in state.values())


def _none_disabled(state: dict) -> bool:
    return not any(any(flags) for flags in state.values())


class Viewer:
    """The cell whose output holds a viewer's ``frame`` slider, as a learner sees it.

    ``pattern`` is the line the viewer prints on each redraw; ``picker`` says whether the viewer
    has a class picker (notebook 05's viewer) or not (notebook 01's frame browser).
    """

    def __init__(self, page, shots: Path, pattern: re.Pattern = LINE, picker: bool = True):
        self.page, self.shots, self.pattern, self.step, self.problems = page, shots, pattern, 0, []
        label = lambda text: page.locator(".widget-label", has_text=re.compile(rf"^\s*{text}\s*$"))
        self.frame = page.locator(".widget-slider").filter(has=label("frame"))
        self.opacity = page.locator(".widget-slider").filter(has=label("opacity"))
        self.classes = page.locator(".widget-dropdown").filter(has=label("class"))
        cell = page.locator(".jp-CodeCell").filter(has=self.frame)
        self.cell = cell.filter(has=self.classes) if picker else cell
        self.output = self.cell.locator(".widget-output")
        self.images = self.cell.locator(".jp-OutputArea-output :is(img, canvas)")

    def found(self) -> None:
        """Fail unless exactly one cell shows this viewer, saying what the last cell shows instead."""
        if self.cell.count() == 1:
            return
        last = self.page.locator(".jp-CodeCell").last.locator(".jp-Cell-outputArea")
        shown = last.inner_text().strip()[:300] if last.count() else ""
        pytest.fail(
            f"{FRONTEND}: {self.cell.count()} cells show the viewer's 'frame' slider instead of one; "
            f"the last cell's output reads {shown!r} (blank: the widgets did not render)"
        )

    def line(self) -> dict | None:
        """Return the fields of the last line the viewer printed in its Output widget, or None."""
        matches = list(self.pattern.finditer("\n".join(self.output.all_inner_texts())))
        return matches[-1].groupdict() if matches else None

    def wait_for_line(self, timeout: float = STEP_TIMEOUT, **expected) -> dict:
        """Wait until the printed line has the ``expected`` values; fail naming what it says."""
        deadline = time.monotonic() + timeout
        while (line := self.line()) is None or any(line[k] != v for k, v in expected.items()):
            if time.monotonic() > deadline:
                shown = "\n".join(self.output.all_inner_texts()).strip()
                blank = "; ".join(self.cell.evaluate(RENDER_PROBLEMS)) or "none"
                pytest.fail(
                    f"{FRONTEND}: the viewer did not print {expected} within {timeout} s (it stopped "
                    f"responding or renders blank); its Output widget shows {shown!r}; "
                    f"blank parts: {blank}"
                )
            time.sleep(0.25)
        return line

    def check_rendered(self, name: str) -> None:
        """Fail if the viewer is blank: no visible printed line, an image empty, hidden or 0x0."""
        if problems := self.cell.evaluate(RENDER_PROBLEMS):
            pytest.fail(f"{FRONTEND}: the viewer renders blank at '{name}': " + "; ".join(problems))

    def layout_problems(self) -> list[str]:
        """Return what is wrong with how the viewer's images sit: stretched, or past the cell's edge."""
        return self.cell.evaluate(
            """cell => {
                const area = cell.querySelector('.jp-Cell-outputArea').getBoundingClientRect();
                const images = cell.querySelectorAll('.jp-OutputArea-output :is(img, canvas)');
                return [...images].flatMap((image, i) => {
                    const box = image.getBoundingClientRect(), problems = [];
                    const natural = image.naturalWidth
                        ? image.naturalWidth / image.naturalHeight : image.width / image.height;
                    const shown = box.width / box.height;
                    if (Math.abs(shown / natural - 1) > 0.02)
                        problems.push(`image ${i} is drawn ${Math.round(box.width)}x${Math.round(box.height)}`
                            + ` px: aspect ${shown.toFixed(2)} instead of ${natural.toFixed(2)}`);
                    if (box.right > area.right + 1)
                        problems.push(`image ${i} reaches ${Math.round(box.right - area.right)} px`
                            + ' past the right edge of the cell');
                    // the legend, the last image, at its own size (its text the notebook's size)
                    // unless the cell is narrower: never stretched up or shrunk to a share of the width
                    const own = Math.min(image.naturalWidth, area.width);
                    if (i === images.length - 1 && Math.abs(box.width / own - 1) > 0.02)
                        problems.push(`the legend (image ${i}) is drawn ${Math.round(box.width)} px wide,`
                            + ` not at its own ${image.naturalWidth} px`);
                    return problems;
                });
            }"""
        )

    def pictures(self, name: str | None = None) -> list[Image.Image]:
        """Screenshot every image in the viewer's output (the frame, the IoU chart), in page order."""
        count = self.images.count()
        assert count, f"{FRONTEND}: the viewer's output shows no image"
        paths = [self.shots / f"{self.step:02d}-{name}-image{i}.png" if name else None for i in range(count)]
        return [_shot(self.images.nth(i), paths[i]) for i in range(count)]

    def snapshot(self, name: str) -> list[Image.Image]:
        """Screenshot the whole viewer cell (kept for people), check it is not blank, return its images."""
        self.step += 1
        _shot(self.cell, self.shots / f"{self.step:02d}-{name}-viewer.png")
        self.check_rendered(name)
        self.problems += [f"{name}: {problem}" for problem in self.layout_problems()]
        pictures = self.pictures(name)
        for i, picture in enumerate(pictures):
            if np.asarray(picture).reshape(-1, 3).std(axis=0).max() < 1:
                pytest.fail(f"{FRONTEND}: at '{name}' image {i} of the viewer is one flat colour (blank)")
        return pictures

    def after(self, name: str, before: list[Image.Image], **expected) -> tuple[dict, list[Image.Image]]:
        """Wait for the new line, then for an image to differ from ``before`` and settle."""
        line = self.wait_for_line(**expected)
        deadline = time.monotonic() + STEP_TIMEOUT
        previous = None
        while True:
            self.page.wait_for_timeout(300)
            current = self.pictures()
            moved = max(map(_changed_fraction, before, current)) if len(current) == len(before) else 1.0
            if moved > 0.01 and current == previous:
                break
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{FRONTEND}: after the {name} change the viewer's images differ in only {moved:.2%}"
                    " of pixels"
                )
            previous = current
        return line, self.snapshot(name)

    def watch(self) -> None:
        """Start recording what the viewer shows at every change (read back with ``seen``)."""
        self.cell.evaluate(WATCH)

    def seen(self) -> list[dict]:
        """Stop recording; return each recorded state: the Output widget's text, which controls were
        disabled."""
        return self.page.evaluate(
            "() => { window.__viewerObserver.disconnect(); return window.__viewerSeen; }"
        )


def move(slider, before: str) -> str:
    """Press the right arrow on the slider's focused handle (left at the maximum); return its readout.

    The handle is noUiSlider's in ipywidgets 8 and jQuery UI's in ipywidgets 7; both take arrow keys.
    """
    handle = slider.locator(".noUi-handle, .ui-slider-handle").first
    readout = slider.locator(".widget-readout")
    for key in ("ArrowRight", "ArrowLeft"):
        handle.focus()
        handle.press(key)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            if float(now := readout.inner_text().strip()) != float(before):
                return now
            time.sleep(0.1)
    pytest.fail(f"the slider did not move from {before} with the arrow keys")


def open_notebook(context, lab: Lab, notebook: Path):
    """Copy ``notebook`` into the server's folder, open it in a fresh workspace and wait for its kernel."""
    shutil.copy(notebook, lab.root / notebook.name)
    page = context.new_page()
    page.goto(f"{lab.url}/lab/workspaces/{notebook.stem}/tree/{notebook.name}?token={lab.token}")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=START_TIMEOUT * 1000)
    # The indicator says "idle" before any kernel exists: also wait for the kernel's name.
    page.wait_for_function(
        """() => {
            const name = document.querySelector('.jp-NotebookPanel-toolbar .jp-KernelName');
            const state = document.querySelector('.jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator');
            return name && !/^\\s*(No Kernel)?\\s*$/.test(name.textContent)
                && state && state.dataset.status === 'idle';
        }""",
        timeout=START_TIMEOUT * 1000,
    )
    return page


def run_all_cells(page) -> None:
    """Run > Run All Cells, then wait until every code cell has run; fail on the first traceback.

    JupyterLab 3.6 sometimes ignores the menu command while the notebook it just opened is not yet
    the current one: the notebook is clicked first, and the command repeated while no cell has started.
    """
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt")
    started = lambda: any(text.strip() != "[ ]:" for text in prompts.all_inner_texts())
    for attempt in range(3):
        if attempt:
            print(f"Run All Cells started no cell in 10 s; attempt {attempt + 1}")
        page.locator(".jp-Notebook .jp-Cell").first.click()
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        deadline = time.monotonic() + 10
        while not started() and time.monotonic() < deadline:
            time.sleep(0.25)
        if started():
            break
    deadline = time.monotonic() + RUN_ALL_TIMEOUT
    while True:
        state = page.evaluate(
            """() => ({
                prompts: [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
                    .map(p => p.textContent.trim()),
                errors: [...document.querySelectorAll(
                    '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
                    .map(e => e.textContent).filter(t => t.includes('Traceback')
                        || /^\\w*Error\\b/m.test(t)),
                dialog: document.querySelector('.jp-Dialog')?.innerText,
            })"""
        )
        if state["dialog"]:
            pytest.fail(f"a JupyterLab dialog covers the notebook: {state['dialog']!r}")
        if state["errors"]:
            pytest.fail("a cell failed in JupyterLab:\n" + state["errors"][0][-3000:])
        if all(re.fullmatch(r"\[\d+\]:", p) for p in state["prompts"]):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"Run All Cells did not finish in {RUN_ALL_TIMEOUT} s; prompts: {state['prompts']}")
        time.sleep(0.5)


def choose_view(cell, view: str) -> None:
    """Pick a view in the view selector, whether it is drawn as toggle buttons, radio buttons or a menu."""
    for candidate in (
        cell.get_by_role("button", name=view, exact=True),
        cell.get_by_role("radio", name=view),
    ):
        if candidate.count():
            candidate.first.click()
            return
    cell.locator("select").filter(
        has=cell.page.locator("option", has_text=re.compile(rf"^{view}$"))
    ).first.select_option(label=view)


@contextmanager
def screenshot_on_failure(page, path: Path):
    try:
        yield
    except BaseException:  # pytest.fail raises a BaseException
        try:
            page.screenshot(path=path, full_page=True)
        except Exception as error:  # a crashed page must not hide the first failure
            print(f"no failure screenshot: {error}")
        raise


def check_busy(viewer: Viewer, seen: list[dict], frame: str, stem: str) -> None:
    """Fail unless, while the model ran on ``frame``, the viewer said so and its controls were disabled."""
    texts = list(dict.fromkeys(state["text"].strip() for state in seen))
    busy = [m for text in texts if (m := BUSY.search(text))]
    if not any(m["frame"] == frame and m["stem"] == stem for m in busy):
        pytest.fail(
            f"{FRONTEND}: while frame {frame} was predicted the viewer never showed "
            f"'predicting frame {frame}: {stem} …'; it showed {texts}"
        )
    if not any(_all_disabled(state["disabled"]) for state in seen):
        pytest.fail(f"{FRONTEND}: the controls were never all disabled while frame {frame} was predicted")
    viewer.watch()  # its first record is the state now
    if not _none_disabled(viewer.seen()[0]["disabled"]):
        pytest.fail(f"{FRONTEND}: the controls stay disabled after frame {frame} was drawn")


@contextmanager
def session(context, lab: Lab, notebook: Path, shots: Path):
    """Yield (page, lap) for one notebook; keep its timings and, on failure, a page screenshot."""
    shots.mkdir(parents=True, exist_ok=True)
    for stale in [*shots.glob("*.png"), *shots.glob("*.txt")]:
        stale.unlink(missing_ok=True)
    start, timings = time.monotonic(), []
    lap = lambda what: timings.append(f"{time.monotonic() - start:6.1f} s  {what}")
    page = open_notebook(context, lab, notebook)
    try:
        with screenshot_on_failure(page, shots / "failure-page.png"):
            lap(f"notebook open in {FRONTEND}, kernel idle")
            run_all_cells(page)
            lap("all cells run")
            yield page, lap
            page.screenshot(path=shots / "page.png", full_page=True)
    finally:
        page.close()
        (shots / "timings.txt").write_text("\n".join(timings) + "\n")
        print("\n".join(timings))


def exercise_viewer(context, lab: Lab, notebook: Path, shots: Path) -> None:
    """Open ``notebook``, run it, and check that every control of its viewer redraws it."""
    with session(context, lab, notebook, shots) as (page, lap):
        viewer = Viewer(page, shots)
        viewer.found()
        first = viewer.wait_for_line()
        viewer.cell.scroll_into_view_if_needed()
        pictures = viewer.snapshot("start")

        # Frame slider: one step shows a neighbouring frame, another file, which the model has not
        # seen yet: the viewer first says it is predicting it, with its controls disabled.
        viewer.watch()
        frame = move(viewer.frame, first["frame"])
        line, pictures = viewer.after("frame", pictures, frame=frame)
        assert line["stem"] != first["stem"], "a neighbouring frame should be another file"
        check_busy(viewer, viewer.seen(), frame, line["stem"])
        lap("frame slider moved")

        # Opacity slider: one step; the line shows what the slider's readout shows.
        opacity = f"{float(move(viewer.opacity, line['opacity'])):.2f}"
        line, pictures = viewer.after("opacity", pictures, frame=frame, opacity=opacity)
        lap("opacity slider moved")

        # Class picker: another class, one that is in nearly every CamVid frame if offered.
        select = viewer.classes.locator("select")
        options = [o.strip() for o in select.locator("option").all_inner_texts()]
        others = [o for o in options if o != line["cls"]]
        choice = min(others, key=lambda o: COMMON.index(o.lower()) if o.lower() in COMMON else len(COMMON))
        select.select_option(label=choice)
        line, pictures = viewer.after("class", pictures, frame=frame, opacity=opacity, cls=choice)
        lap("class picked")

        # View selector: the error map.
        choose_view(viewer.cell, "errors")
        line, pictures = viewer.after(
            "view", pictures, frame=frame, opacity=opacity, cls=choice, view="errors"
        )
        assert line["miou"] == "nan" or 0 <= float(line["miou"]) <= 1
        lap("view switched")

        # Last, so that a broken control is reported first: what the learner sees is undistorted.
        if viewer.problems:
            pytest.fail(
                f"{FRONTEND}: the viewer's images are laid out wrongly in a 1400x1000 window:\n"
                + ("\n".join(viewer.problems))
            )


def exercise_frame_browser(context, lab: Lab, notebook: Path, shots: Path) -> None:
    """Open ``notebook``, run it, and check that its frame browser's slider shows another frame."""
    with session(context, lab, notebook, shots) as (page, lap):
        viewer = Viewer(page, shots, pattern=BROWSER_LINE, picker=False)
        viewer.found()
        first = viewer.wait_for_line()
        viewer.cell.scroll_into_view_if_needed()
        pictures = viewer.snapshot("start")
        frame = move(viewer.frame, first["frame"])
        line, _ = viewer.after("frame", pictures, frame=frame)
        assert line["stem"] != first["stem"], "a neighbouring frame should be another file"
        lap("frame slider moved")
        if viewer.problems:
            pytest.fail(
                f"{FRONTEND}: the frame browser's images are laid out wrongly:\n" + "\n".join(viewer.problems)
            )
