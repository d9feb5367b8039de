"""Mask formats of your own data: the class table, and masks read as class ids, never guessed silently.

The class table (``classes.csv`` in the dataset folder) lists the classes in id order::

    value,name,r,g,b
    0,background,0,0,0
    1,road,128,64,128
    255,void

``value`` is what a mask stores for the class (an id, a palette index, 255 for a binary
foreground); ``r,g,b`` are optional display colours, and required when the masks are RGB colour
codes; the row named ``void`` (at most one) is ignored by the loss and the metrics. Class ``i`` is
the ``i``-th row that is not void.

A mask is a PNG in one of ``FORMATS``:

- ``palette``: a palette ("P") PNG; the palette index is the value;
- ``rgb``: RGB colour codes, decoded through the table's colours;
- ``ids8`` / ``ids16``: 8- or 16-bit grey holding the values;
- ``binary``: 8-bit grey holding only 0 and 255, for a two-class table whose values are 0 and 1.

Anything else (a JPEG, colours or values with no class, a 3-channel mask without colours in the
table) raises ``MaskError`` naming the file, the values found and what to do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .data import IGNORE_INDEX, CamVidError

CLASS_TABLE = "classes.csv"
FORMATS = ("palette", "rgb", "ids8", "ids16", "binary")
FORMAT_NAMES = {
    "palette": "palette PNG (index = value)",
    "rgb": "RGB colour codes",
    "ids8": "8-bit ids",
    "ids16": "16-bit ids",
    "binary": "binary 0/255",
}
# Display colours for tables without any: distinct, and black first for a background.
DEFAULT_COLORS = (
    (0, 0, 0),
    (128, 64, 128),
    (220, 20, 60),
    (70, 130, 180),
    (107, 142, 35),
    (250, 170, 30),
    (190, 153, 153),
    (0, 0, 142),
    (152, 251, 152),
    (255, 0, 255),
    (0, 255, 255),
    (255, 255, 0),
)
_MAX_VALUE = 65535


class MaskError(CamVidError):
    """A mask or class table that cannot be read as class ids; the message names the file and the fix."""


@dataclass(frozen=True)
class ClassTable:
    """The classes of a dataset folder, read from its ``classes.csv`` (see the module docstring)."""

    names: tuple[str, ...]
    values: tuple[int, ...]
    colors: tuple[tuple[int, int, int], ...] | None  # None: the table gives no colours
    void_value: int | None = None
    void_color: tuple[int, int, int] | None = None
    path: Path = Path(CLASS_TABLE)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def display_colors(self) -> tuple[tuple[int, int, int], ...]:
        """Return one colour per class: the table's, else ``DEFAULT_COLORS`` in order."""
        if self.colors is not None:
            return self.colors
        return tuple(DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(self.num_classes))

    def is_binary(self) -> bool:
        """Return True when 0/255 masks can be read unambiguously: two classes valued 0 and 1, 255 unused."""
        return self.values == (0, 1) and self.void_value != 255


