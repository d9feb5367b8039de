"""Drawing functions, checked on tiny hand-made arrays (the widgets that call them: test_widgets.py)."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from PIL import Image

from camvid_utils import viz
from camvid_utils.data import IGNORE_INDEX

COLORS = ((10, 20, 30), (200, 100, 0), (0, 255, 0))
CLASSES = ("road", "sky", "car")


def as_rgb(color) -> tuple[float, float, float]:
    return tuple(round(v, 6) for v in to_rgb(np.asarray(color) / 255))


def facecolor(patch) -> tuple[float, float, float]:
    return tuple(round(v, 6) for v in patch.get_facecolor()[:3])


def bar_labels(ax) -> list[str]:
    return [text.get_text() for text in ax.texts]


# --- pictures as arrays -------------------------------------------------------------------------


def test_colorize_maps_each_id_to_its_colour_and_void_to_black():
    mask = torch.tensor([[0, 1, 2], [2, IGNORE_INDEX, 0]])
    rgb = viz.colorize(mask, COLORS)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8
    expected = [[COLORS[0], COLORS[1], COLORS[2]], [COLORS[2], (0, 0, 0), COLORS[0]]]
    np.testing.assert_array_equal(rgb, np.array(expected, dtype=np.uint8))
    white_void = viz.colorize(mask.numpy(), COLORS, void_color=(255, 255, 255))
    np.testing.assert_array_equal(white_void[1, 1], [255, 255, 255])


def test_overlay_limits_and_midpoint():
    image = torch.tensor([[[0.0, 1.0]], [[0.2, 0.4]], [[1.0, 0.0]]])  # (3, 1, 2) float
    image_hwc = np.array([[[0, 51, 255], [255, 102, 0]]], dtype=np.uint8)
    mask_rgb = np.array([[[100, 100, 100], [200, 0, 50]]], dtype=np.uint8)
    np.testing.assert_array_equal(viz.overlay(image, mask_rgb, 0.0), image_hwc)
    np.testing.assert_array_equal(viz.overlay(image_hwc, mask_rgb, 1.0), mask_rgb)
    half = viz.overlay(image_hwc, mask_rgb, 0.5)
    np.testing.assert_array_equal(half, np.array([[[50, 76, 178], [228, 51, 25]]], dtype=np.uint8))
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay(image_hwc, mask_rgb, 1.5)


def test_error_map_marks_exactly_the_wrong_pixels():
    target = torch.tensor([[0, 1, 2], [IGNORE_INDEX, 1, 1]])
    pred = torch.tensor([[0, 2, 2], [1, 1, 0]])
    rgb = viz.error_map(pred, target)
    wrong = np.array([[False, True, False], [False, False, True]])
    void = np.array([[False, False, False], [True, False, False]])
    assert (rgb[wrong] == viz.WRONG_COLOR).all()
    assert (rgb[~wrong & ~void] == viz.CORRECT_COLOR).all()
    assert (rgb[void] == viz.VOID_COLOR).all(), "void is void whatever was predicted there"
    assert len({viz.WRONG_COLOR, viz.CORRECT_COLOR, viz.VOID_COLOR}) == 3
    np.testing.assert_array_equal(
        viz.error_map(target, target)[~void], np.broadcast_to(viz.CORRECT_COLOR, (5, 3))
    )
    with pytest.raises(ValueError, match="same shape"):
        viz.error_map(pred[:, :2], target)


def test_highlight_class_tints_the_class_and_dims_the_rest():
    image = np.full((2, 2, 3), 200, dtype=np.uint8)
    mask = torch.tensor([[1, 0], [1, IGNORE_INDEX]])
    out = viz.highlight_class(image, mask, 1, color=(0, 0, 255), alpha=1.0, dim=0.5)
    np.testing.assert_array_equal(out[mask == 1], [[0, 0, 255], [0, 0, 255]])
    np.testing.assert_array_equal(out[mask != 1], np.full((2, 3), 100))
    unchanged = viz.highlight_class(image, mask, 1, alpha=0.0, dim=1.0)
    np.testing.assert_array_equal(unchanged, image)
    absent = viz.highlight_class(image, mask, 2, dim=0.0)
    assert not absent.any(), "a class with no pixels leaves only the dimmed (black) frame"
    with pytest.raises(ValueError, match="does not match"):
        viz.highlight_class(image, mask[:1], 1)


def test_the_views_draw_prediction_labels_and_errors():
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    pred, mask = torch.tensor([[0, 1], [2, 2]]), torch.tensor([[0, 1], [1, 255]])
    np.testing.assert_array_equal(
        viz.draw_view(image, pred, COLORS, "prediction", alpha=1.0)[1, 0], COLORS[2]
    )
    np.testing.assert_array_equal(
        viz.draw_view(image, pred, COLORS, "ground truth", mask, 1.0)[1, 0], COLORS[1]
    )
    errors = viz.draw_view(image, pred, COLORS, "errors", mask, 1.0)
    assert tuple(errors[0, 0]) == viz.CORRECT_COLOR and tuple(errors[1, 0]) == viz.WRONG_COLOR
    with pytest.raises(ValueError, match="needs the ground-truth mask"):
        viz.draw_view(image, pred, COLORS, "errors")


def test_dim_outside_keeps_the_kept_pixels_and_dims_the_rest():
    image = np.full((2, 2, 3), 200, dtype=np.uint8)
    keep = torch.tensor([[True, False], [False, True]])
    out = viz.dim_outside(image, keep, dim=0.5)
    np.testing.assert_array_equal(out[keep.numpy()], image[keep.numpy()])
    np.testing.assert_array_equal(out[~keep.numpy()], np.full((2, 3), 100))
    np.testing.assert_array_equal(viz.dim_outside(image, keep, dim=1.0), image)
    with pytest.raises(ValueError, match="does not match"):
        viz.dim_outside(image, keep[:1])


def test_a_picked_class_stands_out_in_every_view_and_the_rest_is_dimmed():
    image = np.full((2, 3, 3), 200, dtype=np.uint8)
    pred = torch.tensor([[0, 1, 2], [1, 1, 0]])
    mask = torch.tensor([[0, 2, 2], [IGNORE_INDEX, 1, 0]])
    for view, ids in [("prediction", pred), ("ground truth", mask)]:
        np.testing.assert_array_equal(
            viz.draw_view(image, pred, COLORS, view, mask, 0.4, class_id=1),
            viz.highlight_class(image, ids, 1, alpha=0.4),
        )
    errors = viz.draw_view(image, pred, COLORS, "errors", mask, 0.5)
    picked = viz.draw_view(image, pred, COLORS, "errors", mask, 0.5, class_id=2)
    counted = np.array([[False, True, True], [False, False, False]])  # predicted or true class 2
    np.testing.assert_array_equal(picked[counted], errors[counted])
    np.testing.assert_array_equal(picked[~counted], (errors[~counted] * 0.35).round().astype(np.uint8))
    with pytest.raises(ValueError, match="view must be"):
        viz.draw_view(image, pred, COLORS, "labels", mask)


# --- figures ------------------------------------------------------------------------------------


def test_legend_lists_every_class_in_its_colour():
    fig = viz.legend(CLASSES, COLORS)
    assert isinstance(fig, Figure)
    box = fig.axes[0].get_legend()
    assert [t.get_text() for t in box.get_texts()] == ["0  road", "1  sky", "2  car", "void (not scored)"]
    assert [facecolor(p) for p in box.get_patches()] == [as_rgb(c) for c in [*COLORS, viz.VOID_COLOR]]
    no_void = viz.legend(CLASSES, COLORS, void=False).axes[0].get_legend()
    assert [t.get_text() for t in no_void.get_texts()] == ["0  road", "1  sky", "2  car"]


def test_a_key_figure_is_as_large_as_its_legend():
    """Drawn at its own size, a legend's text is 10 points, whatever the number of its entries."""
    short, long = viz.key_figure(viz.ERROR_KEY, 4), viz.key_figure(viz.class_key(CLASSES * 4, COLORS * 4), 4)
    for fig in (short, long):
        png = Image.open(io.BytesIO(viz.to_png(fig, dpi=100)))
        legend = fig.axes[0].get_legend().get_window_extent()
        assert legend.x0 >= 0 and legend.y0 >= 0, "the legend is cut off"
        # a margin of at most 0.1 inch beside the legend: no blank area to shrink its text when fitted
        assert png.width - legend.width * 100 / fig.dpi <= 11
        assert png.height - legend.height * 100 / fig.dpi <= 11
    assert short.get_figheight() < long.get_figheight() / 2  # three entries on one row, thirteen on four


