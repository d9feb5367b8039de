"""The viewers' wiring (``camvid_utils.widgets``), driven without a browser on the bundled sample.

Written against the API that ipywidgets 7.7.1 (Google Colab) and 8 share: CI runs this file in both
(``tests/requirements-ipywidgets7.txt``). ``browser/test_viewers.py`` checks what a browser renders.
"""

from __future__ import annotations

import io
import re

import ipywidgets
import numpy as np
import pytest
import torch
from ipywidgets.widgets.widget_link import Link
from PIL import Image

from camvid_utils import viz, widgets
from camvid_utils.checkpoint import CheckpointError, LoadedModel
from camvid_utils.data import CAMVID11_CLASSES, CAMVID11_COLORS, CamVid
from camvid_utils.locations import sample_root
from camvid_utils.metrics import ConfusionMatrix
from camvid_utils.model import UNet
from camvid_utils.transforms import MEAN, STD

LINE = re.compile(
    r"frame (\d+): (\S+)  view=(prediction|ground truth|errors)  opacity=(\d\.\d\d)  "
    r"class=(\S+)  frame mIoU (\d\.\d\d\d|nan)"
)


def printed_lines(capsys) -> list[str]:
    """Lines printed since the last call, without the terminal codes clear_output emits outside Jupyter."""
    text = capsys.readouterr().out.replace("\x1b[2K", "")
    return [line for line in re.split(r"[\r\n]", text) if line.strip()]


def controls(box) -> dict:
    """Every control inside a widget container, by description."""
    found, stack = {}, [box]
    while stack:
        widget = stack.pop()
        stack += list(getattr(widget, "children", ()))
        if getattr(widget, "description", ""):
            found[widget.description] = widget
    return found


def shown_images(box) -> list:
    """Every ipywidgets.Image inside a widget container."""
    found, stack = [], [box]
    while stack:
        widget = stack.pop()
        stack += list(getattr(widget, "children", ()))
        found += [widget] if isinstance(widget, ipywidgets.Image) else []
    return found


@pytest.fixture(scope="module")
def sample_val() -> CamVid:
    return CamVid(sample_root(), "val", class_set="camvid11")


@pytest.fixture(scope="module")
def tiny_model() -> LoadedModel:
    torch.manual_seed(0)
    model = UNet(num_classes=11, base_channels=4, depth=2).eval()
    return LoadedModel(model, CAMVID11_CLASSES, CAMVID11_COLORS, "camvid11", MEAN, STD, (48, 64), {})


@pytest.fixture()
def viewer(tiny_model, sample_val, monkeypatch, capsys):
    calls = []
    real_predict = widgets.predict
    monkeypatch.setattr(
        widgets, "predict", lambda loaded, image: calls.append(1) or real_predict(loaded, image)
    )
    box = widgets.prediction_viewer(tiny_model, sample_val)
    box.predict_calls = calls
    return box


def test_frame_browser_shows_the_frame_and_its_label(sample_val, capsys):
    box = widgets.frame_browser(sample_val)
    slider = controls(box)["frame"]
    assert (slider.min, slider.max, slider.continuous_update) == (0, len(sample_val) - 1, False)
    capsys.readouterr()
    slider.value = 2
    (line,) = printed_lines(capsys)
    assert line.startswith(f"frame 2: {sample_val.frames[2].stem}  ")
    np.testing.assert_array_equal(box.update(), viz.colorize(sample_val.load_mask(2), sample_val.colors))


def test_viewer_controls(viewer, sample_val):
    found = controls(viewer)
    assert found["frame"].continuous_update is False and found["frame"].max == len(sample_val) - 1
    assert list(found["view"].options) == ["prediction", "ground truth", "errors"]
    assert found["opacity"].value == 0.5
    labels = [label for label, _ in found["class"].options]
    assert labels == ["none", *CAMVID11_CLASSES]


