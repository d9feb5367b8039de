"""CamVid as a PyTorch dataset, for both layouts people download.

Kaggle layout ("carlolepelaars/camvid", 32 classes, 960x720)::

    root/class_dict.csv            name,r,g,b (Void = 0,0,0)
    root/<split>/<stem>.png        RGB frames
    root/<split>_labels/<stem>_L.png   RGB colour-coded labels

SegNet layout (the SegNet tutorial's 11-class copy, 480x360, the benchmark protocol)::

    root/<split>/<name>.png        RGB frames
    root/<split>annot/<name>.png   8-bit class ids 0..11, 11 = Unlabelled

A folder of your own (``classes.csv``, ``images/``, ``masks/``) is the third layout, ``"folder"``: see
``camvid_utils.folder`` and docs/own-data.md.

Every item is ``(image, mask)``: ``image`` float32 (3, H, W) in [0, 1] and ``mask`` int64 (H, W) of
class ids with 255 for void, at the files' native resolution. Void (Kaggle "Void", SegNet
"Unlabelled") is never a class: it is ``ignore_index`` and is skipped by the loss and the metrics.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset
from torchvision import tv_tensors

IGNORE_INDEX = 255

CAMVID11_CLASSES = (
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
)
# The SegNet tutorial's display colours, in class-id order.
CAMVID11_COLORS = (
    (128, 128, 128),
    (128, 0, 0),
    (192, 192, 128),
    (128, 64, 128),
    (60, 40, 222),
    (128, 128, 0),
    (192, 128, 128),
    (64, 64, 128),
    (64, 0, 128),
    (64, 64, 0),
    (0, 128, 192),
)

# How the 32 Kaggle classes map onto the 11 SegNet classes, measured against the SegNet labels
# (see data/README.md). It is the common grouping (MathWorks' camvidPixelLabelIDs) except that the
# SegNet labels leave Animal, Child, CartLuggagePram, OtherMoving, TrafficCone, Archway and Bridge
# unlabelled (None = void here) and count RoadShoulder as Road.
CAMVID32_TO_11 = {
    "Animal": None,
    "Archway": None,
    "Bicyclist": "Bicyclist",
    "Bridge": None,
    "Building": "Building",
    "Car": "Car",
    "CartLuggagePram": None,
    "Child": None,
    "Column_Pole": "Pole",
    "Fence": "Fence",
    "LaneMkgsDriv": "Road",
    "LaneMkgsNonDriv": "Road",
    "Misc_Text": "SignSymbol",
    "MotorcycleScooter": "Bicyclist",
    "OtherMoving": None,
    "ParkingBlock": "Pavement",
    "Pedestrian": "Pedestrian",
    "Road": "Road",
    "RoadShoulder": "Road",
    "Sidewalk": "Pavement",
    "SignSymbol": "SignSymbol",
    "Sky": "Sky",
    "SUVPickupTruck": "Car",
    "TrafficCone": None,
    "TrafficLight": "SignSymbol",
    "Train": "Car",
    "Tree": "Tree",
    "Truck_Bus": "Car",
    "Tunnel": "Building",
    "VegetationMisc": "Tree",
    "Void": None,
    "Wall": "Building",
}

CLASS_SETS = ("camvid32", "camvid11")
SPLITS = ("train", "val", "test")
# the image files the package reads as frames (a suffix in any case): folders, predict's inputs, clips
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
_GET_DATA = (
    "Get the data with `python -m camvid_utils download` (the SegNet 11-class copy, into the folder "
    "find_data_root() looks in) or the Kaggle steps in docs/data.md, then pass that folder (or set "
    "CAMVID_ROOT)."
)


class CamVidError(ValueError):
    """Raised for data that cannot be loaded; the message names the file and says what to do."""


def read_class_dict(path: str | os.PathLike) -> list[tuple[str, tuple[int, int, int]]]:
    """Return the ``(name, (r, g, b))`` rows of a Kaggle ``class_dict.csv``, in file order.

    Stray spaces around fields, a missing trailing newline and CRLF line ends are accepted.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CamVidError(f"cannot read {path}: {err.strerror}. {_GET_DATA}") from None
    # Spreadsheets save "Unicode text" as UTF-16 with a byte-order mark; everything else is UTF-8.
    encoding = "utf-16" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        lines = raw.decode(encoding).splitlines()
    except UnicodeDecodeError as err:
        raise CamVidError(
            f"{path} is not UTF-8 text (byte {err.start} is {raw[err.start : err.start + 1]!r}); save it "
            "as a UTF-8 CSV (name,r,g,b) or re-download class_dict.csv."
        ) from None
    rows, seen, names = [], {}, {}
    for lineno, line in enumerate(lines, start=1):
        fields = [f.strip() for f in line.split(",")]
        if lineno == 1 and [f.lower() for f in fields] == ["name", "r", "g", "b"]:
            continue
        if fields == [""]:
            continue
        try:
            if len(fields) != 4 or not fields[0]:
                raise ValueError
            rgb = tuple(int(f) for f in fields[1:])
            if not all(0 <= v <= 255 for v in rgb):
                raise ValueError
        except ValueError:
            raise CamVidError(
                f"{path}, line {lineno}: expected 'name,r,g,b' with r, g, b in 0..255, "
                f"got {line!r}. Fix that line or re-download class_dict.csv."
            ) from None
        if rgb in seen:
            raise CamVidError(
                f"{path}, line {lineno}: colour {rgb} of {fields[0]!r} is already used by "
                f"{seen[rgb]!r}; every class needs its own colour."
            )
        if fields[0].casefold() in names:
            raise CamVidError(
                f"{path}, line {lineno}: class {fields[0]!r} is already defined on line "
                f"{names[fields[0].casefold()]}; every class name must appear once. Delete one of the "
                "two rows or re-download class_dict.csv."
            )
        seen[rgb] = fields[0]
        names[fields[0].casefold()] = lineno
        rows.append((fields[0], rgb))
    if not rows:
        raise CamVidError(f"{path} holds no classes; expected a header and 'name,r,g,b' rows.")
    return rows


