"""Video: clips read from a video file or a folder of frames, predicted in batches, written as GIF or MP4.

A clip is read lazily, one (H, W, 3) uint8 frame at a time, so a long video never sits in memory.
GIF needs only Pillow; MP4 (and reading other video files) uses PyAV, an optional extra:
``pip install "camvid_utils[video]"`` (``requirements.txt`` installs it).

CamVid itself is video labelled at intervals: a frame is named ``<sequence>_<number>``
(``0016E5_07959``, ``Seq05VD_f00000``) with the number counted in frames of the 30 Hz camera.
``find_runs`` finds the stretches of a split that are a clip (consecutive numbers a small step apart).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageSequence

from .checkpoint import LoadedModel
from .data import IMAGE_SUFFIXES, UNREADABLE, CamVidError, to_rgb, unreadable
from .inference import predict_batch_logits

VIDEO_SUFFIXES = (".mp4", ".gif", ".avi", ".mov", ".mkv", ".webm")
WRITE_SUFFIXES = (".gif", ".mp4")
# A folder of frames has no rate of its own: CamVid's labelled clips are every second frame of 30 Hz.
DEFAULT_FPS = 15.0
CAMERA_FPS = 30.0
NEEDS_PYAV = 'needs PyAV, the optional "video" extra: pip install "camvid_utils[video]" (or pip install av)'
_FRAME_NAME = re.compile(r"(?P<sequence>.+?)_f?(?P<number>\d+)")


def _av(what: str):
    try:
        import av
    except ImportError:
        raise CamVidError(f"{what} {NEEDS_PYAV}.") from None
    return av


def is_video(path: str | Path) -> bool:
    """Return whether ``path`` is a file with a video suffix (``.mp4``, ``.gif``, ...)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES and Path(path).is_file()


@dataclass
class Clip:
    """A sequence of frames from a video file or a folder of images (sorted by name), read in order.

    ``fps`` is the video's frame rate, None for a folder; ``names`` one name per frame (the image's
    stem, or ``<video stem>_<index>``), when known without decoding the video.
    """

    path: Path
    fps: float | None
    frames: list[Path] | None  # the images of a folder; None for a video file

    def __len__(self) -> int:
        if self.frames is not None:
            return len(self.frames)
        if self.path.suffix.lower() == ".gif":
            with Image.open(self.path) as gif:
                return getattr(gif, "n_frames", 1)
        with _av(f"reading {self.path.name}").open(str(self.path)) as container:
            counted = container.streams.video[0].frames
        return counted or sum(1 for _ in self)

    @property
    def names(self) -> list[str]:
        """Return one name per frame, in order."""
        if self.frames is not None:
            return [p.stem for p in self.frames]
        return [f"{self.path.stem}_{i:05d}" for i in range(len(self))]

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield the frames as (H, W, 3) uint8 arrays."""
        if self.frames is not None:
            for path in self.frames:
                try:
                    with Image.open(path) as img:
                        yield to_rgb(img, path)
                except UNREADABLE as err:
                    if isinstance(err, CamVidError):
                        raise
                    raise CamVidError(f"{unreadable(path, err)}.") from None
        elif self.path.suffix.lower() == ".gif":
            with Image.open(self.path) as gif:
                for frame in ImageSequence.Iterator(gif):
                    yield np.asarray(frame.convert("RGB"))
        else:
            with _av(f"reading {self.path.name}").open(str(self.path)) as container:
                for frame in container.decode(video=0):
                    yield frame.to_ndarray(format="rgb24")


def open_clip(path: str | Path) -> Clip:
    """Return the clip in a video file or a folder of images (its ``.png``/``.jpg`` files, sorted)."""
    path = Path(path)
    if path.is_dir():
        frames = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not frames:
            raise CamVidError(f"{path} holds no frames ({', '.join(IMAGE_SUFFIXES)}).")
        return Clip(path, None, frames)
    if not path.is_file():
        raise CamVidError(f"{path} does not exist; pass a video file or a folder of frames.")
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise CamVidError(f"{path} is not a video ({', '.join(VIDEO_SUFFIXES)}) or a folder of frames.")
    return Clip(path, frame_rate(path), None)


def frame_rate(path: str | Path) -> float | None:
    """Return a video file's frame rate in frames per second (None if the file does not say)."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        with Image.open(path) as gif:
            duration = gif.info.get("duration")  # ms per frame, stored in hundredths of a second
        return 1000 / duration if duration else None
    try:
        with _av(f"reading {path.name}").open(str(path)) as container:
            if not container.streams.video:
                raise CamVidError(
                    f"{path} has no video stream (audio only?); pass a video file with pictures, or a "
                    "folder of frames."
                )
            rate = container.streams.video[0].average_rate
    except CamVidError:
        raise
    except Exception as err:  # PyAV raises its own error classes for unreadable files
        raise CamVidError(f"cannot read video {path}: {str(err).splitlines()[0]}") from None
    return float(rate) if rate else None