def test_void_is_a_colour_of_no_class_and_the_error_key_names_all_three():
    palette = [tuple(c) for c in viz.colorize(torch.arange(3), COLORS)]
    assert tuple(viz.VOID_COLOR) not in palette
    assert [label for label, _ in viz.ERROR_KEY] == ["correct", "wrong", "void (not scored)"]
    assert len({tuple(c) for _, c in viz.ERROR_KEY}) == 3


def test_void_is_drawn_in_another_colour_when_a_class_is_black():
    # a binary dataset of one's own often colours its background black, CamVid's void colour
    black_background = ((0, 0, 0), (128, 64, 128))
    mask = torch.tensor([[0, 1, IGNORE_INDEX]])
    rgb = viz.colorize(mask, black_background)
    void = tuple(int(v) for v in rgb[0, 2])
    assert void not in black_background and void == viz.void_color_for(black_background)
    assert viz.class_key(("background", "road"), black_background)[-1] == ("void (not scored)", void)
    # every colour already a class: void still gets one of its own
    greys = [(g, g, g) for g in range(0, 256, 2)] + [(255, 255, 255)]
    assert viz.void_color_for(greys) not in greys
    # CamVid's palettes have no black class: void stays black there
    assert viz.void_color_for(COLORS) == viz.VOID_COLOR