def test_viewer_prints_one_line_per_redraw_with_the_frame_miou(viewer, tiny_model, sample_val, capsys):
    found = controls(viewer)
    printed_lines(capsys)
    found["frame"].value = 1
    busy, line = printed_lines(capsys)  # a frame not seen before waits for the model
    assert busy == f"predicting frame 1: {sample_val.frames[1].stem} …"
    match = LINE.fullmatch(line)
    assert match, line
    image = torch.from_numpy(sample_val.load_image(1)).permute(2, 0, 1)
    cm = ConfusionMatrix(11)
    cm.update(widgets.predict(tiny_model, image), torch.from_numpy(sample_val.load_mask(1)).long())
    expected = f"frame 1: {sample_val.frames[1].stem}  view=prediction  opacity=0.50  class=none"
    assert line == f"{expected}  frame mIoU {cm.miou():.3f}"
    found["class"].value = CAMVID11_CLASSES.index("Road")
    found["opacity"].value = 0.25
    found["view"].value = "errors"
    lines = printed_lines(capsys)
    assert len(lines) == 3 and all(LINE.fullmatch(line) for line in lines)
    assert lines[-1].startswith(
        f"frame 1: {sample_val.frames[1].stem}  view=errors  opacity=0.25  class=Road"
    )


def test_viewer_caches_predictions_per_frame(viewer):
    found = controls(viewer)
    assert len(viewer.predict_calls) == 1, "building the viewer predicts the first frame"
    found["opacity"].value = 0.9
    found["view"].value = "errors"
    assert len(viewer.predict_calls) == 1, "redrawing the same frame must not predict again"
    found["frame"].value = 2
    found["frame"].value = 0
    assert len(viewer.predict_calls) == 2


def test_viewer_says_it_is_busy_and_disables_its_controls_while_the_model_runs(
    tiny_model, sample_val, monkeypatch, capsys
):
    box = widgets.prediction_viewer(tiny_model, sample_val)
    found = controls(box)
    seen = []  # (lines printed so far, which controls were disabled) when predict is called
    real_predict = widgets.predict

    def watched_predict(loaded, image):
        seen.append((printed_lines(capsys), {name: c.disabled for name, c in found.items()}))
        return real_predict(loaded, image)

    monkeypatch.setattr(widgets, "predict", watched_predict)
    printed_lines(capsys)
    found["frame"].value = 2
    ((before, disabled),) = seen
    assert before == [f"predicting frame 2: {sample_val.frames[2].stem} …"], "shown before the model runs"
    assert disabled == dict.fromkeys(["frame", "view", "opacity", "class"], True)
    (after,) = printed_lines(capsys)
    assert LINE.fullmatch(after) and after.startswith("frame 2: ")
    assert not any(c.disabled for c in found.values()), "the controls work again once the frame is drawn"

    found["view"].value = "errors"  # the same frame again: cached, so no busy line
    found["frame"].value = 0
    assert len(seen) == 1 and all(LINE.fullmatch(line) for line in printed_lines(capsys))


def test_viewer_controls_come_back_when_the_model_fails(tiny_model, sample_val, monkeypatch):
    box = widgets.prediction_viewer(tiny_model, sample_val)
    found = controls(box)

    def broken_predict(loaded, image):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(widgets, "predict", broken_predict)
    with pytest.raises(RuntimeError, match="out of memory"):
        found["frame"].value = 1
    assert not any(c.disabled for c in found.values()), "a failed prediction must not lock the viewer"


