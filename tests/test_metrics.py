"""ConfusionMatrix: limit cases, void, accumulation, and agreement with torchmetrics."""

import math

import numpy as np
import pytest
import torch

from camvid_utils.metrics import ConfusionMatrix


def random_pair(seed, shape=(3, 20, 24), c=6, void=0.15):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, c, shape, generator=g)
    pred = torch.where(torch.rand(shape, generator=g) < 0.6, target, torch.randint(0, c, shape, generator=g))
    target[torch.rand(shape, generator=g) < void] = 255
    return pred, target


def numpy_scores(pred, target, c):
    """Independent reference: IoU and accuracies from boolean masks, no confusion matrix."""
    valid = target != 255
    p, t = pred[valid].numpy(), target[valid].numpy()
    iou, recall = [], []
    for k in range(c):
        inter = np.sum((p == k) & (t == k))
        union = np.sum((p == k) | (t == k))
        iou.append(inter / union if union else math.nan)
        recall.append(inter / np.sum(t == k) if np.sum(t == k) else math.nan)
    return np.array(iou), np.mean(p == t), np.nanmean(recall)


def test_perfect_prediction_scores_one():
    _, target = random_pair(0)
    cm = ConfusionMatrix(6)
    cm.update(torch.where(target == 255, 0, target), target)
    assert cm.miou() == 1.0 and cm.pixel_accuracy() == 1.0 and cm.class_accuracy() == 1.0
    assert (cm.iou() == 1).all()


def test_all_wrong_prediction_scores_zero():
    _, target = random_pair(1)
    cm = ConfusionMatrix(6)
    cm.update((target + 1) % 6, target)  # every pixel wrong, including class ids 1, 2, 4...
    assert cm.miou() == 0.0 and cm.pixel_accuracy() == 0.0 and cm.class_accuracy() == 0.0


def test_void_pixels_change_nothing():
    pred, target = random_pair(2)
    a, b = ConfusionMatrix(6), ConfusionMatrix(6)
    a.update(pred, target)
    other = pred.clone()
    other[target == 255] = (other[target == 255] + 3) % 6
    b.update(other, target)
    assert torch.equal(a.matrix, b.matrix)
    assert int(a.matrix.sum()) == int((target != 255).sum())


def test_matches_an_independent_computation_and_torchmetrics():
    tm = pytest.importorskip("torchmetrics.classification")
    pred, target = random_pair(3, c=7)
    cm = ConfusionMatrix(7)
    cm.update(pred, target)
    iou, pixel_acc, class_acc = numpy_scores(pred, target, 7)
    np.testing.assert_allclose(cm.iou().numpy(), iou)
    assert cm.pixel_accuracy() == pytest.approx(pixel_acc)
    assert cm.class_accuracy() == pytest.approx(class_acc)
    jaccard = tm.MulticlassJaccardIndex(7, average=None, ignore_index=255)
    np.testing.assert_allclose(cm.iou().numpy(), jaccard(pred, target).double().numpy(), rtol=1e-6)
    acc = tm.MulticlassAccuracy(7, average="micro", ignore_index=255)
    assert cm.pixel_accuracy() == pytest.approx(acc(pred, target).item(), rel=1e-6)
    matrix = tm.MulticlassConfusionMatrix(7, ignore_index=255)(pred, target)
    assert torch.equal(cm.matrix, matrix)


def test_accumulating_batches_equals_one_pass_and_differs_from_batch_average():
    pred, target = random_pair(4, shape=(4, 16, 16))
    target[0][target[0] == 5] = 0  # class 5 rare in the first batch only
    whole, parts, batch_mious = ConfusionMatrix(6), ConfusionMatrix(6), []
    whole.update(pred, target)
    for p, t in zip(pred, target, strict=True):
        parts.update(p, t)
        one = ConfusionMatrix(6)
        one.update(p, t)
        batch_mious.append(one.miou())
    assert torch.equal(whole.matrix, parts.matrix)
    assert abs(np.mean(batch_mious) - whole.miou()) > 1e-3


def test_absent_class_is_nan_and_left_out_of_the_mean():
    target = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 0, 1, 0]])
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    iou = cm.iou()
    assert iou[0] == pytest.approx(2 / 3) and iou[1] == pytest.approx(1 / 2)
    assert math.isnan(iou[2]) and math.isnan(iou[3])
    assert cm.miou() == pytest.approx((2 / 3 + 1 / 2) / 2)
    cm.update(torch.tensor([[3]]), torch.tensor([[0]]))  # predicted but never true: IoU 0, not NaN
    assert cm.iou()[3] == 0.0


def test_table_reset_and_errors():
    pred, target = random_pair(5, c=3)
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    table = cm.table(["Sky", "Road", "Pedestrian"])
    assert "Pedestrian" in table and f"{cm.miou():6.3f}" in table and "pixel accuracy" in table
    cm.reset()
    assert int(cm.matrix.sum()) == 0 and math.isnan(cm.miou())
    with pytest.raises(ValueError, match="not logits"):
        cm.update(torch.zeros(1, 3, 4, 4), target[:1, :4, :4])
    with pytest.raises(ValueError, match="target holds ids outside"):
        cm.update(torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 7))
    with pytest.raises(ValueError, match="pred holds ids outside"):
        cm.update(torch.full((2, 2), 3), torch.zeros(2, 2, dtype=torch.long))
