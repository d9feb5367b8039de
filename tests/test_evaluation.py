"""Scoring a split (``camvid_utils.evaluation``): native resolution, the sum over processes, the scores.

The reduction is checked twice: with two threads standing in for two processes (an all-reduce that
adds the pair's tensors, fast) and with two real processes in a gloo group (slow).
"""

import json
import math
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader

from camvid_utils import distributed
from camvid_utils.data import CamVid
from camvid_utils.evaluation import Evaluation, collate_eval, evaluate
from camvid_utils.losses import FocalLoss
from camvid_utils.metrics import ConfusionMatrix
from camvid_utils.model import UNet
from camvid_utils.transforms import EvalPreset
from conftest import SAMPLE


def _val_and_model():
    torch.manual_seed(0)
    val = CamVid(SAMPLE, "val", transform=EvalPreset((48, 64)))
    return val, UNet(val.num_classes, base_channels=4, depth=2).eval()  # the same weights each call


def _evaluate(model, frames, num_classes, batch_size=2) -> Evaluation:
    loader = DataLoader(frames, batch_size=batch_size, collate_fn=collate_eval)
    return evaluate(model, loader, torch.device("cpu"), num_classes, loss_fn=FocalLoss())


def test_evaluate_scores_every_pixel_at_native_resolution():
    val, model = _val_and_model()
    result = _evaluate(model, val, val.num_classes)
    valid = sum(int((torch.from_numpy(val.load_mask(i)) != 255).sum()) for i in range(len(val)))
    assert int(result.confusion.matrix.sum()) == valid  # every 720x960 pixel, not 48x64 ones
    assert result.num_images == 3 and math.isfinite(result.loss)
    assert result.loss_pixels == valid and result.loss == result.loss_sum / valid


def test_without_a_loss_function_there_is_no_loss():
    val, model = _val_and_model()
    loader = DataLoader(val, batch_size=2, collate_fn=collate_eval)
    result = evaluate(model, loader, torch.device("cpu"), val.num_classes)
    assert result.loss_sum is None and result.loss is None and result.num_images == 3


def test_in_a_single_process_the_reduction_changes_nothing():
    assert not distributed.active()
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
    result = Evaluation(cm, 1.5, 3, 1)
    before = cm.matrix.clone()
    assert result.all_reduce() is result
    assert torch.equal(result.confusion.matrix, before)
    assert (result.loss_sum, result.loss_pixels, result.num_images) == (1.5, 3, 1)


class _TwoRanks:
    """``dist.all_reduce`` for two threads standing in for two processes: each call sums the pair."""

    def __init__(self):
        self.barrier, self.posted = threading.Barrier(2, timeout=30), {}

    def all_reduce(self, tensor, *args, **kwargs):
        self.posted[threading.current_thread().name] = tensor.clone()
        self.barrier.wait()
        total = sum(self.posted.values())
        self.barrier.wait()  # both have read the pair before either posts its next tensor
        tensor.copy_(total)


def test_the_reduction_of_two_halves_is_one_evaluation_of_the_whole(monkeypatch):
    val, model = _val_and_model()
    # one frame per batch: each frame's logits are then the same whichever half it is scored in
    whole = _evaluate(model, val, val.num_classes, batch_size=1)
    halves = [
        _evaluate(model, distributed.shard(val, rank=r, world=2), val.num_classes, batch_size=1)
        for r in (0, 1)
    ]
    local = [h.confusion.matrix.clone() for h in halves]
    assert all(m.sum() > 0 for m in local) and [h.num_images for h in halves] == [2, 1]
    ranks = _TwoRanks()
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(dist, "all_reduce", ranks.all_reduce)
    threads = [threading.Thread(target=h.all_reduce, name=f"rank{r}") for r, h in enumerate(halves)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for h in halves:
        assert torch.equal(h.confusion.matrix, whole.confusion.matrix)  # counts: exactly equal
        assert h.loss_pixels == whole.loss_pixels and h.num_images == whole.num_images == 3
        assert h.loss_sum == pytest.approx(whole.loss_sum, rel=1e-12)  # the same terms, another order
        assert h.loss == pytest.approx(whole.loss, rel=1e-12)
    assert torch.equal(local[0] + local[1], whole.confusion.matrix)


def _join(rank: int, world: int, rendezvous: str) -> None:
    torch.set_num_threads(1)  # two processes on a machine with few cores
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)