def test_viewer_controls_change_the_picture(viewer, sample_val):
    found = controls(viewer)
    image = sample_val.load_image(0)
    pred = viewer.predicted(0)[2].long()
    mask = torch.from_numpy(sample_val.load_mask(0)).long()

    found["opacity"].value = 0.0
    np.testing.assert_array_equal(viewer.update(), image)
    shown = [w.value for w in shown_images(viewer)]
    assert viz.to_png(image) in shown, "the picture widget shows what update() drew"
    found["opacity"].value = 1.0
    np.testing.assert_array_equal(viewer.update(), viz.colorize(pred, sample_val.colors))
    found["view"].value = "ground truth"
    np.testing.assert_array_equal(viewer.update(), viz.colorize(mask, sample_val.colors))
    found["view"].value = "errors"
    np.testing.assert_array_equal(viewer.update(), viz.error_map(pred, mask))

    road = CAMVID11_CLASSES.index("Road")
    found["view"].value = "ground truth"
    found["class"].value = road
    picked = viewer.update()
    assert (picked[mask.numpy() == road] == viz.HIGHLIGHT_COLOR).all()
    np.testing.assert_array_equal(
        picked[mask.numpy() != road], viz.highlight_class(image, mask, road)[mask.numpy() != road]
    )
    found["view"].value = "errors"
    counted = ((pred == road) | (mask == road)).numpy()
    errors = viz.error_map(pred, mask)
    drawn = viewer.update()
    np.testing.assert_array_equal(drawn[counted], errors[counted])
    lit = errors[~counted].any(1)  # pixels outside the class that are not black already
    assert lit.any() and (drawn[~counted][lit].astype(int).sum(1) < errors[~counted][lit].sum(1)).all()


def test_viewer_opens_on_the_start_frame(tiny_model, sample_val, capsys):
    widgets.prediction_viewer(tiny_model, sample_val, start=2)
    _, line = printed_lines(capsys)
    assert line.startswith(f"frame 2: {sample_val.frames[2].stem}  view=prediction")
    with pytest.raises(IndexError, match="start=3"):
        widgets.prediction_viewer(tiny_model, sample_val, start=3)


def test_viewer_refuses_a_model_for_other_classes(tiny_model):
    kaggle32 = CamVid(sample_root(), "val", class_set="camvid32")
    with pytest.raises(CheckpointError, match="classes"):
        widgets.prediction_viewer(tiny_model, kaggle32)


# --- pre-rendered viewers for pages without a kernel (CAMVID_STATIC_WIDGETS=1, the site build) ---


def test_static_widgets_reads_its_switch_and_refuses_other_values(monkeypatch):
    monkeypatch.delenv(widgets.STATIC_WIDGETS, raising=False)
    assert widgets.static_widgets() is False
    monkeypatch.setenv(widgets.STATIC_WIDGETS, "1")
    assert widgets.static_widgets() is True
    monkeypatch.setenv(widgets.STATIC_WIDGETS, "yes")
    with pytest.raises(ValueError, match="CAMVID_STATIC_WIDGETS='yes'"):
        widgets.static_widgets()


def open_widgets() -> dict:
    """Every widget not closed, by model id (ipywidgets 8 keeps them in ``widget._instances``)."""
    from ipywidgets.widgets import widget

    return dict(getattr(widget, "_instances", None) or ipywidgets.Widget.widgets)


# The site is built with ipywidgets 8; .ci/run's ipywidgets 7 run deselects these (-m "not ipywidgets8")
needs_stack = pytest.mark.ipywidgets8


def test_without_stack_static_mode_returns_the_live_viewer(sample_val, monkeypatch):
    """ipywidgets 7 (Colab's) has no ``Stack``: CAMVID_STATIC_WIDGETS=1 must leave the viewer live
    and working there, not fail. Simulated on ipywidgets 8 by removing ``Stack``."""
    monkeypatch.setenv(widgets.STATIC_WIDGETS, "1")
    monkeypatch.delattr(widgets.widgets, "Stack", raising=False)
    viewer = widgets.frame_browser(sample_val)
    assert not hasattr(viewer, "stack")
    before = [image.value for image in shown_images(viewer)]
    controls(viewer)["frame"].value = 1  # the live viewer redraws through its Python callback
    assert [image.value for image in shown_images(viewer)] != before


