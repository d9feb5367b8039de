"""Focal loss and class weights, checked against independent computations and limit cases."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from camvid_utils.losses import FocalLoss, class_weights, focal_loss


def batch(seed=0, b=2, c=5, h=6, w=7, void=0.2, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, c, h, w, generator=g) * scale
    target = torch.randint(0, c, (b, h, w), generator=g)
    target[torch.rand(b, h, w, generator=g) < void] = 255
    return logits, target


def numpy_focal(logits, target, gamma, alpha=None):
    """Independent float64 reference: softmax by hand, one pixel at a time."""
    x = logits.double().numpy()
    t = target.numpy()
    terms = []
    for b, i, j in np.ndindex(t.shape):
        y = t[b, i, j]
        if y == 255:
            continue
        z = x[b, :, i, j]
        p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        a = 1.0 if alpha is None else float(alpha[y])
        terms.append(-a * (1 - p[y]) ** gamma * np.log(p[y]))
    return float(np.mean(terms))


def test_gamma_zero_equals_cross_entropy():
    logits, target = batch()
    torch.testing.assert_close(
        focal_loss(logits, target, gamma=0), F.cross_entropy(logits, target, ignore_index=255)
    )


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
def test_matches_an_independent_per_pixel_reference(gamma):
    logits, target = batch(seed=int(gamma * 10))
    alpha = torch.tensor([0.5, 2.0, 1.0, 3.0, 0.25])
    expected = numpy_focal(logits, target, gamma, alpha)
    got = focal_loss(logits, target, gamma=gamma, alpha=alpha).item()
    assert got == pytest.approx(expected, rel=1e-5)
    assert focal_loss(logits, target, gamma=gamma).item() == pytest.approx(
        numpy_focal(logits, target, gamma), rel=1e-5
    )


def test_loss_is_per_pixel_not_a_rescaled_batch_mean():
    logits, target = batch(void=0.0)
    before = focal_loss(logits, target, reduction="none")
    changed = logits.clone()
    changed[0, :, 2, 3] = 0
    changed[0, target[0, 2, 3], 2, 3] = 20.0  # make one pixel confidently right
    after = focal_loss(changed, target, reduction="none")
    diff = (after != before).nonzero().tolist()
    assert diff == [[0, 2, 3]]
    assert after[0, 2, 3] < 1e-6
    # The seed's bug: (1 - exp(-CE_mean))**gamma * CE_mean is a rescaled cross-entropy; ours is not.
    ce = F.cross_entropy(logits, target)
    seed = (1 - torch.exp(-ce)) ** 2 * ce
    assert not torch.isclose(focal_loss(logits, target), seed, rtol=1e-3)


def test_void_pixels_change_nothing_and_are_not_counted():
    logits, target = batch(void=0.3)
    loss = focal_loss(logits, target)
    noisy = logits.clone()
    void = (target == 255).unsqueeze(1).expand_as(logits)
    noisy[void] = torch.randn(int(void.sum()), generator=torch.Generator().manual_seed(9)) * 100
    torch.testing.assert_close(focal_loss(noisy, target), loss)
    per_pixel = focal_loss(logits, target, reduction="none")
    assert (per_pixel[target == 255] == 0).all()
    valid = (target != 255).sum()
    torch.testing.assert_close(loss, per_pixel.sum() / valid)
    torch.testing.assert_close(focal_loss(logits, target, reduction="sum"), per_pixel.sum())


def test_all_void_batch_gives_zero_not_nan():
    logits, target = batch()
    target[:] = 255
    loss = focal_loss(logits, target)
    assert loss.item() == 0.0


def test_uniform_alpha_equals_no_alpha_up_to_scale():
    logits, target = batch()
    plain = focal_loss(logits, target)
    torch.testing.assert_close(focal_loss(logits, target, alpha=torch.full((5,), 0.25)), 0.25 * plain)


def test_alpha_weights_only_the_pixels_of_its_class():
    logits, target = batch()
    alpha = torch.ones(5)
    alpha[2] = 3.0
    weighted = focal_loss(logits, target, alpha=alpha, reduction="none")
    plain = focal_loss(logits, target, reduction="none")
    torch.testing.assert_close(weighted[target == 2], 3 * plain[target == 2])
    torch.testing.assert_close(weighted[target != 2], plain[target != 2])


def test_focal_down_weights_easy_pixels_more_than_hard_ones():
    logits = torch.tensor([[4.0, 0.0], [0.0, 0.5]]).T.reshape(1, 2, 1, 2)  # easy pixel, hard pixel
    target = torch.tensor([[[0, 0]]])
    ce = focal_loss(logits, target, gamma=0, reduction="none")[0, 0]
    fl = focal_loss(logits, target, gamma=2, reduction="none")[0, 0]
    ratio = fl / ce
    assert ratio[0] < 0.001 and ratio[1] > 0.3
    losses = [focal_loss(logits, target, gamma=g).item() for g in (0, 1, 2, 5)]
    assert losses == sorted(losses, reverse=True)  # more focus, smaller loss


def test_gradients_are_finite_for_extreme_logits():
    logits = torch.tensor([1e4, -1e4, 0.0]).repeat(2, 2, 1).permute(2, 0, 1)[None].clone()  # (1, 3, 2, 2)
    logits.requires_grad_(True)
    target = torch.tensor([[[0, 1], [2, 255]]])
    for gamma in (0.0, 0.5, 2.0):
        logits.grad = None
        loss = focal_loss(logits, target, gamma=gamma)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert loss.item() > 1e3  # the confidently wrong pixel is penalised, not NaN


def test_module_stores_arguments_and_matches_function():
    logits, target = batch()
    alpha = torch.arange(1.0, 6.0)
    module = FocalLoss(gamma=1.5, alpha=alpha)
    torch.testing.assert_close(module(logits, target), focal_loss(logits, target, gamma=1.5, alpha=alpha))
    assert "gamma=1.5" in repr(module) and list(module.state_dict()) == ["alpha"]


def test_bad_inputs_give_clear_errors():
    logits, target = batch()
    with pytest.raises(ValueError, match=r"class ids \[7\] outside 0..4"):
        focal_loss(logits, torch.where(target == 255, target, 7))
    with pytest.raises(ValueError, match="do not match"):
        focal_loss(logits, target[:, :3])
    with pytest.raises(ValueError, match="one weight per class"):
        focal_loss(logits, target, alpha=torch.ones(3))
    with pytest.raises(ValueError, match="reduction"):
        focal_loss(logits, target, reduction="avg")


def test_median_frequency_weights():
    counts = torch.tensor([100, 10, 0, 50])
    image_pixels = torch.tensor([200, 100, 1, 100])
    weights = class_weights(counts, "median_frequency", image_counts=image_pixels)
    freq = np.array([0.5, 0.1, 0.5])  # classes 0, 1, 3
    expected = np.median(freq) / freq
    np.testing.assert_allclose(weights[[0, 1, 3]].numpy(), expected, rtol=1e-6)
    assert weights[2] == 0  # an absent class gets no weight


def test_inverse_sqrt_weights_keep_the_pixel_average_at_one():
    counts = torch.tensor([900.0, 90.0, 10.0, 0.0])
    weights = class_weights(counts, "inverse_sqrt")
    freq = counts / counts.sum()
    assert (weights * freq).sum().item() == pytest.approx(1.0, rel=1e-6)
    assert weights[2] / weights[0] == pytest.approx(3.0 * np.sqrt(10), rel=1e-5)  # sqrt(900/10)
    assert weights[3] == 0
    with pytest.raises(ValueError, match="method"):
        class_weights(counts, "inverse")
    with pytest.raises(ValueError, match="all counts are 0"):
        class_weights(torch.zeros(3))
