"""Multi-scale + flip test-time augmentation: a scale-invariant model predicts as without it, the
views are averaged at the label's resolution, void stays ignored, and the CLI flag works end to end."""

import json

import torch
import torch.nn.functional as F
from test_inference import MeanColour, loaded
from torch import nn

from camvid_utils import evaluation
from camvid_utils.checkpoint import load_model
from camvid_utils.cli import main
from camvid_utils.evaluation import evaluate, evaluate_checkpoint
from camvid_utils.inference import MULTISCALE, predict_batch_logits, tta_logits
from camvid_utils.model import UNet
from camvid_utils.training import fit
from conftest import make_segnet, tiny


class Pointwise(nn.Module):
    """A per-pixel affine map of the colour: resizing and mirroring commute with it (scale-invariant)."""

    def __init__(self, classes: int = 4):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, classes, 1)

    def forward(self, x):
        return self.conv(x)


def blocks(h: int = 48, w: int = 64) -> torch.Tensor:
    """A normalised frame of four flat colour blocks, none of them mirror images of another."""
    x = torch.zeros(1, 3, h, w)
    x[:, 0, : h // 2, : w // 2], x[:, 1, : h // 2, w // 2 :] = 2.0, 2.0
    x[:, 2, h // 2 :, : w // 4], x[:, :, h // 2 :, w // 4 :] = 2.0, -1.0
    return x


def test_a_scale_invariant_model_predicts_as_without_tta():
    net, x = Pointwise().eval(), blocks()
    with torch.no_grad():
        plain, multi = net(x).argmax(1), tta_logits(net, x, "multiscale").argmax(1)
    assert multi.shape == plain.shape
    # resampling blurs only the blocks' edges: away from them every view sees the same flat colour
    interior = torch.ones_like(plain, dtype=torch.bool)
    for edge in (24,):
        interior[:, edge - 3 : edge + 3, :] = False
    for edge in (16, 32):
        interior[:, :, edge - 3 : edge + 3] = False
    assert torch.equal(multi[interior], plain[interior])
    assert (multi == plain).float().mean() > 0.97


def test_a_frame_of_one_colour_gives_the_same_scores_at_every_scale():
    x = torch.zeros(1, 3, 20, 30)
    x[:, 1] = 1.5
    with torch.no_grad():
        got = tta_logits(MeanColour(), x, "multiscale", size=(37, 53))
    torch.testing.assert_close(got, x[:, :, :1, :1].log_softmax(1).expand(1, 3, 37, 53))


def test_the_views_are_averaged_at_the_labels_resolution():
    torch.manual_seed(0)
    net, x, size = UNet(5, base_channels=4, depth=2).eval(), torch.randn(2, 3, 16, 24), (37, 53)
    with torch.no_grad():
        got = tta_logits(net, x, "multiscale", size=size)
        probs = 0
        for s in MULTISCALE:  # by hand: each view resized to the label's size, then its softmax
            xs = x if s == 1 else F.interpolate(x, size=(round(16 * s), round(24 * s)), mode="bilinear",
                                                antialias=s < 1)  # fmt: skip
            for view in (net(xs), net(xs.flip(-1)).flip(-1)):
                probs = probs + F.interpolate(view, size=size, mode="bilinear").softmax(1)
        torch.testing.assert_close(got.exp(), probs / (2 * len(MULTISCALE)))
        assert got.shape == (2, 5, *size)
        # one scale is flip TTA, resized afterwards or before: the same views
        one = tta_logits(net, x, "multiscale", scales=(1.0,))
        torch.testing.assert_close(one, tta_logits(net, x, "flip"))


def test_predict_comes_back_at_the_frames_size():
    frames = torch.randint(0, 256, (2, 3, 30, 41), dtype=torch.uint8)
    torch.manual_seed(0)
    logits = predict_batch_logits(loaded(UNet(3, base_channels=4, depth=2)), frames, "multiscale")
    assert logits.shape == (2, 3, 30, 41) and torch.isfinite(logits).all()


def test_void_pixels_stay_uncounted_and_mixed_mask_sizes_score_one_by_one():
    torch.manual_seed(0)
    net = UNet(4, base_channels=4, depth=2).eval()
    images = torch.randn(2, 3, 12, 16)
    masks = [torch.randint(0, 4, (24, 32)), torch.randint(0, 4, (18, 20))]
    masks[0][:5], masks[1][:, :7] = 255, 255
    cm = evaluate(net, [(images, masks)], torch.device("cpu"), 4, tta="multiscale").confusion
    assert cm.matrix.sum() == sum(int((m != 255).sum()) for m in masks)
    one_by_one = [
        evaluate(net, [(images[i : i + 1], [masks[i]])], torch.device("cpu"), 4, tta="multiscale")
        for i in range(2)
    ]
    assert torch.equal(cm.matrix, one_by_one[0].confusion.matrix + one_by_one[1].confusion.matrix)
    by_hand = torch.zeros(4, 4, dtype=torch.long)  # (target, pred) counts over the labelled pixels
    with torch.no_grad():
        for x, mask in zip(images, masks, strict=True):
            pred = tta_logits(net, x[None], "multiscale", size=tuple(mask.shape)).argmax(1)[0]
            keep = mask != 255
            by_hand += torch.bincount(mask[keep] * 4 + pred[keep], minlength=16).view(4, 4)
    assert torch.equal(cm.matrix.long().cpu(), by_hand)


def test_the_evaluate_and_predict_commands_take_multiscale(tmp_path, capsys, monkeypatch):
    fit(tiny(tmp_path / "run", epochs=1, class_set="camvid11"), log=lambda *_: None)
    ckpt = tmp_path / "run" / "last.pt"
    labels = torch.randint(0, 12, (2, 30, 40), generator=torch.Generator().manual_seed(0)).numpy()
    data = make_segnet(tmp_path / "segnet", {"val": list(labels)})
    modes = []
    monkeypatch.setattr(evaluation, "tta_logits", lambda *a, **k: modes.append(a[2]) or tta_logits(*a, **k))
    scores = tmp_path / "scores.json"
    args = ["evaluate", "--data", str(data), "--checkpoint", str(ckpt), "--split", "val"]
    assert main([*args, "--tta", "multiscale", "--json", str(scores)]) in (0, None)
    saved = json.loads(scores.read_text())
    assert saved["tta"] == "multiscale" and "TTA: multiscale" in capsys.readouterr().out
    assert modes and set(modes) == {"multiscale"}
    expected = evaluate_checkpoint(load_model(ckpt), data, "val", tta="multiscale").confusion.miou()
    assert saved["miou"] == expected
    frame = sorted((data / "val").glob("*.png"))[0]
    assert main(["predict", "--checkpoint", str(ckpt), "--out", str(tmp_path / "pred"), "--tta", "multiscale",
                 str(frame)]) in (0, None)  # fmt: skip
    assert (tmp_path / "pred" / f"{frame.stem}_mask.png").is_file()