@needs_stack
def test_a_prerendered_browser_holds_every_frame_as_its_own_page(sample_val, monkeypatch):
    live = widgets.frame_browser(sample_val)
    live_label = shown_images(live)[1].value
    monkeypatch.setenv(widgets.STATIC_WIDGETS, "1")
    static = widgets.frame_browser(sample_val)
    pages = static.stack.children
    assert len(pages) == len(sample_val) and static.slider.max == len(sample_val) - 1
    # every page holds its own frame's caption and pictures, and the pages differ
    for index, page in enumerate(pages):
        assert page.children[0].value.startswith(f"<code>frame {index}: {sample_val.frames[index].stem}")
    assert len({shown_images(page)[1].value for page in pages}) == len(pages)
    # the label is the live viewer's, re-encoded: same size, same colours but for JPEG's rounding
    from PIL import Image

    first = np.asarray(Image.open(__import__("io").BytesIO(shown_images(pages[0])[1].value)).convert("RGB"))
    reference = np.asarray(
        Image.open(__import__("io").BytesIO(live_label)).convert("RGB").resize(first.shape[1::-1])
    )
    assert np.abs(first.astype(int) - reference.astype(int)).mean() < 12
    # the slider selects the page in the browser: a jslink from its value to the stack's index
    links = [w for w in open_widgets().values() if isinstance(w, Link)]
    assert any(
        link.source == (static.slider, "value") and link.target == (static.stack, "selected_index")
        for link in links
    )


@needs_stack
def test_a_prerendered_player_links_play_to_the_frames_and_drops_the_live_widgets(monkeypatch):
    torch.manual_seed(0)
    images = [torch.randint(0, 255, (3, 24, 32), dtype=torch.uint8) for _ in range(5)]
    preds = [torch.full((24, 32), i, dtype=torch.long) for i in range(5)]
    monkeypatch.setenv(widgets.STATIC_WIDGETS, "1")
    before = set(open_widgets())
    static = widgets.clip_player(images, preds, CAMVID11_COLORS, fps=10)
    play = static.children[0].children[0]
    assert isinstance(play, ipywidgets.Play) and play.interval == 100 and play.max == 4
    assert len(static.stack.children) == 5
    kept = set(open_widgets()) - before

    # only the pre-rendered copy stays open: the live player's big pictures are not saved in a page
    def inside(widget):
        yield widget
        for child in getattr(widget, "children", ()):
            yield from inside(child)

    shown = {w.model_id for w in inside(static)} | {w.model_id for w in inside(static.stack)}
    links = {k for k in kept if isinstance(open_widgets()[k], Link)}
    styles = {k for k in kept if "Style" in type(open_widgets()[k]).__name__
              or isinstance(open_widgets()[k], ipywidgets.Layout)}  # fmt: skip
    assert kept - shown - links - styles == set()
    assert len(links) == 2  # play -> slider -> stack


def test_every_viewer_shows_the_legend_of_its_view(viewer, sample_val, tiny_model):
    columns = widgets.KEY_COLUMNS
    classes = viz.class_key(sample_val.classes, sample_val.colors)
    classes_png = viz.to_png(viz.key_figure(classes, columns), dpi=96)
    errors_png = viz.to_png(viz.key_figure(viz.ERROR_KEY, columns), dpi=96)
    assert classes_png in [w.value for w in shown_images(widgets.frame_browser(sample_val))]
    assert classes_png in [w.value for w in shown_images(viewer)]
    controls(viewer)["view"].value = "errors"
    assert errors_png in [w.value for w in shown_images(viewer)]
    assert classes_png not in [w.value for w in shown_images(viewer)]
    image, mask = sample_val.load_frame(0)
    player = widgets.clip_player([image], [mask], sample_val.colors, masks=[mask], classes=sample_val.classes)
    assert classes_png in [w.value for w in shown_images(player)]
    controls(player)["view"].value = "errors"
    assert errors_png in [w.value for w in shown_images(player)]
    # each legend is drawn at its own size, never scaled down to a share of the output's width
    keys = [w for w in shown_images(viewer) + shown_images(player) if w.value in (classes_png, errors_png)]
    assert keys and all(w.layout.width is None and w.layout.max_width == "100%" for w in keys)
    assert all(w.layout.align_self == "flex-start" for w in keys)  # not stretched to the box's width
    assert Image.open(io.BytesIO(classes_png)).width <= 800  # fits a notebook's output at full size


# the clip player

CLIP_COLORS = [(128, 128, 128), (128, 0, 0), (64, 0, 128)]


