"""Joint transforms: masks move with their images, never blend class ids, and pad with void."""

import pytest
import torch
from torchvision import tv_tensors

from camvid_utils.data import IGNORE_INDEX
from camvid_utils.transforms import MEAN, STD, EvalPreset, denormalize, train_preset

IDS = torch.tensor([0, 7, 2, 9])  # far apart: a blend of two neighbours (3.5, 4.5, 5.5) is no id here


def stripes(h=36, w=48):
    """A frame whose red channel encodes the column and a mask of 4 vertical class stripes."""
    cols = torch.arange(w).expand(h, w)
    image = torch.stack([cols * 5, torch.zeros(h, w), torch.full((h, w), 255)]).to(torch.uint8)
    mask = IDS[cols // (w // 4)]
    return tv_tensors.Image(image), tv_tensors.Mask(mask)


def test_train_preset_moves_image_and_mask_together_and_keeps_class_ids():
    torch.manual_seed(0)
    pipeline = train_preset(
        (36, 48), crop=(24, 32), scale=(0.9, 1.6), hflip=0.5, jitter=0.0, mean=(0,) * 3, std=(1,) * 3
    )
    for _ in range(10):
        image, mask = pipeline(*stripes())
        assert image.shape == (3, 24, 32) and mask.shape == (24, 32) and mask.dtype == torch.int64
        assert set(mask.unique().tolist()) <= {0, 7, 2, 9, IGNORE_INDEX}  # nearest: no blended ids
        valid = mask != IGNORE_INDEX
        # the stripe a pixel belongs to follows from its red value (the column) wherever it is labelled
        column = (image[0] * 255 / 5).round()
        stripe = IDS[(column // 12).clamp(max=3).long()]
        assert (stripe[valid] == mask[valid]).float().mean() > 0.9


def test_crops_larger_than_the_frame_pad_the_mask_with_void():
    pipeline = train_preset((36, 48), crop=(60, 80), scale=(1.0, 1.0), hflip=0.0, jitter=0.0)
    image, mask = pipeline(*stripes())
    assert mask.shape == (60, 80) and (mask == IGNORE_INDEX).sum() == 60 * 80 - 36 * 48


@pytest.mark.parametrize("plain", [False, True], ids=["tv_tensors", "plain tensors"])
def test_eval_preset_resizes_the_image_and_keeps_the_mask_at_native_size(plain):
    frame = [x.as_subclass(torch.Tensor) if plain else x for x in stripes()]  # callers pass either
    image, mask = EvalPreset((18, 24))(*frame)
    assert image.shape == (3, 18, 24) and mask.shape == (36, 48)
    _, small = EvalPreset((18, 24), resize_mask=True)(*frame)
    # nearest neighbour at half size keeps every other pixel, exactly: no blended or shifted ids
    assert small.shape == (18, 24) and torch.equal(small, stripes()[1][::2, ::2].as_subclass(torch.Tensor))


def test_denormalize_undoes_the_normalisation():
    image, _ = stripes()
    x = EvalPreset()(image)
    torch.testing.assert_close(denormalize(x, MEAN, STD), image.float() / 255, atol=1e-6, rtol=0)


@pytest.mark.parametrize("size", [(36, 48), None])
def test_eval_preset_output_is_a_plain_tensor(size):
    image, mask = EvalPreset(size)(*stripes())
    assert type(image) is torch.Tensor and type(mask) is torch.Tensor
