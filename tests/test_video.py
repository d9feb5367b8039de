"""Video: clips written and read back in every format, flicker on hand-made clips, batched and
smoothed prediction, the player, and ``predict`` on a folder of frames and on a video file."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from camvid_utils import viz
from camvid_utils.checkpoint import load_model
from camvid_utils.cli import main
from camvid_utils.data import CamVidError
from camvid_utils.inference import predict_logits
from camvid_utils.metrics import ConfusionMatrix, Flicker, flicker
from camvid_utils.model import UNet
from camvid_utils.video import (
    find_runs,
    open_clip,
    pan_clip,
    parse_frame_name,
    predict_frames,
    write_video,
)

COLORS = [(128, 128, 128), (128, 0, 0), (64, 0, 128)]


def gradient_frames(n: int = 6, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """Smooth frames that a video codec keeps close: a gradient whose brightness steps each frame."""
    ramp = np.linspace(0, 150, w, dtype=np.float32)[None, :, None]
    return [np.broadcast_to(ramp + 15 * t, (h, w, 3)).astype(np.uint8) for t in range(n)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny untrained 3-class U-Net saved as a camvid_utils checkpoint (no training: fast)."""
    torch.manual_seed(0)
    model = UNet(3, base_channels=4, depth=2)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save(
        {
            "model": model.state_dict(),
            "model_config": {"num_classes": 3, "base_channels": 4, "depth": 2},
            "classes": ["Sky", "Building", "Road"],
            "colors": [list(c) for c in COLORS],
            "class_set": None,
            "mean": [0.5, 0.5, 0.5],
            "std": [0.25, 0.25, 0.25],
            "image_size": [24, 32],
        },
        path,
    )
    return path


# writing and reading clips


@pytest.mark.parametrize(("suffix", "fps"), [(".gif", 10.0), (".gif", 25.0), (".mp4", 15.0), (".mp4", 12.5)])
def test_a_written_video_reads_back_with_its_frames_size_and_rate(tmp_path, suffix, fps):
    frames = gradient_frames()
    path = tmp_path / f"clip{suffix}"
    assert write_video(path, frames, fps=fps) == len(frames)
    clip = open_clip(path)
    back = list(clip)
    assert len(back) == len(clip) == len(frames)
    assert all(frame.shape == (48, 64, 3) and frame.dtype == np.uint8 for frame in back)
    assert clip.fps == pytest.approx(fps)
    for mine, theirs in zip(frames, back, strict=True):
        assert np.abs(mine.astype(int) - theirs).mean() < 6  # lossy, but the same pictures in order
    assert clip.names == [f"clip_{i:05d}" for i in range(len(frames))]


def test_a_gif_rounds_its_rate_to_hundredths_of_a_second(tmp_path):
    write_video(tmp_path / "clip.gif", gradient_frames(), fps=15)
    assert open_clip(tmp_path / "clip.gif").fps == pytest.approx(1 / 0.07)


def test_a_folder_of_frames_is_a_clip_in_name_order_without_a_rate(tmp_path):
    frames = gradient_frames(3)
    for name, frame in zip(["b_002.png", "a_001.jpg", "c_003.png"], frames, strict=True):
        Image.fromarray(frame).save(tmp_path / name, quality=95)
    (tmp_path / "notes.txt").write_text("not a frame")
    clip = open_clip(tmp_path)
    assert clip.fps is None and clip.names == ["a_001", "b_002", "c_003"] and len(clip) == 3
    back = list(clip)
    assert np.abs(back[0].astype(int) - frames[1]).mean() < 3  # a_001 is the JPEG of frames[1]
    np.testing.assert_array_equal(back[1], frames[0])


def test_an_mp4_of_odd_size_loses_one_row_and_column(tmp_path):
    write_video(tmp_path / "odd.mp4", gradient_frames(3, 47, 63), fps=15)
    assert next(iter(open_clip(tmp_path / "odd.mp4"))).shape == (46, 62, 3)


def test_width_resizes_every_frame_keeping_the_aspect_ratio(tmp_path):
    write_video(tmp_path / "small.gif", gradient_frames(3, 48, 64), fps=10, width=32)
    assert next(iter(open_clip(tmp_path / "small.gif"))).shape == (24, 32, 3)


def test_frames_of_two_sizes_and_unknown_suffixes_are_refused(tmp_path):
    mixed = gradient_frames(2) + gradient_frames(1, 32, 32)
    for suffix in (".gif", ".mp4"):
        with pytest.raises(ValueError, match=r"frame 2 is \(32, 32\) but the video is \(48, 64\)"):
            write_video(tmp_path / f"mixed{suffix}", mixed)
    with pytest.raises(CamVidError, match="must end in .gif or .mp4"):
        write_video(tmp_path / "clip.avi", gradient_frames(2))
    with pytest.raises(CamVidError, match="does not exist"):
        open_clip(tmp_path / "missing.mp4")