def _even(frame: np.ndarray) -> np.ndarray:
    """Crop a row or column off a frame of odd height or width (H.264's 4:2:0 needs even sizes)."""
    h, w = frame.shape[:2]
    return frame[: h - h % 2, : w - w % 2]


def _resized(frame: np.ndarray, width: int | None) -> np.ndarray:
    if width is None or frame.shape[1] == width:
        return frame
    height = max(round(frame.shape[0] * width / frame.shape[1]), 1)
    return np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BILINEAR))


# The frame rates each format can store: a GIF keeps a frame's duration in hundredths of a second
# (1 to 65535), an MP4 here a rate of at most 1001ths (kept within what players handle).
FPS_RANGE = {".gif": (100 / 65535, 100.0), ".mp4": (0.01, 1000.0)}


def check_fps(path: str | Path, fps: float) -> None:
    """Raise ``ValueError`` naming ``--fps`` when the format of ``path`` cannot store ``fps``."""
    suffix = Path(path).suffix.lower()
    low, high = FPS_RANGE.get(suffix, (0.0, float("inf")))
    if not low <= fps <= high:
        article = "a GIF" if suffix == ".gif" else "an MP4"
        raise ValueError(
            f"--fps {fps:g} is outside what {article} can store ({low:.2g} to {high:g} fps); pass an --fps "
            "in that range."
        )


def write_video(
    path: str | Path, frames: Iterable[np.ndarray], fps: float = DEFAULT_FPS, width: int | None = None
) -> int:
    """Write (H, W, 3) uint8 frames of one size as a ``.gif`` or ``.mp4``; return the number written.

    ``width`` resizes every frame to that width (aspect ratio kept). A GIF stores each frame's
    duration in hundredths of a second, so its rate is rounded to one (15 fps plays at 1/0.07 s ≈ 14.3),
    and Pillow merges identical consecutive frames into one longer frame. An MP4 is H.264 at
    ``fps`` exactly (via PyAV); a frame of odd height or width loses its last row or column.
    """
    path, fps = Path(path), float(fps)
    if not (fps > 0 and np.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}.")
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise CamVidError(f"cannot write {path.name}: the video must end in .gif or .mp4.")
    check_fps(path, fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    sized = (_resized(np.asarray(frame, dtype=np.uint8), width) for frame in frames)
    count, first = 0, None

    def checked(frame: np.ndarray) -> np.ndarray:
        nonlocal count, first
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected (H, W, 3) uint8 frames, got {frame.shape}.")
        first = first or frame.shape
        if frame.shape != first:
            raise ValueError(
                f"frame {count} is {frame.shape[:2]} but the video is {first[:2]}: one size only."
            )
        count += 1
        return frame

    if suffix == ".gif":
        pictures = (Image.fromarray(checked(frame)) for frame in sized)
        head = next(pictures, None)
        if head is None:
            raise ValueError(f"no frames to write to {path}.")
        head.save(path, save_all=True, append_images=pictures, duration=round(100 / fps) * 10, loop=0)
        return count
    av = _av(f"writing {path.name}")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), mode="w") as container:
        stream = None
        for frame in sized:
            frame = _even(checked(frame))
            if stream is None:
                stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
                stream.height, stream.width = frame.shape[:2]
                stream.pix_fmt = "yuv420p"
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        if stream is None:
            raise ValueError(f"no frames to write to {path}.")
        container.mux(stream.encode())  # flush the frames the encoder still holds
    return count


def _as_chw(frame) -> torch.Tensor:
    """Return a (3, H, W) uint8 tensor from a (3, H, W) tensor or an (H, W, 3) array."""
    if isinstance(frame, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)
    return frame