def _pack(rgb: np.ndarray) -> np.ndarray:
    """Pack (..., 3) uint8 colours into one int32 per pixel (0xRRGGBB)."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


class ColorDecoder:
    """Turns RGB colour-coded labels into class ids with a single table lookup per pixel.

    ``palette`` maps each colour to a class id or ``IGNORE_INDEX``. Colours outside the palette
    become void with one warning per file naming the colours, or raise when ``strict``.
    """

    _UNKNOWN = 254  # never a class id: at most 254 classes fit in the table

    def __init__(self, palette: dict[tuple[int, int, int], int], strict: bool = False):
        keys = _pack(np.array(list(palette), dtype=np.uint8).reshape(-1, 3))
        self._table = np.full(1 << 24, self._UNKNOWN, dtype=np.uint8)
        self._table[keys] = np.array(list(palette.values()), dtype=np.uint8)
        self.strict = strict

    def __call__(self, label_rgb: np.ndarray, path: str | os.PathLike = "<label>") -> np.ndarray:
        """Return (H, W) uint8 class ids for an (H, W, 3) uint8 label image."""
        ids = self._table[_pack(label_rgb)]
        unknown = ids == self._UNKNOWN
        if unknown.any():
            colors, counts = np.unique(label_rgb[unknown], axis=0, return_counts=True)
            listed = ", ".join(
                f"{tuple(int(v) for v in c)} x{n}" for c, n in zip(colors, counts, strict=True)
            )
            message = (
                f"{path}: {int(unknown.sum())} pixels have colours that are not in class_dict.csv ({listed})"
            )
            if self.strict:
                raise CamVidError(message + ". Fix the label or load with strict=False.")
            warnings.warn(message + "; they are treated as void (ignored).", stacklevel=3)
            ids[unknown] = IGNORE_INDEX
        return ids


_ORIENTATION = 0x0112  # the EXIF tag a camera sets instead of rotating the pixels


def exif_orientation(img: Image.Image) -> int:
    """Return the image's EXIF Orientation tag: 1 (or 0, untagged) shows it as stored, 2..8 turn it."""
    try:
        return int(img.getexif().get(_ORIENTATION, 1))
    except (TypeError, ValueError):  # a damaged tag is ignored, as by upright()'s exif_transpose
        return 1


def shown_size(img: Image.Image) -> tuple[int, int]:
    """Return the (width, height) of ``img`` as it is shown: upright by its EXIF orientation.

    Reads only the header. Orientations 5 to 8 turn the picture a quarter: width and height swap.
    """
    width, height = img.size
    return (height, width) if exif_orientation(img) in (5, 6, 7, 8) else (width, height)