def read_class_table(path: str | os.PathLike) -> ClassTable:
    """Return the ``ClassTable`` in ``path`` (``value,name[,r,g,b]`` rows; see the module docstring)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as err:
        raise MaskError(
            f"cannot read the class table {path}: {err.strerror}. Write it as 'value,name,r,g,b' rows "
            "(see docs/own-data.md)."
        ) from None
    rows = [(n, [f.strip() for f in line.split(",")]) for n, line in enumerate(lines, 1) if line.strip()]
    if not rows or [f.lower() for f in rows[0][1][:2]] != ["value", "name"]:
        raise MaskError(f"{path}: the first line must be the header 'value,name,r,g,b' (r,g,b optional).")
    names, values, colors, void = [], [], [], None
    for lineno, fields in rows[1:]:
        fields += [""] * (5 - len(fields))
        bad = f"{path}, line {lineno}: expected 'value,name' or 'value,name,r,g,b', got {lines[lineno - 1]!r}"
        if len(fields) > 5 or not fields[1]:
            raise MaskError(bad + ".")
        try:
            value = int(fields[0])
            rgb = None if fields[2:] == ["", "", ""] else tuple(int(f) for f in fields[2:])
        except ValueError:
            raise MaskError(bad + ": value and r, g, b must be whole numbers.") from None
        if not 0 <= value <= _MAX_VALUE or (rgb is not None and not all(0 <= c <= 255 for c in rgb)):
            raise MaskError(bad + f": value must be in 0..{_MAX_VALUE} and r, g, b in 0..255.")
        if value in values or (void is not None and value == void[0]):
            raise MaskError(f"{path}, line {lineno}: value {value} is given twice; each row needs its own.")
        if fields[1].lower() == "void":
            if void is not None:
                raise MaskError(f"{path}, line {lineno}: a second void row; keep one.")
            void = (value, rgb)
            continue
        twin = next((n for n in names if n.strip().lower() == fields[1].strip().lower()), None)
        if twin is not None:  # "Road" twice, or "Road" and "road": one class with two ids
            raise MaskError(
                f"{path}, line {lineno}: class {fields[1]!r} is already listed as {twin!r} (names are "
                "compared without letter case); give each class one row, or distinct names."
            )
        names.append(fields[1])
        values.append(value)
        colors.append(rgb)
    if not names:
        raise MaskError(f"{path} lists no classes; add one 'value,name' row per class, in id order.")
    given = [c for c in colors if c is not None]
    if given and len(given) != len(colors):
        missing = [n for n, c in zip(names, colors, strict=True) if c is None]
        raise MaskError(f"{path}: classes {missing} have no r,g,b; give colours to every class or to none.")
    all_colors = given + ([void[1]] if void and void[1] else [])
    if len(set(all_colors)) != len(all_colors):
        raise MaskError(f"{path}: two rows share a colour; every class needs its own r,g,b.")
    if len(names) > 254:
        raise MaskError(f"{path} lists {len(names)} classes; at most 254 fit (255 is void).")
    return ClassTable(
        names=tuple(names),
        values=tuple(values),
        colors=tuple(given) if given else None,
        void_value=void[0] if void else None,
        void_color=void[1] if void else None,
        path=path,
    )


def write_class_table(path: str | os.PathLike, table: ClassTable) -> Path:
    """Write ``table`` as ``classes.csv`` text to ``path`` (refusing to replace a file); return the path."""
    path = Path(path)
    if path.exists():
        raise MaskError(f"{path} already exists; remove it or write the table elsewhere.")
    lines = ["value,name,r,g,b"]
    colors = table.colors or [None] * table.num_classes
    for value, name, rgb in zip(table.values, table.names, colors, strict=True):
        lines.append(f"{value},{name}" + ("" if rgb is None else ",{},{},{}".format(*rgb)))
    if table.void_value is not None:
        void_rgb = "" if table.void_color is None else ",{},{},{}".format(*table.void_color)
        lines.append(f"{table.void_value},void{void_rgb}")
    path.write_text("\n".join(lines) + "\n")
    return path


def mask_format(img: Image.Image, path: str | os.PathLike = "<mask>") -> str:
    """Return the format a mask's header says (``palette``, ``rgb``, ``ids8`` or ``ids16``).

    Raises ``MaskError`` for a JPEG or any file that is not a PNG, and for modes no format has.
    ``binary`` is told from ``ids8`` by the values, in ``MaskDecoder``.
    """
    if img.format == "JPEG" or Path(path).suffix.lower() in (".jpg", ".jpeg"):
        raise MaskError(
            f"{path} is a JPEG: its compression invents colours and ids at every edge, so it cannot hold "
            "class ids. Export the masks again as PNG from your labelling tool (converting this JPEG to "
            "PNG keeps the damage)."
        )
    if img.format != "PNG":
        raise MaskError(f"{path} is a {img.format or 'non-PNG'} file; save masks as PNG.")
    if img.mode == "P":
        return "palette"
    if img.mode in ("RGB", "RGBA"):
        return "rgb"
    if img.mode in ("L", "1", "LA"):
        return "ids8"
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        return "ids16"
    raise MaskError(f"{path} is a {img.mode} PNG; save masks as palette, RGB, 8-bit or 16-bit grey PNG.")


def read_mask(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """Return a mask's raw pixels and its header format: (H, W) values, or (H, W, 3) colours for ``rgb``
    ((H, W, 4) when an RGBA mask has pixels that are not fully opaque: ``MaskDecoder`` makes them void).
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            fmt = mask_format(img, path)
            if fmt == "rgb":
                raw = np.asarray(img.convert("RGBA") if img.mode == "RGBA" else img.convert("RGB"))
                if raw.shape[-1] == 4 and (raw[..., 3] == 255).all():
                    raw = raw[..., :3]  # an alpha channel that hides nothing
            elif img.mode == "LA":
                raw = np.asarray(img.getchannel(0))
            else:
                raw = np.asarray(img)  # P: palette indices; L, 1, I;16: values
    except FileNotFoundError:
        raise MaskError(f"{path} does not exist.") from None
    except (OSError, SyntaxError, ValueError) as err:
        if isinstance(err, MaskError):
            raise
        raise MaskError(f"cannot decode {path} ({err}); the file is damaged or not an image.") from None
    if raw.dtype == bool:
        raw = raw.astype(np.uint8)
    return raw, fmt