def test_without_pyav_an_mp4_names_the_video_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    with pytest.raises(
        CamVidError, match=r'writing clip.mp4 needs PyAV.*pip install "camvid_utils\[video\]"'
    ):
        write_video(tmp_path / "clip.mp4", gradient_frames(2))
    assert write_video(tmp_path / "clip.gif", gradient_frames(2)) == 2  # a GIF needs only Pillow


# which frames of a split are a clip


def test_frame_names_parse_into_sequence_and_number():
    assert parse_frame_name("0016E5_07959") == ("0016E5", 7959)
    assert parse_frame_name("Seq05VD_f00030") == ("Seq05VD", 30)
    assert parse_frame_name("my_photo") is None


def test_runs_are_frames_of_one_sequence_a_small_step_apart():
    stems = ["0001TP_006690", "0001TP_006720", "0016E5_07959", "0016E5_07961", "0016E5_07963", "0016E5_08103"]
    assert find_runs(stems) == [[2, 3, 4]]  # 0001TP is labelled once a second: 30 frames apart
    assert find_runs(stems, max_step=30) == [[2, 3, 4], [0, 1]]
    assert find_runs(["a_1", "b_2", "c_3"]) == []


def test_a_panned_clip_moves_the_label_with_the_picture():
    image = torch.arange(2 * 10 * 16, dtype=torch.uint8).reshape(2, 10, 16).repeat(2, 1, 1)[:3]
    mask = torch.arange(10 * 16).reshape(10, 16)
    images, masks = pan_clip(image, mask, num_frames=5, crop=(6, 8))
    assert len(images) == len(masks) == 5
    assert all(i.shape == (3, 6, 8) and m.shape == (6, 8) for i, m in zip(images, masks, strict=True))
    assert torch.equal(masks[0], mask[2:8, :8]) and torch.equal(masks[-1], mask[2:8, 8:])
    assert torch.equal(images[-1], image[:, 2:8, 8:])


# flicker


def test_a_static_clip_does_not_flicker():
    frame = torch.randint(0, 3, (1, 8, 8), generator=torch.Generator().manual_seed(0))
    still = flicker(frame.repeat(5, 1, 1), 3)
    assert still.rate() == 0 and (still.per_step() == 0).all()
    present = still.per_class()
    assert ((present == 0) | present.isnan()).all()


def test_pixels_that_alternate_between_two_classes_flicker_every_frame():
    clip = torch.zeros(6, 4, 5, dtype=torch.long)
    clip[1::2, :, :2] = 1  # the first two columns alternate between class 0 and class 1
    meter = flicker(clip, 3)
    assert meter.rate() == pytest.approx(2 / 5) and torch.allclose(
        meter.per_step(), torch.full((5,), 0.4).double()
    )
    alternating = flicker(clip[:, :, :2], 3)  # only the pixels that alternate
    assert alternating.rate() == 1
    per_class = meter.per_class()
    assert per_class[1] == 1 and per_class[0] == pytest.approx(2 / 5) and per_class[2].isnan()


def test_flicker_per_class_is_one_minus_the_iou_of_consecutive_regions():
    gen = torch.Generator().manual_seed(0)
    prev, curr = torch.randint(0, 3, (2, 16, 16), generator=gen)
    meter = Flicker(3)
    meter.update(prev, curr)
    cm = ConfusionMatrix(3)
    cm.update(curr, prev)
    torch.testing.assert_close(meter.per_class(), 1 - cm.iou())
    assert meter.rate() == pytest.approx((prev != curr).float().mean().item())


def test_void_in_either_frame_is_not_counted():
    clip = torch.tensor([[[0, 0, 1, 255]], [[0, 1, 255, 1]]])
    meter = flicker(clip, 2)
    assert meter.rate() == pytest.approx(1 / 2)  # two pixels counted, one changed
    with pytest.raises(ValueError, match="differ in shape"):
        Flicker(2).update(torch.zeros(2, 2), torch.zeros(2, 3))


# prediction of a clip, in batches and smoothed over time


