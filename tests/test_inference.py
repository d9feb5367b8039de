"""Prediction on single frames: any frame size in, the frame's own size out, the training preprocessing."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from camvid_utils import viz
from camvid_utils.checkpoint import LoadedModel
from camvid_utils.data import IGNORE_INDEX
from camvid_utils.evaluation import evaluate
from camvid_utils.inference import (
    check_tta,
    output_paths,
    predict,
    predict_batch,
    predict_logits,
    prediction_names,
    top_classes,
    tta_logits,
    write_prediction,
)
from camvid_utils.model import UNet
from camvid_utils.transforms import EvalPreset


class MeanColour(nn.Module):
    """A 'model' whose logits are the input's three channels: class c wins where channel c is largest."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x  # (B, 3, h, w) -> three classes


def loaded(model, size=(16, 24), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)) -> LoadedModel:
    return LoadedModel(
        model.eval(), ("r", "g", "b"), ((255, 0, 0), (0, 255, 0), (0, 0, 255)), None, mean, std, size, {}
    )


@pytest.mark.parametrize("hw", [(16, 24), (37, 51), (720, 960)])
def test_logits_and_prediction_come_back_at_the_frames_size(hw):
    torch.manual_seed(0)
    frame = torch.randint(0, 256, (3, *hw), dtype=torch.uint8)
    model = loaded(UNet(3, base_channels=4, depth=2))
    logits, pred = predict_logits(model, frame), predict(model, frame)
    assert logits.shape == (3, *hw) and logits.dtype == torch.float32
    assert pred.shape == hw and pred.dtype == torch.int64
    torch.testing.assert_close(pred, logits.argmax(0))


def test_a_frame_of_one_colour_predicts_that_colours_class_everywhere():
    for c in range(3):
        frame = torch.zeros(3, 30, 40, dtype=torch.uint8)
        frame[c] = 200
        assert (predict(loaded(MeanColour()), frame) == c).all()


