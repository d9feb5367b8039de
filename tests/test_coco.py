"""COCO polygons to masks: the rasterisation against independent ones, and the conversion's rules."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from camvid_utils.check import check_data
from camvid_utils.coco import CocoError, coco_masks, coco_to_folder, polygon_mask, rle_mask
from camvid_utils.data import CamVid

H, W = 60, 80


def random_polygons(count: int, seed: int = 0) -> list[list[float]]:
    """Star-shaped polygons (simple, not convex) with non-integer vertices."""
    rng = np.random.default_rng(seed)
    polygons = []
    for _ in range(count):
        n = int(rng.integers(3, 10))
        angle = np.sort(rng.uniform(0, 2 * np.pi, n))
        radius = rng.uniform(4, 25, n)
        cx, cy = rng.uniform(15, W - 15), rng.uniform(15, H - 15)
        xy = np.stack([cx + radius * np.cos(angle), cy + radius * np.sin(angle)], 1)
        polygons.append(np.clip(xy, 0, [W, H]).ravel().tolist())
    return polygons


def distance_to_edges(polygon, height, width) -> np.ndarray:
    """(H, W) distance of each pixel centre to the nearest polygon edge."""
    xy = np.asarray(polygon).reshape(-1, 2)
    a, b = xy, np.roll(xy, -1, axis=0)  # (E, 2)
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    p = np.stack([xs, ys], -1)[:, :, None, :]  # (H, W, 1, 2)
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1).min(-1)


def shoelace(polygon) -> float:
    x, y = np.asarray(polygon[::2]), np.asarray(polygon[1::2])
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def test_a_rectangle_fills_exactly_the_pixels_whose_centres_it_holds():
    mask = polygon_mask([2.0, 3.0, 10.0, 3.0, 10.0, 7.0, 2.0, 7.0], 12, 16)
    expected = np.zeros((12, 16), bool)
    expected[3:7, 2:10] = True
    np.testing.assert_array_equal(mask, expected)
    # moved by less than half a pixel, the same centres are inside
    np.testing.assert_array_equal(polygon_mask([2.4, 3.4, 10.4, 3.4, 10.4, 7.4, 2.4, 7.4], 12, 16), expected)


@pytest.mark.parametrize("seed", range(3))
def test_polygons_match_pillow_except_on_their_edges(seed):
    for polygon in random_polygons(5, seed):
        ours = polygon_mask(polygon, H, W)
        picture = Image.new("L", (W, H), 0)
        # Pillow's pixel (x, y) is the point (x, y): move the polygon by half a pixel to compare centres
        ImageDraw.Draw(picture).polygon(
            [(x - 0.5, y - 0.5) for x, y in zip(polygon[::2], polygon[1::2], strict=True)], fill=1
        )
        theirs = np.asarray(picture).astype(bool)
        differ = ours ^ theirs
        # Pillow rounds edges to whole pixels and paints the outline (measured: up to 1.49 px off)
        assert (distance_to_edges(polygon, H, W)[differ] <= 1.5).all()
        area = shoelace(polygon)
        assert abs(int(ours.sum()) - area) <= 0.1 * area + 4  # the pixel count is the polygon's area


@pytest.mark.parametrize("seed", range(3))
def test_polygons_match_pycocotools(seed):
    mask_utils = pytest.importorskip("pycocotools.mask", reason="pip install -e .[coco] to compare")
    for polygon in random_polygons(5, seed):
        ours = polygon_mask(polygon, H, W)
        theirs = mask_utils.decode(mask_utils.frPyObjects([polygon], H, W))[..., 0].astype(bool)
        differ = ours ^ theirs
        assert differ.sum() <= 0.03 * theirs.sum() + 2, (differ.sum(), theirs.sum())
        assert (distance_to_edges(polygon, H, W)[differ] <= 1.0).all()


def test_uncompressed_rle_decodes_column_major():
    truth = np.zeros((4, 5), bool)
    truth[1:3, 1] = truth[0, 3] = True
    flat = truth.T.ravel()  # COCO counts down the columns
    runs, current, count = [], False, 0
    for value in flat:
        if value != current:
            runs.append(count)
            current, count = value, 0
        count += 1
    runs.append(count)
    np.testing.assert_array_equal(rle_mask({"counts": runs, "size": [4, 5]}, 4, 5), truth)


def coco_file(tmp_path, annotations, images=("a.jpg", "b.jpg", "empty.jpg")) -> tuple:
    folder = tmp_path / "photos"
    folder.mkdir()
    entries = []
    for i, name in enumerate(images, start=1):
        Image.fromarray(np.full((H, W, 3), 40 * i, np.uint8)).save(folder / name)
        entries.append({"id": i, "file_name": name, "height": H, "width": W})
    coco = {
        "images": entries,
        "annotations": annotations,
        "categories": [{"id": 7, "name": "road"}, {"id": 3, "name": "car"}],
    }
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(coco))
    return path, folder


ROAD_POLY = [0, 30, 80, 30, 80, 60, 0, 60]  # the bottom half
CAR_POLY = [20, 25, 40, 25, 40, 45, 20, 45]  # a box lying on the road


def test_overlaps_go_to_the_smaller_instance_and_categories_keep_id_order(tmp_path):
    annotations = [  # the car first in the file: the order must not matter, the area does
        {"id": 1, "image_id": 1, "category_id": 3, "segmentation": [CAR_POLY], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 7, "segmentation": [ROAD_POLY], "iscrowd": 0},
    ]
    path, _ = coco_file(tmp_path, annotations)
    names, masks = coco_masks(path)
    assert names == ["background", "car", "road"]  # categories by id: car 3, road 7
    expected = np.zeros((H, W), np.uint8)
    expected[30:60, :] = 2
    expected[25:45, 20:40] = 1
    np.testing.assert_array_equal(masks[1], expected)
    assert not masks[3].any()  # no annotations: all background


def test_coco_to_folder_writes_a_folder_that_loads_and_checks(tmp_path):
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 7, "segmentation": [ROAD_POLY], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 3, "segmentation": [CAR_POLY], "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 7, "segmentation": [ROAD_POLY[:6]], "iscrowd": 0},
        {"id": 4, "image_id": 2, "category_id": 3, "segmentation": [CAR_POLY], "iscrowd": 0},
    ]
    path, photos = coco_file(tmp_path, annotations)
    done = coco_to_folder(path, photos, tmp_path / "mine")
    assert done["images"] == 3 and done["unannotated"] == ["empty.jpg"]
    root = tmp_path / "mine"
    assert sorted(p.name for p in (root / "images").iterdir()) == ["a.jpg", "b.jpg", "empty.jpg"]
    (root / "split.json").write_text('{"val": 0.34, "seed": 0}')
    names, masks = coco_masks(path)
    for split in ("train", "val"):
        ds = CamVid(root, split)
        assert ds.classes == ("background", "car", "road")
        for i, frame in enumerate(ds.frames):
            image_id = {"a": 1, "b": 2, "empty": 3}[frame.stem]
            np.testing.assert_array_equal(ds.load_mask(i), masks[image_id])
    assert check_data(root).format == "palette"
    skipped = coco_to_folder(path, photos, tmp_path / "skip", skip_unannotated=True)
    assert skipped["images"] == 2 and not (tmp_path / "skip" / "images" / "empty.jpg").exists()


@pytest.mark.parametrize(
    "change, needle",
    [
        ({"image_id": 9}, "refers to image 9"),
        ({"category_id": 5}, "has category 5"),
        (
            {"segmentation": [[0, 30, 80, float("nan"), 80, 60, 0, 60]]},
            "not an even number of finite numbers",
        ),
        ({"segmentation": [[0, 30, 80, None, 80, 60, 0, 60]]}, "annotation 11 (image 1) has a polygon"),
        ({"segmentation": [[0, 30, 80, 30, 80, 60, 0]]}, "a lone x"),
        ({"segmentation": {"counts": "abc", "size": [H, W]}}, None),
    ],
)
def test_bad_annotations_are_named(change, needle, tmp_path):
    ann = {"id": 11, "image_id": 1, "category_id": 7, "segmentation": [ROAD_POLY], "iscrowd": 0, **change}
    path, photos = coco_file(tmp_path, [ann])
    if needle is None:  # compressed RLE: pycocotools decodes it, or the error says to install it
        try:
            import pycocotools  # noqa: F401
        except ImportError:
            needle = "pip install -e .[coco]"
        else:
            pytest.skip("pycocotools is installed: compressed RLE decodes")
    with pytest.raises(CocoError, match=None) as caught:
        coco_to_folder(path, photos, tmp_path / "out")
    assert needle in str(caught.value)


def test_the_conversion_never_writes_into_a_folder_that_holds_files(tmp_path):
    path, photos = coco_file(tmp_path, [])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(CocoError, match="not empty"):
        coco_to_folder(path, photos, tmp_path / "out")
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep"


def test_a_void_category_is_void_in_the_masks_and_not_a_class(tmp_path):
    anns = [
        {"id": 1, "image_id": 1, "category_id": 7, "segmentation": [ROAD_POLY], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 9, "segmentation": [CAR_POLY], "iscrowd": 0},
    ]
    path, photos = coco_file(tmp_path, anns, images=("a.jpg",))
    coco = json.loads(path.read_text())
    coco["categories"].append({"id": 9, "name": "Void"})
    path.write_text(json.dumps(coco))
    result = coco_to_folder(path, photos, tmp_path / "out")
    assert result["classes"] == ["background", "car", "road"] and result["void"]
    mask = np.asarray(Image.open(tmp_path / "out" / "masks" / "a.png"))
    assert (mask == 255).sum() == polygon_mask(CAR_POLY, H, W).sum()  # the void box, not a class
    assert "255,void" in (tmp_path / "out" / "classes.csv").read_text()


def test_images_whose_annotations_paint_nothing_are_unannotated_and_warned_about(tmp_path):
    anns = [
        {"id": 1, "image_id": 1, "category_id": 7, "segmentation": [ROAD_POLY], "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 3, "segmentation": [], "iscrowd": 0},  # empty: paints nothing
    ]
    path, photos = coco_file(tmp_path, anns)
    with pytest.warns(
        UserWarning, match=r"2 image\(s\) have no annotation that paints a pixel.*skip_unannotated"
    ):
        result = coco_to_folder(path, photos, tmp_path / "out")
    assert result["unannotated"] == ["b.jpg", "empty.jpg"]


def test_two_categories_of_one_name_are_refused(tmp_path):
    ann = {"id": 1, "image_id": 1, "category_id": 7, "segmentation": [ROAD_POLY], "iscrowd": 0}
    path, photos = coco_file(tmp_path, [ann], images=("a.jpg",))
    coco = json.loads(path.read_text())
    coco["categories"].append({"id": 8, "name": "Road"})
    path.write_text(json.dumps(coco))
    with pytest.raises(CocoError, match=r"categories 7 and 8 are both named 'Road'"):
        coco_to_folder(path, photos, tmp_path / "out")