def _pack(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _luminance(rgb) -> int:
    """What ``Image.convert("L")`` makes of a colour (ITU-R 601-2 luma, as Pillow rounds it)."""
    r, g, b = rgb
    return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16


def _listed(values, counts, limit: int = 8) -> str:
    order = np.argsort(-counts, kind="stable")[:limit]
    shown = ", ".join(f"{values[i]} x{int(counts[i])}" for i in order)
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


class MaskDecoder:
    """Turns a dataset's masks into (H, W) uint8 class ids (255 = void) through its class table.

    Every pixel must be a class or void: a mask holding anything else raises ``MaskError`` with
    the values found and, where the values say how the mask was damaged, that too.
    """

    def __init__(self, table: ClassTable):
        self.table = table
        self._ids = np.full(_MAX_VALUE + 1, -1, dtype=np.int16)
        self._ids[list(table.values)] = np.arange(table.num_classes)
        if table.void_value is not None:
            self._ids[table.void_value] = IGNORE_INDEX
        self._colors = {}
        if table.colors is not None:
            self._colors = {c: i for i, c in enumerate(table.colors)}
        if table.void_color is not None:
            self._colors[table.void_color] = IGNORE_INDEX

    def format_of(self, raw: np.ndarray, header_format: str) -> str:
        """Return one mask's format: ``binary`` for 0/255 grey under a binary table, else its header's."""
        if header_format == "ids8" and self.table.is_binary():
            values = np.unique(raw)
            if 255 in values and set(values.tolist()) <= {0, 255}:
                return "binary"
        return header_format

    def __call__(self, raw: np.ndarray, fmt: str, path: str | os.PathLike = "<mask>") -> np.ndarray:
        """Return (H, W) uint8 class ids of the mask ``raw`` read in format ``fmt``."""
        if fmt == "rgb":
            return self._decode_rgb(raw, path)
        if fmt == "binary":
            return np.where(raw == 255, 1, 0).astype(np.uint8)
        return self._decode_values(raw, fmt, path)

    def _decode_values(self, raw: np.ndarray, fmt: str, path) -> np.ndarray:
        ids = self._ids[raw.astype(np.int64)]
        unknown = ids < 0
        if unknown.any():
            values, counts = np.unique(raw[unknown], return_counts=True)
            found = values.tolist()
            table = self.table
            known = ", ".join(map(str, table.values)) + (
                f" (void {table.void_value})" if table.void_value is not None else ""
            )
            hint = f"Fix the mask, or add rows for these values to {table.path}."
            lumas = {_luminance(c) for c in (table.colors or ())}
            if table.colors and set(found) <= lumas | set(table.values):
                hint = (
                    "These are the grey levels of the table's colours: a colour mask was turned into grey "
                    "(Image.convert('L')), which mixes colours into luminance. Save the colour mask itself "
                    "(RGB), or convert colours to ids with the table."
                )
            elif len(found) > 16:
                hint = (
                    f"{len(found)} different values look like lossy compression or a smooth resize of the "
                    "mask; export it again as PNG, resized (if at all) with nearest neighbour."
                )
            elif table.values == (0, 1) and 255 in found:
                hint = "This mask mixes 0/1 ids with 255; a binary 0/255 mask holds only 0 and 255: fix it."
            raise MaskError(
                f"{path}: {int(unknown.sum())} pixels of this {FORMAT_NAMES[fmt]} mask hold values that are "
                f"no class ({_listed(found, counts)}); the class table has {known}. {hint}"
            )
        return ids.astype(np.uint8)

    def _decode_rgb(self, raw: np.ndarray, path) -> np.ndarray:
        if not self._colors:
            raise MaskError(
                f"{path} is a 3-channel (RGB) mask but {self.table.path} gives no colours: add r,g,b to each "
                "row of the class table (the colour each class has in the masks), or save the masks as "
                "8-bit grey ids."
            )
        transparent = None
        if raw.shape[-1] == 4:  # RGBA with see-through pixels: "not labelled" in the tools that draw them
            transparent = raw[..., 3] < 255
            if self.table.void_value is None:
                raise MaskError(
                    f"{path} has {int(transparent.sum())} transparent pixels (alpha below 255), which are no "
                    f"class: add a void row to {self.table.path} (transparent pixels are then void and "
                    "ignored), or fill them with a class's colour."
                )
            raw = raw[..., :3]
        keys = _pack(raw)
        if transparent is not None:  # whatever colour lies under them, they are void
            keys = np.where(transparent, -1, keys)
        flat = keys.ravel()
        uniq, inverse = np.unique(flat, return_inverse=True)
        lookup = np.array(
            [IGNORE_INDEX if k < 0 else self._colors.get(((k >> 16) & 255, (k >> 8) & 255, k & 255), -1)
             for k in uniq]
        )  # fmt: skip
        ids = lookup[inverse].reshape(keys.shape)
        unknown = ids < 0
        if unknown.any():
            bad = uniq[lookup < 0]
            counts = np.bincount(inverse, minlength=len(uniq))[lookup < 0]
            colours = [((k >> 16) & 255, (k >> 8) & 255, k & 255) for k in bad.tolist()]
            hint = f"Fix the mask, or add these colours to {self.table.path}."
            table = np.array(list(self._colors), dtype=np.int64)  # (K, 3)
            near = np.abs(np.array(colours)[:, None, :] - table[None]).max(-1).min(-1) <= 48
            if len(colours) > 8 and near.mean() > 0.5:
                hint = (
                    f"{len(colours)} colours close to the table's look like lossy compression (a JPEG saved "
                    "as PNG) or a smooth resize; export the masks again as PNG from the labelling tool, "
                    "resized (if at all) with nearest neighbour."
                )
            raise MaskError(
                f"{path}: {int(unknown.sum())} pixels have colours that are no class in {self.table.path} "
                f"({_listed(colours, counts)}). {hint}"
            )
        return ids.astype(np.uint8)