def clip(frames: int = 4):
    images = [torch.full((3, 8, 8), 40 * t, dtype=torch.uint8) for t in range(frames)]
    preds = [torch.full((8, 8), t % 3) for t in range(frames)]
    return images, preds


def decoded(image: ipywidgets.Image) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(image.value)).convert("RGB")).astype(int)


def test_the_player_links_play_to_the_frame_slider_and_draws_each_frame():
    images, preds = clip()
    player = widgets.clip_player(images, preds, CLIP_COLORS, masks=preds, names=list("abcd"), fps=10)
    assert player.play.max == 3 and player.play.interval == 100
    first = player.update()
    player.frame.value = 2  # what the Play control does, through the link, in a browser
    second = player.update()
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(
        second, viz.draw_view(images[2], preds[2], CLIP_COLORS, "prediction", preds[2], 0.5)
    )
    assert any(link.source == (player.play, "value") and link.target == (player.frame, "value")
               for link in player.links)  # fmt: skip
    with pytest.raises(ValueError, match="one prediction"):
        widgets.clip_player(images, preds[:2], CLIP_COLORS)


@needs_stack
def test_the_player_holds_every_frame_in_a_page_the_slider_selects_in_the_browser():
    """Play -> slider -> Stack, all linked in the browser: a play-through needs no kernel round trip,
    so every frame can be shown at the clip's rate."""
    images, preds = clip()
    player = widgets.clip_player(images, preds, CLIP_COLORS, masks=preds, names=list("abcd"), fps=10)
    stack = next(w for w in player.children if isinstance(w, ipywidgets.Stack))
    assert any(link.source == (player.frame, "value") and link.target == (stack, "selected_index")
               for link in player.links)  # fmt: skip
    assert len(stack.children) == 4
    for index, page in enumerate(stack.children):
        label, picture = page.children
        assert label.value.startswith(f"<code>frame {index}/3: {'abcd'[index]}")
        expected = viz.draw_view(images[index], preds[index], CLIP_COLORS, "prediction", preds[index], 0.5)
        assert np.abs(decoded(picture) - expected).mean() < 3  # JPEG's rounding only
    # a new view redraws the whole clip, not only the frame in sight
    before = [page.children[1].value for page in stack.children]
    controls(player)["view"].value = "errors"
    after = [page.children[1].value for page in stack.children]
    assert all(a != b for a, b in zip(after, before, strict=True))
    assert "view=errors" in stack.children[3].children[0].value


def test_without_stack_the_player_redraws_one_picture_through_the_kernel(monkeypatch):
    """ipywidgets 7 (Colab's) has no Stack: one picture, redrawn by the frame slider's callback."""
    monkeypatch.delattr(widgets.widgets, "Stack", raising=False)
    images, preds = clip()
    player = widgets.clip_player(images, preds, CLIP_COLORS, names=list("abcd"), fps=10)
    pictures = shown_images(player)
    assert len(pictures) == 2  # the frame and its legend
    frame_picture = next(p for p in pictures if p.format == "png" and decoded(p).shape[:2] == (8, 8))
    player.frame.value = 3
    np.testing.assert_array_equal(
        decoded(frame_picture), viz.draw_view(images[3], preds[3], CLIP_COLORS, "prediction", None, 0.5)
    )


def test_a_dataset_without_void_gets_a_legend_without_void(tmp_path):
    """A folder whose classes.csv has no void row never shows void: its legend does not list it."""
    from own_folders import road_folder  # noqa: PLC0415 (the folder helpers import the test config)

    road = CamVid(road_folder(tmp_path / "road"), "val")
    assert not road.has_void and CamVid(sample_root(), "val", class_set="camvid11").has_void
    key = [(name, (0, 0, 0) if name == "background" else (128, 64, 128)) for name in ("background", "road")]
    no_void = viz.to_png(viz.key_figure(key, widgets.KEY_COLUMNS), dpi=96)
    assert no_void in [w.value for w in shown_images(widgets.frame_browser(road))]
    assert viz.class_key(road.classes, road.colors, void=False) == key