def test_side_by_side_with_classes_draws_a_legend_of_the_classes_and_void():
    mask = torch.tensor([[0, 1], [2, 255]])
    fig = viz.side_by_side([mask, mask], ["label", "prediction"], colors=COLORS, classes=CLASSES)
    (box,) = fig.legends
    assert [t.get_text() for t in box.get_texts()] == [*CLASSES, "void (not scored)"]
    assert [facecolor(p) for p in box.get_patches()] == [as_rgb(c) for c in [*COLORS, viz.VOID_COLOR]]
    errors = viz.side_by_side([viz.error_map(mask, mask)], ["errors"], key=viz.ERROR_KEY)
    assert [t.get_text() for t in errors.legends[0].get_texts()] == ["correct", "wrong", "void (not scored)"]
    assert viz.side_by_side([mask], colors=COLORS).legends == []
    no_void = viz.side_by_side([mask[:1]], colors=COLORS, classes=CLASSES, void=False)  # labels without void
    assert [t.get_text() for t in no_void.legends[0].get_texts()] == list(CLASSES)
    with pytest.raises(ValueError, match="colors="):
        viz.side_by_side([mask.float()[None].expand(3, 2, 2)], classes=CLASSES)


def test_pixel_maps_hatch_void_and_never_draw_a_value_near_white():
    values = torch.tensor([[0.5, 0.0], [2.0, 7.0]])
    void = torch.tensor([[False, False], [False, True]])
    fig = viz.plot_pixel_maps({"p_y": values / 7, "loss": values}, void, log_from=1e-4)
    loss_ax = fig.axes[1]
    shown = loss_ax.get_images()[0]
    assert np.isnan(shown.get_array().filled(np.nan)[1, 1]), "void must be blank (NaN), not a value"
    assert shown.norm.vmax == 2.0, "the scale ends at the largest scored value, void left out"
    assert shown.get_array()[0, 1] == 1e-4, "a loss of 0 is drawn at the bottom of the scale, not blank"
    hatch = [p for p in loss_ax.patches if p.get_hatch()]
    assert hatch, "void pixels must show a hatched background"
    top = np.array(shown.cmap(1.0)[:3])
    assert top.min() < 0.5, f"the top of the colour map {top} is near white and would read as void"
    assert shown.cmap.get_bad()[3] == 0, "void must be transparent over the hatching"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["void (not scored)"]


def test_side_by_side_draws_each_picture_under_its_title():
    image = torch.rand(3, 4, 6, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[0, 1, 2, 0, 1, 2]] * 4)
    fig = viz.side_by_side([image, mask], ["frame", "label"], colors=COLORS)
    assert [ax.get_title() for ax in fig.axes] == ["frame", "label"]
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), viz.colorize(mask, COLORS))
    np.testing.assert_array_equal(
        fig.axes[0].images[0].get_array(), viz.overlay(image, np.zeros((4, 6, 3)), 0)
    )
    with pytest.raises(ValueError, match="colors="):
        viz.side_by_side([mask], ["label"])
    with pytest.raises(ValueError, match="titles"):
        viz.side_by_side([image, image], ["only one"])