def orientation_advice(
    image_path, stored: tuple[int, int], shown: tuple[int, int], mask: tuple[int, int]
) -> str:
    """Say why a mask of the photo's stored size does not fit a photo shown turned by its EXIF tag."""
    if mask != stored or stored == shown:
        return ""
    return (
        f" The photo is stored {stored[0]}x{stored[1]} and shown turned by its EXIF orientation tag; its "
        "mask was drawn on the stored pixels. Masks must be drawn on the photo as it is shown (upright, as "
        "labelling tools display it): turn the mask the same way, or save the photo upright without the tag."
    )


def upright(img: Image.Image) -> Image.Image:
    """Return ``img`` turned as its EXIF Orientation tag says it is viewed (``img`` itself if untagged)."""
    if img.getexif().get(_ORIENTATION, 1) in (0, 1):
        return img
    return ImageOps.exif_transpose(img)


JPEG_MAGIC = b"\xff\xd8\xff"


def check_not_jpeg(path: str | os.PathLike) -> None:
    """Raise ``CamVidError`` naming ``path`` when the label file holds JPEG bytes (whatever its suffix).

    JPEG's lossy compression blurs the edges of every region, so a label saved as JPEG holds
    colours or ids that were never drawn, many of them another valid class: silently wrong labels.
    """
    with open(path, "rb") as f:
        head = f.read(len(JPEG_MAGIC))
    if head == JPEG_MAGIC:
        raise CamVidError(
            f"{path} holds JPEG bytes; JPEG compression changes label values at every edge, many into "
            "another valid class. Save the label as PNG (from the original, not from this JPEG) or "
            "re-download the dataset."
        )


def to_rgb(img: Image.Image, path: str | os.PathLike = "<image>") -> np.ndarray:
    """Return an image of any mode Pillow reads as (H, W, 3) uint8, upright by its EXIF orientation.

    16-bit grey keeps its top 8 bits, 1-bit becomes 0/255, a palette is looked up (transparency
    dropped), grey+alpha and RGBA lose their alpha. Float images are refused, naming the file.
    """
    if img.mode == "F":
        raise CamVidError(f"{path} holds floating-point pixels; save it as an 8-bit RGB image.")
    img = upright(img)
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):  # PNG's 16-bit grey
        grey = (np.clip(np.asarray(img, dtype=np.int64), 0, 65535) >> 8).astype(np.uint8)
    elif img.mode == "1":
        grey = np.asarray(img, dtype=np.uint8) * 255
    elif img.mode in ("L", "LA", "La"):
        grey = np.asarray(img.getchannel(0))
    elif img.mode == "RGB":
        return np.array(img)  # a writable copy
    else:  # RGBA, P (with or without transparency), CMYK, YCbCr, ...
        return np.array((img.convert("RGBA") if img.mode == "P" else img).convert("RGB"))
    return np.repeat(grey[..., None], 3, axis=2)


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """Return the image file at ``path`` as ``predict`` takes it: upright by its EXIF orientation tag
    (as a phone shows it), RGB whatever its mode, and ``CamVidError`` naming the file if it cannot be read.

    Shape:
        (3, H, W) uint8.
    """
    try:
        with Image.open(path) as img:
            rgb = to_rgb(img, path)  # (H, W, 3) uint8
    except FileNotFoundError:
        raise CamVidError(f"{path} does not exist.") from None
    except UNREADABLE as err:
        if isinstance(err, CamVidError):
            raise
        raise CamVidError(unreadable(path, err) + ".") from None
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


def to_class_ids(img: Image.Image, path: str | os.PathLike = "<label>") -> np.ndarray:
    """Return a single-channel label of any integer mode as (H, W) int64 class ids.

    8-bit grey and palette images give their values (a palette label stores ids as its indices),
    16-bit grey its values, 1-bit 0 and 1, grey+alpha its grey. Colour images are accepted only
    when all three channels are equal (grey saved as RGB); others are refused, naming the file.
    The label is turned upright by its EXIF orientation tag, like its frame.
    """
    img = upright(img)
    if img.mode in ("L", "P", "I;16", "I;16L", "I;16B", "I;16N", "I", "1"):
        return np.asarray(img).astype(np.int64)
    if img.mode in ("LA", "La"):
        return np.asarray(img.getchannel(0)).astype(np.int64)
    if img.mode in ("RGB", "RGBA"):
        rgb = np.asarray(img)[..., :3]
        if (rgb == rgb[..., :1]).all():
            return rgb[..., 0].astype(np.int64)
    raise CamVidError(
        f"{path} is a {img.mode} image; a SegNet label holds one class id per pixel (8-bit grey, "
        "0..11): convert it or use the Kaggle layout for colour-coded labels."
    )