def test_a_clip_predicts_in_batches_as_frame_by_frame(checkpoint):
    loaded = load_model(checkpoint)
    frames = [torch.from_numpy(f).permute(2, 0, 1) for f in gradient_frames(5)]
    frames += [
        torch.randint(0, 256, (3, 30, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    ]
    one_by_one = [predict_logits(loaded, f).argmax(0) for f in frames]
    for batch_size in (1, 4):
        got = list(predict_frames(loaded, frames, batch_size=batch_size))
        assert len(got) == len(frames)
        assert all(torch.equal(a, b) for a, b in zip(got, one_by_one, strict=True))


def test_a_window_averages_the_softmax_of_each_frames_neighbours(checkpoint):
    loaded = load_model(checkpoint)
    gen = torch.Generator().manual_seed(0)
    frames = [torch.randint(0, 256, (3, 24, 32), dtype=torch.uint8, generator=gen) for _ in range(5)]
    probs = [predict_logits(loaded, f).softmax(0) for f in frames]
    by_hand = [sum(probs[max(t - 1, 0) : t + 2]) / len(probs[max(t - 1, 0) : t + 2]) for t in range(5)]
    got = list(predict_frames(loaded, frames, batch_size=2, window=3))
    assert [torch.equal(a, b.argmax(0)) for a, b in zip(got, by_hand, strict=True)] == [True] * 5
    with pytest.raises(ValueError, match="positive odd number"):
        next(predict_frames(loaded, frames, window=2))


# drawing and the player


def test_the_flicker_charts_draw_one_series_each():
    over_time = viz.plot_flicker({"labels": [0.1, 0.2], "model": [0.2, 0.3]}, fps=15)
    assert len(over_time.axes[0].lines) == 2
    bars = viz.plot_class_flicker(
        {"labels": [0.1, float("nan"), 0.3], "model": [0.2, 0.1, 0.5]}, ["a", "b", "c"]
    )
    assert len(bars.axes[0].patches) == 6


# the command line


def test_predict_a_folder_of_frames_writes_a_gif(checkpoint, tmp_path, capsys):
    for i, frame in enumerate(gradient_frames(5)):
        Image.fromarray(frame).save(tmp_path / f"f{i:03d}.png")
    out = tmp_path / "out" / "clip.gif"
    assert (
        main(["predict", "--checkpoint", str(checkpoint), str(tmp_path), "--video", str(out), "--fps", "10"])
        == 0
    )
    clip = open_clip(out)
    assert len(clip) == 5 and clip.fps == pytest.approx(10) and next(iter(clip)).shape == (48, 64, 3)
    assert "5 frames at 10 fps, TTA: none" in capsys.readouterr().out


def test_predict_a_video_file_writes_an_mp4_at_its_rate_and_each_frame(checkpoint, tmp_path, capsys):
    write_video(tmp_path / "clip.mp4", gradient_frames(4), fps=12)
    argv = ["predict", "--checkpoint", str(checkpoint), str(tmp_path / "clip.mp4"), "--tta", "flip"]
    assert main([*argv, "--video", str(tmp_path / "out.mp4"), "--out", str(tmp_path / "frames")]) == 0
    clip = open_clip(tmp_path / "out.mp4")
    assert len(clip) == 4 and clip.fps == pytest.approx(12)
    written = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert written[:2] == ["clip_00000_mask.png", "clip_00000_overlay.png"] and len(written) == 8
    palette = {tuple(c) for c in COLORS}
    mask = np.asarray(Image.open(tmp_path / "frames" / written[0]))
    assert {tuple(c) for c in np.unique(mask.reshape(-1, 3), axis=0)} <= palette


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--video", "out.avi"], "must end in .mp4 or .gif"),
        (["SECOND", "--video", "out.gif"], "one video file or folder of frames, got 2 inputs"),
        ([], "pass --out FOLDER"),
    ],
)
def test_predict_on_video_refuses_what_it_cannot_do_in_one_line(checkpoint, tmp_path, capsys, extra, message):
    write_video(tmp_path / "clip.gif", gradient_frames(2), fps=10)
    extra = [str(tmp_path / "clip.gif") if arg == "SECOND" else arg for arg in extra]
    assert main(["predict", "--checkpoint", str(checkpoint), str(tmp_path / "clip.gif"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_folder_of_frames_holds_the_same_images_for_a_clip_predict_and_a_dataset(tmp_path):
    from camvid_utils.folder import find_pairs
    from camvid_utils.inference import prediction_names
    from camvid_utils.video import open_clip

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    names = ["a.PNG", "b.jpeg", "c.WebP", "d.TIFF", "e.bmp", "f.jpg", "g.Tif"]
    for name in names:
        Image.new("RGB", (8, 6)).save(images / name)
        Image.new("L", (8, 6)).save(masks / f"{Path(name).stem}.png")
    (images / "notes.txt").write_text("not a frame")
    Image.new("RGB", (8, 6)).save(images / "clip.gif")  # a video, not a frame
    stems = sorted(Path(name).stem for name in names)
    assert [p.stem for p in open_clip(images).frames] == stems
    assert sorted(p.stem for p, _ in prediction_names([str(images)], tmp_path / "out")) == stems
    assert [image.stem for image, _ in find_pairs(images, masks).pairs] == stems
