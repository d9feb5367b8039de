"""camvid_utils.folder: a folder split with a seed into whole groups; a bad split.json says what is wrong."""

from __future__ import annotations

import pytest
from own_folders import (
    FRAMES,
    road_folder,
)

from camvid_utils.check import check_data
from camvid_utils.data import CamVid, CamVidError
from camvid_utils.folder import group_of, split_pairs, split_stems


def test_one_folder_is_split_with_a_seed_into_whole_groups(tmp_path):
    root = road_folder(tmp_path / "one", layout="one", split_json={"seed": 3, "val": 0.3, "group": "^[^_]+"})
    splits = split_pairs(root)
    stems = {split: [image.stem for image, _ in pairs.pairs] for split, pairs in splits.items()}
    everything = sorted(stem for items in FRAMES.values() for stem, _, _ in items)
    assert sorted(stems["train"] + stems["val"]) == everything and "test" not in stems
    assert not {s.split("_")[0] for s in stems["train"]} & {s.split("_")[0] for s in stems["val"]}
    assert split_pairs(root) == splits  # the same every time
    assert CamVid(root, "val").frames == [image for image, _ in splits["val"].pairs]


def test_split_stems_keeps_groups_and_fractions():
    stems = [f"seq{g}_{i:03d}" for g in range(10) for i in range(10)]
    out = split_stems(stems, seed=0, val=0.2, test=0.1, group=r"^(seq\d+)_")
    assert sorted(out["train"] + out["val"] + out["test"]) == sorted(stems)
    assert (len(out["val"]), len(out["test"])) == (20, 10)
    groups = {split: {s.split("_")[0] for s in names} for split, names in out.items()}  # seq0 .. seq9
    assert sum(map(len, groups.values())) == 10, groups  # no sequence in two splits
    assert group_of("seq3_001", r"^(seq\d+)_") == "seq3" and group_of("seq3_001", "^seq") == "seq"
    assert split_stems(stems, seed=0, val=0.2, test=0.1) != split_stems(stems, seed=1, val=0.2, test=0.1)
    single = split_stems(stems, seed=0, val=0.2)
    assert len(single["val"]) == 20 and single == split_stems(list(reversed(stems)), seed=0, val=0.2)


@pytest.mark.parametrize(
    "settings, needle",
    [
        ({"vall": 0.2}, "unknown keys ['vall']"),
        ({"val": 0.6, "test": 0.5}, "sum is below 1"),
        ({"group": "(unclosed"}, "not a regular expression"),
        ({"group": "^x"}, "does not match the split's group pattern"),
    ],
)
def test_a_bad_split_json_says_what_is_wrong(settings, needle, tmp_path):
    root = road_folder(tmp_path / "one", layout="one", split_json=settings)
    with pytest.raises(CamVidError) as caught:
        CamVid(root, "train")
    assert needle in str(caught.value)
    assert not check_data(root).ok


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(
    ("sizes", "val", "test"),
    [
        ((6, 15, 6), 0.25, 0.0),
        ((3, 4, 5, 6, 2, 4, 3, 4), 0.2, 0.2),
        ((1,) * 31, 0.2, 0.2),
        ((10, 2, 2, 2), 0.3, 0.0),
    ],
)
def test_a_grouped_split_never_lands_further_from_a_share_than_an_empty_split(sizes, val, test, seed):
    # 27 frames of three videos with val 0.25 once gave val 21 frames: two whole groups where one was near
    from camvid_utils.folder import split_stems

    stems = [f"v{g}_{i:02d}" for g, n in enumerate(sizes) for i in range(n)]
    out = split_stems(stems, seed=seed, val=val, test=test, group="^[^_]+")
    assert sorted(out["train"] + out["val"] + out["test"]) == sorted(stems) and out["train"]
    for split, share in (("val", val), ("test", test)):
        got, want = len(out[split]), share * len(stems)
        groups = len({stem.split("_")[0] for stem in out[split]})
        assert got == 0 if not share else (groups == 1 or abs(got - want) < want), (split, got, want)