# What Pillow raises for a file it cannot read: damaged, not an image, or over its pixel limit.
UNREADABLE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def unreadable(path: str | os.PathLike, err: BaseException) -> str:
    """Return why Pillow could not read the image at ``path``, in one line that says what to do."""
    if isinstance(err, Image.DecompressionBombError):
        return (
            f"{path} has more pixels than Pillow reads safely ({Image.MAX_IMAGE_PIXELS} at most, a guard "
            "against decompression bombs); resize it below that or remove it"
        )
    return f"cannot decode {path} ({str(err).splitlines()[0]}); the file is damaged or not an image"


def _read_png(path: Path, mode: str) -> np.ndarray:
    """Read ``path`` as (H, W, 3) uint8 (``mode="RGB"``) or as (H, W) int64 class ids (``"ids"``)."""
    try:
        with Image.open(path) as img:
            return to_rgb(img, path) if mode == "RGB" else to_class_ids(img, path)
    except FileNotFoundError:
        raise CamVidError(f"{path} does not exist. {_GET_DATA}") from None
    except UNREADABLE as err:
        if isinstance(err, CamVidError):
            raise
        advice = "" if isinstance(err, Image.DecompressionBombError) else ": re-download or delete it"
        raise CamVidError(f"{unreadable(path, err)}{advice}.") from None


def _detect_layout(root: Path, split: str) -> str:
    if (root / "classes.csv").is_file() and (root / "images").is_dir():
        return "folder"  # a dataset of your own: camvid_utils.folder
    if (root / "class_dict.csv").is_file() and (root / f"{split}_labels").is_dir():
        return "kaggle"
    if (root / f"{split}annot").is_dir():
        return "segnet"
    if (root / split).is_dir():
        raise CamVidError(
            f"{root / split} has frames but no labels: expected {root / f'{split}_labels'} and "
            f"{root / 'class_dict.csv'} (Kaggle layout) or {root / f'{split}annot'} (SegNet layout)."
        )
    raise CamVidError(
        f"no CamVid '{split}' split under {root}: expected {root / split} with "
        f"{split}_labels/ (Kaggle) or {split}annot/ (SegNet). {_GET_DATA}"
    )


def _pngs(folder: Path) -> list[Path]:
    """Return the .png files of ``folder``, sorted (any case of the suffix: some cameras write .PNG)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())


def _either_case(folder: Path, stem: str, suffix: str) -> Path:
    """Return ``folder/stem.png``, or ``stem`` with the frame's own suffix case when only that exists."""
    lower = folder / f"{stem}.png"
    other = folder / f"{stem}{suffix}"
    return other if not lower.exists() and other.exists() else lower