def _batches(frames: Iterable, batch_size: int) -> Iterator[torch.Tensor]:
    """Yield (B, 3, H, W) uint8 stacks of consecutive frames; a new size starts a new batch."""
    batch: list[torch.Tensor] = []
    for frame in map(_as_chw, frames):
        if batch and (len(batch) == batch_size or frame.shape != batch[0].shape):
            yield torch.stack(batch)
            batch = []
        batch.append(frame)
    if batch:
        yield torch.stack(batch)


def predict_frames(
    loaded: LoadedModel,
    frames: Iterable,
    *,
    batch_size: int = 4,
    tta: str | None = None,
    window: int = 1,
) -> Iterator[torch.Tensor]:
    """Yield the predicted class ids of each frame of a clip, in order, predicting ``batch_size`` at once.

    With ``window`` > 1 (odd), each frame's softmax is first averaged with those of its neighbours,
    ``window // 2`` on each side (fewer at the clip's ends): a temporal smoothing that calms flicker
    but blurs what moves. ``tta="flip"`` averages each frame with its mirror (``inference``).

    Shape:
        frames (3, H, W) uint8 tensors or (H, W, 3) uint8 arrays -> pred (H, W) int64 each.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number of frames, got {window}.")
    half = window // 2
    recent: deque[tuple[int, torch.Tensor]] = deque(maxlen=window)  # (frame index, softmax (C, H, W))

    def centred(centre: int) -> torch.Tensor:
        probs = [p for i, p in recent if abs(i - centre) <= half]
        return (sum(probs) / len(probs)).argmax(0)

    index = -1
    for images in _batches(frames, batch_size):
        logits = predict_batch_logits(loaded, images, tta)  # (B, C, H, W)
        if half == 0:
            yield from logits.argmax(1).cpu()
            continue
        for probs in logits.softmax(1).cpu():
            index += 1
            recent.append((index, probs))
            if index >= half:
                yield centred(index - half)
    if half:
        for centre in range(max(index - half + 1, 0), index + 1):  # the last frames lack right neighbours
            yield centred(centre)


def parse_frame_name(stem: str) -> tuple[str, int] | None:
    """Return ``(sequence, frame number)`` of a CamVid frame name, None for another name.

    ``0016E5_07959`` -> ``("0016E5", 7959)``; ``Seq05VD_f00000`` -> ``("Seq05VD", 0)``.
    """
    match = _FRAME_NAME.fullmatch(stem)
    return (match["sequence"], int(match["number"])) if match else None


def find_runs(stems: Sequence[str], max_step: int = 2) -> list[list[int]]:
    """Return the clips among sorted frame names: runs of indices of one sequence, numbers ``max_step`` apart.

    Only runs of two frames or more are returned, longest first. With ``max_step=2`` (the default) a
    run is video at 15 frames per second or more; CamVid's frames labelled once a second are 30 apart.
    """
    runs: list[list[int]] = []
    previous = None
    for index, stem in enumerate(stems):
        parsed = parse_frame_name(stem)
        if parsed and previous and parsed[0] == previous[0] and 0 < parsed[1] - previous[1] <= max_step:
            runs[-1].append(index)
        else:
            runs.append([index])
        previous = parsed
    return sorted((run for run in runs if len(run) > 1), key=len, reverse=True)


def pan_clip(
    image: torch.Tensor, mask: torch.Tensor, num_frames: int, crop: tuple[int, int]
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Return a made-up clip: a ``crop``-sized window panned from the left edge to the right of one frame.

    A stand-in for video where a split has no consecutive frames; each crop of the frame comes with
    the same crop of its label, so the labels move exactly as the picture does.

    Shape:
        image (3, H, W), mask (H, W) -> num_frames of (3, *crop) and of (*crop).
    """
    h, w = crop
    if h > image.shape[-2] or w > image.shape[-1]:
        raise ValueError(f"crop {crop} is larger than the frame {tuple(image.shape[-2:])}.")
    lefts = np.linspace(0, image.shape[-1] - w, num_frames).round().astype(int)
    top = (image.shape[-2] - h) // 2
    images = [image[:, top : top + h, x : x + w].clone() for x in lefts]
    masks = [mask[top : top + h, x : x + w].clone() for x in lefts]
    return images, masks