def test_the_frame_is_normalised_as_in_training():
    frame = torch.randint(0, 256, (3, 16, 24), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    expected = EvalPreset((16, 24), mean=mean, std=std)(frame)
    torch.testing.assert_close(predict_logits(loaded(MeanColour(), mean=mean, std=std), frame), expected)


@pytest.mark.parametrize(
    "frame",
    [torch.zeros(3, 8, 8), torch.zeros(4, 8, 8, dtype=torch.uint8), torch.zeros(8, 8, dtype=torch.uint8)],
)
def test_anything_but_a_uint8_rgb_frame_is_refused(frame):
    with pytest.raises(ValueError, match=r"expected a \(3, H, W\) uint8 frame"):
        predict(loaded(MeanColour()), frame)


# flip test-time augmentation


def mirror_symmetric_net(classes: int = 3) -> nn.Module:
    """Two convolutions whose kernels equal their own mirror image: the net commutes with a flip."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, classes, 3, padding=1))
    with torch.no_grad():
        for conv in (net[0], net[2]):
            conv.weight.copy_((conv.weight + conv.weight.flip(-1)) / 2)
    return net.eval()


def test_flip_tta_changes_nothing_for_a_mirror_symmetric_model():
    net, x = mirror_symmetric_net(), torch.randn(2, 3, 12, 17)
    with torch.no_grad():
        torch.testing.assert_close(tta_logits(net, x, "flip"), net(x).log_softmax(1))
        torch.testing.assert_close(net(x.flip(-1)), net(x).flip(-1))  # the premise: it is symmetric
    frame = torch.randint(0, 256, (3, 16, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    model = loaded(net)
    assert torch.equal(predict(model, frame, tta="flip"), predict(model, frame))


def test_flip_tta_of_a_mirrored_input_is_the_mirrored_output():
    torch.manual_seed(0)
    net, x = UNet(5, base_channels=4, depth=2).eval(), torch.randn(2, 3, 16, 24)
    with torch.no_grad():
        assert not torch.allclose(net(x.flip(-1)), net(x).flip(-1))  # this net is not symmetric...
        torch.testing.assert_close(tta_logits(net, x.flip(-1), "flip"), tta_logits(net, x, "flip").flip(-1))


def test_flip_tta_averages_the_softmax_of_the_frame_and_its_mirror():
    torch.manual_seed(0)
    net, x = UNet(5, base_channels=4, depth=2).eval(), torch.randn(1, 3, 16, 24)
    with torch.no_grad():
        by_hand = (net(x).softmax(1) + net(x.flip(-1)).softmax(1).flip(-1)) / 2
        torch.testing.assert_close(tta_logits(net, x, "flip").exp(), by_hand)
        torch.testing.assert_close(tta_logits(net, x, None), net(x))
        torch.testing.assert_close(tta_logits(net, x, "none"), net(x))


def test_a_batch_predicts_as_its_frames_one_by_one():
    torch.manual_seed(0)
    model = loaded(UNet(3, base_channels=4, depth=2))
    frames = torch.randint(0, 256, (3, 3, 20, 30), dtype=torch.uint8)
    for tta in (None, "flip"):
        one_by_one = torch.stack([predict_logits(model, f, tta) for f in frames])
        torch.testing.assert_close(predict_batch(model, frames, tta), one_by_one.argmax(1))


def test_evaluate_with_flip_tta_scores_a_symmetric_model_as_without():
    net = mirror_symmetric_net(classes=4)
    masks = torch.randint(0, 4, (2, 12, 17), generator=torch.Generator().manual_seed(1))
    loader = [(torch.randn(2, 3, 12, 17), list(masks))]
    plain = evaluate(net, loader, torch.device("cpu"), 4).confusion.matrix
    flipped = evaluate(net, loader, torch.device("cpu"), 4, tta="flip").confusion.matrix
    assert torch.equal(plain, flipped) and plain.sum() == masks.numel()


def test_an_unknown_tta_is_refused():
    assert check_tta("none") is None and check_tta(None) is None and check_tta("flip") == "flip"
    with pytest.raises(ValueError, match=r"tta must be one of \('none', 'flip', 'multiscale'\)"):
        predict(loaded(MeanColour()), torch.zeros(3, 8, 8, dtype=torch.uint8), tta="rotate")


def test_top_classes_are_the_largest_shares_of_all_pixels_and_never_void():
    ids = torch.tensor([[2, 2, 2, IGNORE_INDEX], [1, 1, IGNORE_INDEX, IGNORE_INDEX]])  # void is the most
    assert top_classes(ids, ("a", "b", "c")) == [("c", 0.375), ("b", 0.25), ("a", 0.0)]
    assert top_classes(ids, ("a", "b", "c"), k=1) == [("c", 0.375)]


# --- what predict writes: names and files ---------------------------------------------------------


def _frame(path, array=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((6, 8, 3), np.uint8) if array is None else array).save(path)
    return path


def test_prediction_names_are_unique_and_mirror_sub_folders(tmp_path):
    a, b = _frame(tmp_path / "a" / "x.jpg"), _frame(tmp_path / "b" / "x.png")
    _frame(tmp_path / "b" / "x.jpg")
    _frame(tmp_path / "b" / "deep" / "y.png")
    pairs = prediction_names([str(tmp_path / "a"), str(tmp_path / "b"), str(a)], tmp_path / "out")
    names = [str(name) for _, name in pairs]
    assert names == ["a/x", "b/deep/y", "b/x_jpg", "b/x_png"]
    assert pairs[0][0] == a and pairs[-1][0] == b
    # one folder's images land directly in --out, as before
    assert [str(n) for _, n in prediction_names([str(tmp_path / "b" / "deep")], tmp_path / "out")] == ["y"]


def test_predicts_own_outputs_are_skipped_when_out_is_the_input_folder(tmp_path):
    _frame(tmp_path / "x.png")
    mask_path, overlay_path = output_paths(tmp_path, "x")
    _frame(mask_path)
    _frame(overlay_path)
    assert [str(n) for _, n in prediction_names([str(tmp_path)], tmp_path)] == ["x"]


def test_write_prediction_writes_the_mask_and_the_overlay_and_returns_the_overlay(tmp_path):
    colors = ((255, 0, 0), (0, 0, 255))
    image = np.full((2, 3, 3), 100, np.uint8)
    pred = torch.tensor([[0, 1, 1], [1, 0, 0]])
    drawn = write_prediction(tmp_path, "deep/x", image, pred, colors, alpha=0.25)
    mask_path, overlay_path = output_paths(tmp_path, "deep/x")
    assert mask_path == tmp_path / "deep" / "x_mask.png"
    assert overlay_path == tmp_path / "deep" / "x_overlay.png"
    np.testing.assert_array_equal(np.asarray(Image.open(mask_path)), viz.colorize(pred, colors))
    np.testing.assert_array_equal(np.asarray(Image.open(overlay_path)), drawn)
    np.testing.assert_array_equal(drawn, viz.overlay(image, viz.colorize(pred, colors), 0.25))