class CamVid(Dataset):
    """CamVid frames and labels; the layout (Kaggle or SegNet) is detected from ``root``.

    Args:
        root: folder holding the split folders.
        split: "train", "val" or "test".
        class_set: "camvid32" (Kaggle layout only, the default there) or "camvid11" (the SegNet
            benchmark classes, the default for the SegNet layout; on the Kaggle layout the 32
            classes are mapped with ``CAMVID32_TO_11``).
        transform: called as ``transform(image, mask)`` with a uint8 ``tv_tensors.Image`` and an
            int64 ``tv_tensors.Mask``; see ``camvid_utils.transforms``. Without it the item is
            ``(float32 image in [0, 1], int64 mask)``.
        strict: raise on label colours missing from ``class_dict.csv`` instead of warning and
            mapping them to void.

    Shape:
        image (3, H, W), mask (H, W) at the files' native resolution.
    """

    ignore_index = IGNORE_INDEX

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        *,
        class_set: str | None = None,
        transform: Callable | None = None,
        strict: bool = False,
    ):
        self.root = Path(root).expanduser()
        if split not in SPLITS:
            raise CamVidError(f"split must be one of {SPLITS}, got {split!r}.")
        if class_set is not None and class_set not in CLASS_SETS:
            raise CamVidError(f"class_set must be one of {CLASS_SETS} or None, got {class_set!r}.")
        if not self.root.is_dir():
            raise CamVidError(f"dataset folder {self.root} does not exist. {_GET_DATA}")
        self.split, self.transform, self.strict = split, transform, strict
        self.layout = _detect_layout(self.root, split)
        if self.layout == "folder":
            self._init_folder()
            # labelled in CamVid's 11 classes, a folder can be scored by a camvid11 model (class_set
            # stays None: the classes are the folder's own, which happen to be CamVid's)
            if class_set is not None and not (class_set == "camvid11" and self.classes == CAMVID11_CLASSES):
                listed = ", ".join(self.classes[:6]) + (" ..." if len(self.classes) > 6 else "")
                raise CamVidError(
                    f"{self.root} is a dataset folder of your own, whose classes are those of its "
                    f"classes.csv ({len(self.classes)}: {listed}), not CamVid's {class_set!r}: a model "
                    f"trained on {class_set} cannot score it, and "
                    "--class-set does not apply to it (train on it without --class-set)."
                )
        elif self.layout == "kaggle":
            self._init_kaggle(class_set or "camvid32", strict)
        else:
            if class_set == "camvid32":
                raise CamVidError(
                    f"{self.root} is the SegNet 11-class layout; it has no 32-class labels. "
                    "Use class_set='camvid11' or the Kaggle version."
                )
            self._init_segnet()
        if not self.frames:
            raise CamVidError(f"{self.root / split} holds no .png frames. {_GET_DATA}")

    def _init_kaggle(self, class_set: str, strict: bool) -> None:
        self.class_set = class_set
        rows = read_class_dict(self.root / "class_dict.csv")
        if class_set == "camvid32":
            self.classes = tuple(name for name, _ in rows if name.lower() != "void")
            self.colors = tuple(rgb for name, rgb in rows if name.lower() != "void")
            ids = {name: i for i, name in enumerate(self.classes)}
            palette = {rgb: ids.get(name, IGNORE_INDEX) for name, rgb in rows}
        else:
            unknown = [name for name, _ in rows if name not in CAMVID32_TO_11]
            if unknown:
                raise CamVidError(
                    f"{self.root / 'class_dict.csv'} has classes {unknown} that the 32-to-11 "
                    "mapping does not know; use class_set='camvid32'."
                )
            self.classes, self.colors = CAMVID11_CLASSES, CAMVID11_COLORS
            ids = {name: i for i, name in enumerate(self.classes)}
            palette = {rgb: ids.get(CAMVID32_TO_11[name], IGNORE_INDEX) for name, rgb in rows}
        self._decoder = ColorDecoder(palette, strict=strict)
        self.frames = _pngs(self.root / self.split)
        labels = self.root / f"{self.split}_labels"
        self.labels = [_either_case(labels, f"{frame.stem}_L", frame.suffix) for frame in self.frames]

    def _init_folder(self) -> None:
        from .folder import FolderSplit  # it builds on this module

        self._folder = FolderSplit(self.root, self.split)
        self.class_set = None  # the folder's own classes, from its classes.csv
        self.classes, self.colors = self._folder.table.names, self._folder.table.display_colors()
        self.frames, self.labels = self._folder.frames, self._folder.labels

    def _init_segnet(self) -> None:
        self.class_set = "camvid11"
        self.classes, self.colors = CAMVID11_CLASSES, CAMVID11_COLORS
        self.frames = _pngs(self.root / self.split)
        annot = self.root / f"{self.split}annot"
        self.labels = [_either_case(annot, frame.stem, frame.suffix) for frame in self.frames]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def has_void(self) -> bool:
        """Whether a label can hold void (255): CamVid's can, a folder's when its table has a void row."""
        return self.layout != "folder" or self._folder.table.void_value is not None

    def __len__(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        return (
            f"CamVid(root='{self.root}', split='{self.split}', layout='{self.layout}', "
            f"class_set='{self.class_set}', frames={len(self)})"
        )

    def load_mask(self, index: int) -> np.ndarray:
        """Return the label of frame ``index`` as (H, W) uint8 class ids, 255 = void."""
        path = self.labels[index]
        if not path.is_file():
            raise CamVidError(
                f"frame {self.frames[index]} has no label: expected {path}. Restore the label or "
                "remove the frame."
            )
        if self.layout == "folder":
            return self._folder.load_mask(path)
        check_not_jpeg(path)
        if self.layout == "kaggle":
            return self._decoder(_read_png(path, "RGB"), path)
        return self._segnet_ids(_read_png(path, "ids"), path)

    def _segnet_ids(self, label: np.ndarray, path: Path) -> np.ndarray:
        """Map SegNet ids to ours: 0..10 are the classes, 11 (Unlabelled) and 255 are void.

        Any other id is not a SegNet class: void with one warning naming the file and the ids, as
        for off-palette colours in the Kaggle layout (an error when ``strict``).
        """
        known = len(self.classes)
        ids = np.where(label < known, label, IGNORE_INDEX).astype(np.uint8)
        foreign = (label > known) & (label != IGNORE_INDEX)
        if foreign.any():
            values, counts = np.unique(label[foreign], return_counts=True)
            listed = ", ".join(f"{v} x{n}" for v, n in zip(values.tolist(), counts.tolist(), strict=True))
            message = (
                f"{path}: {int(foreign.sum())} pixels hold ids that are not SegNet classes 0..{known} "
                f"({listed})"
            )
            if self.strict:
                raise CamVidError(message + ". Fix the label or load with strict=False.")
            warnings.warn(message + "; they are treated as void (ignored).", stacklevel=3)
        return ids

    def load_image(self, index: int) -> np.ndarray:
        """Return frame ``index`` as (H, W, 3) uint8."""
        return _read_png(self.frames[index], "RGB")

    def load_frame(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return frame ``index`` untransformed: the image and its label, checked to match in size.

        Shape:
            image (3, H, W) uint8, mask (H, W) int64 with 255 = void.
        """
        image, mask = self.load_image(index), self.load_mask(index)
        if image.shape[:2] != mask.shape:
            with Image.open(self.frames[index]) as img:
                stored = img.size
            shown, drawn = (image.shape[1], image.shape[0]), (mask.shape[1], mask.shape[0])
            raise CamVidError(
                f"{self.frames[index]} is {shown[0]}x{shown[1]} but its label "
                f"{self.labels[index]} is {drawn[0]}x{drawn[1]} (width x height); "
                "they must match." + orientation_advice(self.frames[index], stored, shown, drawn)
            )
        return torch.from_numpy(image).permute(2, 0, 1), torch.from_numpy(mask).long()

    def __getitem__(self, index: int):
        image, mask = self.load_frame(index)  # (3, H, W) uint8, (H, W) int64
        if self.transform is None:
            return image.float().div_(255), mask
        return self.transform(tv_tensors.Image(image), tv_tensors.Mask(mask))


def check_labels(dataset: CamVid) -> None:
    """Raise ``CamVidError`` naming the labels of ``dataset`` that hold JPEG bytes, before any work.

    Reads the first bytes of each label only, so a whole split is checked in well under a second;
    one error lists them all, instead of one per file in the middle of an epoch. A folder of your own
    is checked by ``camvid_utils.masks`` instead, whose errors say what was found in each mask.
    """
    if dataset.layout == "folder":
        return
    jpegs = []
    for path in dataset.labels:
        try:
            check_not_jpeg(path)
        except CamVidError:
            jpegs.append(path)
        except OSError:
            pass  # a missing label is reported, naming its frame, when it is loaded
    if jpegs:
        listed = ", ".join(map(str, jpegs[:5])) + (f" and {len(jpegs) - 5} more" if len(jpegs) > 5 else "")
        raise CamVidError(
            f"{len(jpegs)} of {len(dataset.labels)} {dataset.split} labels hold JPEG bytes ({listed}); "
            "JPEG compression changes label values at every edge, many into another valid class. Save "
            "the labels as PNG (from the originals, not from these JPEGs) or re-download the dataset."
        )


def pixel_counts(dataset: CamVid, *, with_image_totals: bool = False):
    """Return how many pixels of each class the dataset's labels hold (void not counted).

    With ``with_image_totals``, also return, per class, the total pixel count of the images that
    contain that class: the denominator of median-frequency balancing (Eigen and Fergus, SegNet).

    Shape:
        (num_classes,) int64, or a pair of them.
    """
    counts = torch.zeros(dataset.num_classes, dtype=torch.int64)
    totals = torch.zeros(dataset.num_classes, dtype=torch.int64)
    for i in range(len(dataset)):
        frame, total = mask_counts(dataset.load_mask(i), dataset.num_classes)
        counts += frame
        totals += total
    return (counts, totals) if with_image_totals else counts


def mask_counts(mask, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return one label's pixels per class (void not counted) and, per class, the label's pixel total
    if the class is in it, else 0: one image's share of ``pixel_counts(..., with_image_totals=True)``.

    Shape:
        mask (H, W) class ids, 255 = void -> two (num_classes,) int64.
    """
    mask = torch.as_tensor(mask).long()
    frame = torch.bincount(mask[mask != IGNORE_INDEX], minlength=num_classes)[:num_classes]
    return frame, (frame > 0) * mask.numel()