def _confusion_worker(rank, world, rendezvous, out):
    _join(rank, world, rendezvous)
    val, model = _val_and_model()
    part = distributed.shard(val)
    result = _evaluate(model, part, val.num_classes)
    local = result.confusion.matrix.clone()
    whole = result.all_reduce()
    torch.save(
        {
            "indices": list(part.indices),
            "local": local,
            "matrix": whole.confusion.matrix,
            "loss": whole.loss,
            "loss_pixels": whole.loss_pixels,
            "num_images": whole.num_images,
        },
        Path(out) / f"rank{rank}.pt",
    )
    dist.destroy_process_group()


@pytest.mark.slow  # one of the slowest tests: out of the short contributor run
def test_the_all_reduced_confusion_matrix_is_the_whole_splits(tmp_path):
    mp.spawn(_confusion_worker, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    val, model = _val_and_model()
    single = _evaluate(model, val, val.num_classes)
    assert [r["indices"] for r in ranks] == [[0, 2], [1]]  # every frame once, none twice
    assert all(r["local"].sum() > 0 for r in ranks)
    for r in ranks:
        assert torch.equal(r["matrix"], single.confusion.matrix)  # counts: exactly equal
        assert r["loss"] == pytest.approx(single.loss, rel=1e-6)  # float32 losses, other threads
        assert r["loss_pixels"] == single.loss_pixels and r["num_images"] == 3
    assert torch.equal(ranks[0]["local"] + ranks[1]["local"], single.confusion.matrix)


def test_the_json_scores_equal_an_independent_computation():
    # 4 classes; class 3 neither labelled nor predicted (IoU undefined), class 2 predicted only
    target = np.array([[0, 0, 1, 1], [0, 1, 1, 255], [0, 0, 0, 255]])  # unbalanced: the accuracies differ
    pred = np.array([[0, 1, 1, 1], [0, 1, 2, 0], [0, 0, 0, 2]])
    cm = ConfusionMatrix(4)
    cm.update(torch.from_numpy(pred), torch.from_numpy(target))
    classes = ("Sky", "Road", "Car", "Pole")
    result = Evaluation(cm, None, 0, 2, tta="flip", dataset=SimpleNamespace(classes=classes))

    scores = json.loads(result.to_json())

    valid = target != 255
    ious = []
    for c in range(4):
        union = ((target == c) | (pred == c)) & valid
        both = (target == c) & (pred == c) & valid
        ious.append(both.sum() / union.sum() if union.sum() else None)
    recalls = [
        ((pred == c) & (target == c)).sum() / (target == c).sum() for c in range(4) if (target == c).any()
    ]
    assert list(scores) == ["miou", "pixel_accuracy", "class_accuracy", "per_class_iou", "num_images", "tta"]
    assert scores["per_class_iou"] == pytest.approx(dict(zip(classes, ious, strict=True)))
    assert scores["per_class_iou"]["Pole"] is None and scores["per_class_iou"]["Car"] == 0
    assert scores["miou"] == pytest.approx(np.mean([v for v in ious if v is not None]))
    assert scores["pixel_accuracy"] == pytest.approx(((pred == target) & valid).sum() / valid.sum())
    assert scores["class_accuracy"] == pytest.approx(np.mean(recalls))
    assert (scores["num_images"], scores["tta"]) == (2, "flip")
    assert result.scores() == json.loads(json.dumps(result.scores()))  # what to_json writes, as numbers
