"""The mask survey: exact pixel counts per class, strata, shares, the class table and its warnings, and a stored
survey that is reused, extended by reading only the missing items, and redone when the source changes."""

import numpy as np
import pytest
from PIL import Image

from simseg.data.label_set import LabelSet
from simseg.data.mask_survey import survey_masks, survey_path
from simseg.errors import SimsegError

CLASSES = LabelSet.numbered(4)
CLASSES = LabelSet(("background", "road", "car", "sign"), CLASSES.colours)


def masks() -> list[np.ndarray]:
    """Item 0: road rows 0-9 (400 px), one sign pixel, an ignored last row (40); item 1: road rows 0-4 (200);
    item 2: road rows 0-1 (80) and a 10x10 car (100); item 3: 20x30, all background. The rest is background."""
    first, second, third = (np.zeros((40, 40), np.uint8) for _ in range(3))
    first[:10], first[20, 20], first[39] = 1, 3, 255
    second[:5] = 1
    third[:2], third[10:20, 10:20] = 1, 2
    return [first, second, third, np.zeros((20, 30), np.uint8)]


class FakeSource:
    """A pair source over ``masks`` that records which items were read."""

    def __init__(self, masks, label_set=CLASSES, version="v1", bad: int | None = None):
        self.masks, self.label_set, self.version, self.bad = masks, label_set, version, bad
        self.name, self.names, self.read = "fake/roads", [f"street_{i}" for i in range(len(masks))], []

    def __len__(self):
        return len(self.masks)

    def pair(self, index):
        self.read.append(index)
        if index == self.bad:
            raise SimsegError(f"mask masks/street_{index}.png cannot be read (OSError): delete or replace the file")
        mask = self.masks[index]
        return Image.new("RGB", mask.shape[::-1]), mask

    def fingerprint(self):
        return self.version


def survey(source, items, folder, said=None):
    return survey_masks(source, items, folder, progress=False, say=(said if said is not None else []).append)


def test_counts_sizes_and_strata_are_exact(tmp_path):
    result = survey(FakeSource(masks()), [3, 0, 2, 1], tmp_path)
    assert result.counts([0, 1, 2, 3]).tolist() == [[1159, 400, 0, 1, 40], [1400, 200, 0, 0, 0],
                                                    [1420, 80, 100, 0, 0], [600, 0, 0, 0, 0]]
    assert result.counts([2, 0]).tolist() == [[1420, 80, 100, 0, 0], [1159, 400, 0, 1, 40]]
    assert result.sizes.tolist() == [[40, 40], [40, 40], [40, 40], [20, 30]]
    # the most frequent class other than class 0, which would win everywhere; an image of background alone: class 0
    assert result.dominant_groups([0, 1, 2, 3]) == ["road", "road", "car", "background"]
    with pytest.raises(KeyError, match="item 7"):
        result.counts([7])


def test_shares_are_over_labelled_pixels(tmp_path):
    result = survey(FakeSource(masks()), [0, 1], tmp_path)
    # labelled pixels: 1600 - 40 ignored + 1600 = 3160
    assert result.shares([0, 1]) == {"background": {"pixel_share": 2559 / 3160, "images": 2},
                                     "road": {"pixel_share": 600 / 3160, "images": 2},
                                     "car": {"pixel_share": 0.0, "images": 0},
                                     "sign": {"pixel_share": 1 / 3160, "images": 1}}
    everything_ignored = survey(FakeSource([np.full((4, 4), 255, np.uint8)]), [0], tmp_path / "other")
    assert everything_ignored.shares([0])["road"] == {"pixel_share": None, "images": 0}


def test_class_table_and_its_warnings(tmp_path):
    result = survey(FakeSource(masks()), [0, 1, 2, 3], tmp_path)
    lines, warnings = result.class_table(CLASSES, {"train": [0, 1], "test": [2, 3]})
    assert lines[0].split() == ["id", "class", "train", "pixels", "train", "images", "test", "pixels", "test", "images"]
    # train: 3160 labelled pixels (2559 background, 600 road, 1 sign); test: 2200 (2020 background, 80 road, 100 car)
    assert [line.split() for line in lines[1:]] == [["0", "background", "80.98%", "2", "91.82%", "2"],
                                                    ["1", "road", "18.99%", "2", "3.64%", "1"],
                                                    ["2", "car", "0.00%", "0", "4.55%", "1"],
                                                    ["3", "sign", "0.03%", "1", "0.00%", "0"],
                                                    ["(ignored)", "1.25%", "0.00%"]]  # 40 of 3200, 0 of 2200
    assert len({len(line) for line in lines[:-1]}) == 1 and lines[-1] == lines[-1].rstrip()  # columns line up
    assert warnings == [
        "class 2 'car' is in none of the 2 train images: the model never sees it, so its IoU will stay 0; label "
        "images that show it, or drop the class",
        "class 3 'sign' is only 0.032% of the labelled pixels of the 2 train images (under 0.1%): its IoU will "
        "likely stay 0; label more images that show it"]
    with_car = result.class_table(CLASSES, {"train": [0, 1, 2], "test": [3]})[1]
    assert with_car == [warnings[1].replace("2 train", "3 train").replace("0.032%", "0.021%")]  # 1 sign pixel of 4780
    with pytest.raises(ValueError, match="surveyed"):
        result.class_table(LabelSet.numbered(4), {"train": [0]})


def test_a_stored_survey_is_reused_extended_and_redone(tmp_path):
    said = []
    first = FakeSource(masks())
    survey(first, [0, 1], tmp_path, said)
    assert first.read == [0, 1] and survey_path(tmp_path, first).is_file()
    again = FakeSource(masks())
    assert survey(again, [1, 0, 1], tmp_path, said).counts([0, 1]).tolist() == survey(first, [0, 1], tmp_path).counts(
        [0, 1]).tolist()
    assert again.read == []  # every item was counted before
    more = FakeSource(masks())
    extended = survey(more, [1, 2, 3], tmp_path, said)
    assert more.read == [2, 3]  # only the missing ones are read
    assert extended.items.tolist() == [0, 1, 2, 3] and extended.counts([0])[0, 3] == 1
    changed = FakeSource(masks(), version="v2")
    survey(changed, [0, 3], tmp_path, said)
    assert changed.read == [0, 3]
    relabelled = FakeSource(masks(), label_set=LabelSet.numbered(4), version="v2")
    assert survey(relabelled, [0], tmp_path, said).names == ("class_0", "class_1", "class_2", "class_3")
    assert relabelled.read == [0]  # another label set: counted again
    assert sum("changed" in line for line in said) == 2
    survey_path(tmp_path, first).write_bytes(b"not a zip")
    damaged = FakeSource(masks(), label_set=LabelSet.numbered(4), version="v2")
    survey(damaged, [0], tmp_path, said)
    assert damaged.read == [0] and "cannot be read" in said[-2]


def test_a_bad_pair_is_named_and_nothing_is_stored(tmp_path):
    source = FakeSource(masks(), bad=2)
    with pytest.raises(SimsegError, match="masks/street_2.png"):
        survey(source, [0, 1, 2, 3], tmp_path)
    assert not survey_path(tmp_path, source).exists()
    stray = masks()
    stray[1][0, 0] = 7  # an id the label set does not have: a reader that let it through is named
    with pytest.raises(SimsegError, match="street_1 holds class id 7 .* 4 classes"):
        survey(FakeSource(stray), [0, 1], tmp_path)
