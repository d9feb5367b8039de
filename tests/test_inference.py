"""Prediction on single frames: any frame size in, the frame's own size out, the training preprocessing."""

import pytest
import torch
from torch import nn

from camvid_utils.checkpoint import LoadedModel
from camvid_utils.inference import predict, predict_logits
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