def test_class_frequencies_are_percentages_in_class_order():
    fig = viz.plot_class_frequencies(torch.tensor([600, 300, 100]), CLASSES, COLORS)
    (ax,) = fig.axes
    bars = ax.patches
    assert len(bars) == 3
    np.testing.assert_allclose([b.get_width() for b in bars], [60, 30, 10])
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASSES)
    assert bar_labels(ax) == ["60.0%", "30.0%", "10.0%"]
    assert [facecolor(b) for b in bars] == [as_rgb(c) for c in COLORS]
    tiny = viz.plot_class_frequencies(np.array([9990, 5, 5]), CLASSES, COLORS, log=True)
    assert bar_labels(tiny.axes[0]) == ["99.9%", "0.05%", "0.05%"]
    assert tiny.axes[0].get_xscale() == "log"


def test_curves_skip_epochs_without_validation():
    history = [
        {"epoch": 1, "train_loss": 2.0, "val_loss": None, "val_miou": None, "lr": 0.1},
        {"epoch": 2, "train_loss": 1.5, "val_loss": 1.8, "val_miou": 0.2, "lr": 0.05},
        {"epoch": 3, "train_loss": 1.2, "val_loss": None, "val_miou": None, "lr": 0.02},
        {"epoch": 4, "train_loss": 1.0, "val_loss": 1.3, "val_miou": 0.4, "lr": 0.01},
    ]
    ax_loss, ax_miou, ax_lr = viz.plot_curves(history).axes
    train, val = ax_loss.get_lines()
    np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3, 4])
    np.testing.assert_array_equal(train.get_ydata(), [2.0, 1.5, 1.2, 1.0])
    np.testing.assert_array_equal(val.get_xdata(), [2, 4])
    np.testing.assert_array_equal(val.get_ydata(), [1.8, 1.3])
    (miou,) = ax_miou.get_lines()
    np.testing.assert_array_equal(miou.get_ydata(), [0.2, 0.4])
    np.testing.assert_array_equal(ax_lr.get_lines()[0].get_ydata(), [0.1, 0.05, 0.02, 0.01])
    assert [ax.get_title() for ax in (ax_loss, ax_miou, ax_lr)] == ["loss", "val mIoU", "learning rate"]


def test_class_iou_bars_show_nan_as_na_and_the_mean():
    iou = torch.tensor([0.5, float("nan"), 0.25], dtype=torch.float64)
    (ax,) = viz.plot_class_iou(iou, CLASSES, COLORS).axes
    np.testing.assert_allclose([b.get_width() for b in ax.patches], [0.5, 0.0, 0.25])
    assert bar_labels(ax) == ["0.50", "n/a", "0.25"]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASSES)
    (mean_line,) = ax.get_lines()
    np.testing.assert_allclose(mean_line.get_xdata(), [0.375, 0.375])
    assert ax.get_title() == "mIoU 0.375"


def test_confusion_heat_map_rows_are_fractions_of_the_true_class():
    matrix = torch.tensor([[8, 2, 0], [0, 0, 0], [1, 1, 2]])
    fig = viz.plot_confusion(matrix, CLASSES)
    ax = fig.axes[0]
    shown = np.ma.filled(ax.images[0].get_array(), np.nan)
    np.testing.assert_allclose(shown[[0, 2]].sum(1), [1.0, 1.0])
    np.testing.assert_allclose(shown[0], [0.8, 0.2, 0.0])
    assert np.isnan(shown[1]).all(), "a class with no pixels has no fractions"
    assert [t.get_text() for t in ax.get_xticklabels()] == list(CLASSES)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CLASSES)
    assert sorted(bar_labels(ax)) == sorted(["0.80", "0.20", "0.25", "0.25", "0.50"])
    counts = viz.plot_confusion(matrix, CLASSES, normalize=False).axes[0]
    np.testing.assert_array_equal(counts.images[0].get_array(), matrix.numpy())


def test_figures_stay_out_of_pyplot_and_render_to_png():
    before = plt.get_fignums()
    fig = viz.plot_class_iou([0.5, 0.5, 0.5], CLASSES, COLORS)
    viz.legend(CLASSES, COLORS)
    assert plt.get_fignums() == before, "viz must not leave figures open in pyplot"
    assert viz.to_png(fig).startswith(b"\x89PNG\r\n\x1a\n")


def test_pictures_encode_to_png_pixel_for_pixel():
    picture = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(viz.to_png(picture))))
    np.testing.assert_array_equal(decoded, picture)
    chw = torch.from_numpy(picture).permute(2, 0, 1)
    assert viz.to_png(chw) == viz.to_png(picture)
