"""Labelled sources for the classification stage: folder layouts, class names, splits and one-line errors."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from simseg.config.classify import ClassifyConfig
from simseg.config.loader import load_config
from simseg.data.loaders import TransformedItems
from simseg.data.scenes import find_split_folders, open_labelled
from simseg.data.synthetic import SHAPE_CLASSES, make_sample
from simseg.data.transforms import eval_transform
from simseg.errors import SimsegError
from tests.helpers import write_images

CLASSES = ["street", "forest", "sea"]  # deliberately unsorted: class ids follow the sorted names


def make_tree(root: Path, train: str, test: str, per_class: dict[str, int] | None = None,
              test_classes: list[str] | None = None) -> Path:
    """``root/train/CLASS/i.jpg`` and ``root/test/CLASS/i.jpg``; ``per_class`` counts of the training images."""
    counts = per_class or {c: 4 for c in CLASSES}
    for cls, count in counts.items():
        write_images(root / train / cls, [f"{i}.jpg" for i in range(count)])
    for cls in test_classes or CLASSES:
        write_images(root / test / cls, [f"{i}.jpg" for i in range(2)], seed=1)
    return root


def data_cfg(source, *overrides: str):
    return load_config(ClassifyConfig, None, [f"data.source={source}", *overrides]).data


@pytest.mark.parametrize("train,test", [("seg_train", "seg_test"), ("train", "test"),
                                        ("seg_train/seg_train", "seg_test/seg_test")])
def test_folder_layouts_give_sorted_classes_and_both_splits(tmp_path, train, test):
    root = make_tree(tmp_path / "intel", train, test)
    data = open_labelled(data_cfg(root), seed=0)
    assert data.train.classes == data.test.classes == sorted(CLASSES)
    assert (len(data.train_indices), len(data.test_indices)) == (12, 6)
    assert sorted(data.test.labels) == [0, 0, 1, 1, 2, 2]
    name = data.train.names[data.train_indices[0]]
    assert data.train.labels[data.train_indices[0]] == sorted(CLASSES).index(name.split("/")[0])
    transform = eval_transform(32, (0.5,) * 3, (0.5,) * 3)
    image, label = TransformedItems(data.test, data.test_indices, transform, "labels")[0]
    assert image.shape == (3, 32, 32) and label.item() == data.test.labels[data.test_indices[0]]


def test_subset_is_seeded_stratified_and_nested(tmp_path):
    root = make_tree(tmp_path, "train", "test", {"street": 20, "forest": 20, "sea": 20})
    small = open_labelled(data_cfg(root, "data.subset=6", "data.test_size=3"), seed=0)
    large = open_labelled(data_cfg(root, "data.subset=30", "data.test_size=3"), seed=0)
    assert np.bincount([small.train.labels[i] for i in small.train_indices]).tolist() == [2, 2, 2]
    assert set(small.train_indices) <= set(large.train_indices)
    assert np.bincount([small.test.labels[i] for i in small.test_indices]).tolist() == [1, 1, 1]
    again = open_labelled(data_cfg(root, "data.subset=6", "data.test_size=3"), seed=0)
    other = open_labelled(data_cfg(root, "data.subset=6", "data.test_size=3"), seed=1)
    assert np.array_equal(again.train_indices, small.train_indices)
    assert not np.array_equal(other.train_indices, small.train_indices)


def test_synthetic_has_the_six_shape_labels_and_a_fixed_test_set():
    small = open_labelled(data_cfg("synthetic", "data.subset=12", "data.test_size=12",
                                   "data.synthetic_image_size=32"), seed=0)
    large = open_labelled(data_cfg("synthetic", "data.subset=24", "data.test_size=12",
                                   "data.synthetic_image_size=32"), seed=0)
    assert small.train.classes == list(SHAPE_CLASSES)
    assert np.array_equal(small.test_indices, large.test_indices)
    assert set(small.train_indices) <= set(large.train_indices)
    assert not set(small.test_indices) & set(large.train_indices)
    index = int(small.test_indices[0])  # the cheap labels agree with the rendered sample's
    assert small.test.labels[index] == make_sample(zlib.crc32(b"classify:0"), index, 32).label


def test_datasets_dataset_with_class_labels(tmp_path):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])})
    rows = lambda n: {"image": [Image.new("RGB", (20, 20), (i * 40, 0, 0)) for i in range(n)],  # noqa: E731
                      "label": [i % 2 for i in range(n)]}
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows(6), features=features),
                               "test": datasets.Dataset.from_dict(rows(4), features=features)})
    dd.save_to_disk(str(tmp_path / "pets"))
    data = open_labelled(data_cfg(tmp_path / "pets"), seed=0)
    assert data.train.classes == ["cat", "dog"] and (len(data.train), len(data.test)) == (6, 4)
    assert data.test.labels == [0, 1, 0, 1] and data.test.image(1).size == (20, 20)


@pytest.mark.parametrize("layout,message", [
    ("missing", "does not exist: check the path"),
    ("no_split_folders", "has no seg_train/ + seg_test/ or train/ + test/ folders"),
    ("no_test", "has no seg_test/ beside it"),
    ("no_classes", "holds no class folders: put each class's images in"),
    ("mismatch", "differ from the training folder's (only in train: ['street']; only in seg_test: ['desert'])"),
    ("empty_class", "holds no images"),
])
def test_bad_folders_fail_in_one_line_naming_the_path(tmp_path, layout, message):
    root = tmp_path / "intel"
    if layout == "no_split_folders":
        write_images(root / "street", ["0.jpg"])
    elif layout == "no_test":
        write_images(root / "seg_train" / "street", ["0.jpg"])
    elif layout == "no_classes":
        write_images(root / "seg_train", ["0.jpg"])
        (root / "seg_test").mkdir()
    elif layout == "mismatch":
        make_tree(root, "seg_train", "seg_test", test_classes=["forest", "sea", "desert"])
    elif layout == "empty_class":
        make_tree(root, "seg_train", "seg_test")
        for path in (root / "seg_train" / "street").iterdir():
            path.unlink()
    with pytest.raises(SimsegError) as err:
        open_labelled(data_cfg(root), seed=0)
    text = str(err.value)
    assert message in text and "\n" not in text and str(root) in text


def test_subset_larger_than_the_folder_is_refused(tmp_path):
    root = make_tree(tmp_path, "train", "test")
    with pytest.raises(SimsegError, match="data.subset=13 asks for 13 images but .* has 12"):
        open_labelled(data_cfg(root, "data.subset=13"), seed=0)
    assert find_split_folders(root) == (root / "train", root / "test")
