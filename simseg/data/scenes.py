"""Labelled image sources for the classification stage: a train and a test set of (image, class id) items.

- An ImageFolder root holding a train and a test folder of class folders: Intel Image Classification's
  ``seg_train/CLASS/*.jpg`` + ``seg_test/CLASS/*.jpg`` (also Kaggle's doubly nested ``seg_train/seg_train/CLASS``) or
  ``train/`` + ``test/``. Class names are the folder names, sorted; train and test must have the same classes.
- A ``datasets`` dataset (``save_to_disk`` folder or hub name) with a train and a test split, an image column and a
  label column (ClassLabel names when present, else the sorted distinct values).
- ``synthetic``: the shapes of :mod:`simseg.data.synthetic` with their 6 labels; test set and training pool drawn from
  one source as the segmentation stage does. Test sets and training subsets are seeded, class-stratified draws.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from simseg.data.sources import (
    IMAGE_EXTENSIONS,
    DatasetSource,
    SyntheticSource,
    digest,
    files_fingerprint,
    looks_local,
    read_rgb,
)
from simseg.data.splits import segmentation_splits, stratified_order
from simseg.data.synthetic import SHAPE_CLASSES
from simseg.data.synthetic_pairs import SyntheticPairsSource
from simseg.errors import SimsegError
from simseg.sizes import format_size

SPLIT_FOLDERS = (("seg_train", "seg_test"), ("train", "test"))
SYNTHETIC_POOL = 10_000  # synthetic training images besides the test set (rendered only when used)
SYNTHETIC_TEST_SIZE = 1_000
_LABEL_COLUMNS = ("label", "labels")


class LabelledImages:
    """Items ``names[i]`` with class ids ``labels[i]`` (indices into ``classes``); ``image(i)`` reads one with
    ``read(i)``; ``fingerprint`` is the digest of where the images come from (an
    :class:`~simseg.data.sources.ImageSource`'s), to which the labels are added."""

    def __init__(self, name: str, classes: list[str], names: list[str], labels: list[int],
                 read: Callable[[int], Image.Image], fingerprint: Callable[[], str]):
        self.name, self.classes, self.names, self.labels = name, classes, names, labels
        self._read, self._fingerprint = read, fingerprint

    def __len__(self) -> int:
        return len(self.names)

    def image(self, index: int) -> Image.Image:
        return self._read(int(index))

    def fingerprint(self) -> str:
        return digest(self._fingerprint(), *self.classes, *self.labels)


@dataclass
class LabelledSplits:
    train: LabelledImages
    train_indices: np.ndarray
    test: LabelledImages
    test_indices: np.ndarray


def open_labelled(data_cfg, seed: int, stream: str = "classify") -> LabelledSplits:
    """Both splits of ``data_cfg.source`` with the test and training indices the config asks for."""
    test_size, subset = data_cfg.sizes()
    if data_cfg.source == "synthetic":
        if subset is None:
            raise SimsegError("data.source=synthetic needs data.subset: the number of training images to draw")
        test_size = test_size or SYNTHETIC_TEST_SIZE
        # The pool's size must not depend on the subset, or the test set and the nesting would change with it.
        count = test_size + max(SYNTHETIC_POOL, subset)
        seed_of_stream = zlib.crc32(f"{stream}:{data_cfg.synthetic_seed}".encode())  # data.open_image_source's rule
        shapes = SyntheticPairsSource(count, seed_of_stream, data_cfg.synthetic_image_size).groups  # cheap labels
        pictures = SyntheticSource(count, seed_of_stream, data_cfg.synthetic_image_size)
        source = LabelledImages(pictures.name, list(SHAPE_CLASSES), [f"synthetic_{i:05d}" for i in range(count)],
                                [SHAPE_CLASSES.index(s) for s in shapes], pictures.image, pictures.fingerprint)
        split = segmentation_splits(count, test_size, subset, seed, shapes, 0, source.name)
        return LabelledSplits(source, split["train"], source, split["test"])
    path = Path(data_cfg.source).expanduser()
    if not path.exists() and looks_local(data_cfg.source):
        raise SimsegError(f"data.source {data_cfg.source} does not exist: check the path")
    if path.is_dir() and not any((path / marker).exists() for marker in ("dataset_dict.json", "state.json")):
        train_dir, test_dir = find_split_folders(path)
        train = folder_images(train_dir)
        test = folder_images(test_dir, train.classes)
    else:
        train, test = dataset_images(data_cfg, path)
    rng = np.random.default_rng([seed, 2])
    return LabelledSplits(train, draw(train, subset, rng, "data.subset"), test,
                          np.sort(draw(test, test_size, rng, "data.test_size")))


def draw(source: LabelledImages, size: int | None, rng: np.random.Generator, key: str) -> np.ndarray:
    """The first ``size`` items (all if None) of a seeded order that holds each class in its share at every
    prefix: nested for one seed, stratified by class."""
    if size is not None and size > len(source):
        raise SimsegError(f"{key}={format_size(size)} asks for {size:,} images but {source.name} has "
                          f"{len(source):,}: choose a smaller {key}")
    order = stratified_order(np.arange(len(source)), [str(c) for c in source.labels], rng)
    return order[:size]


def find_split_folders(root: Path) -> tuple[Path, Path]:
    """(train folder, test folder) of an ImageFolder root; Kaggle's ``seg_train/seg_train/`` nesting is stepped into."""
    for train_name, test_name in SPLIT_FOLDERS:
        train, test = root / train_name, root / test_name
        if train.is_dir() or test.is_dir():
            if not (train.is_dir() and test.is_dir()):
                have, lack = (train, test) if train.is_dir() else (test, train)
                raise SimsegError(f"{have} has no {lack.name}/ beside it: a classification source needs a train and "
                                  f"a test folder ({train_name}/ and {test_name}/) of class folders")
            return _unnest(train), _unnest(test)
    raise SimsegError(f"data.source {root} has no seg_train/ + seg_test/ or train/ + test/ folders: give an "
                      f"ImageFolder root with a train and a test folder of class folders (seg_train/CLASS/*.jpg)")


def _unnest(folder: Path) -> Path:
    inner = folder / folder.name
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return inner if inner.is_dir() and entries == [inner] else folder


def folder_images(folder: Path, classes: list[str] | None = None) -> LabelledImages:
    """The images of ``folder/CLASS/**``; ``classes`` (the training folder's) must equal this folder's."""
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise SimsegError(f"{folder} holds no class folders: put each class's images in {folder}/CLASS/")
    if classes is not None and found != classes:
        only_train, only_here = sorted(set(classes) - set(found)), sorted(set(found) - set(classes))
        raise SimsegError(f"the class folders of {folder} differ from the training folder's (only in train: "
                          f"{only_train or 'none'}; only in {folder.name}: {only_here or 'none'}): give both the "
                          f"same class folders")
    names, labels = [], []
    for label, cls in enumerate(found):
        files = []
        for parent, subfolders, entries in os.walk(folder / cls, followlinks=True):
            subfolders.sort()
            files += [Path(parent) / n for n in sorted(entries)
                      if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")]
        if not files:
            raise SimsegError(f"class folder {folder / cls} holds no images ({', '.join(IMAGE_EXTENSIONS)}): add "
                              f"images or remove the folder")
        names += [str(f.relative_to(folder)) for f in files]
        labels += [label] * len(files)
    files = [folder / name for name in names]
    return LabelledImages(str(folder), found, names, labels, lambda i: read_rgb(files[i]),
                          lambda: files_fingerprint(files))


def dataset_images(data_cfg, path: Path) -> tuple[LabelledImages, LabelledImages]:
    """Train and test split of a ``datasets`` dataset with an image and a label column."""
    import datasets

    if path.exists():
        try:
            dataset = datasets.load_from_disk(str(path))
        except Exception as err:  # datasets raises many types; the user needs the path and the reason
            raise SimsegError(f"data.source {path} is neither a train/test ImageFolder root nor a save_to_disk "
                              f"dataset ({type(err).__name__}): check the path") from None
    else:
        try:
            dataset = datasets.load_dataset(data_cfg.source)
        except Exception as err:  # offline, unknown name, gated: all end the same way for the user
            raise SimsegError(f"data.source '{data_cfg.source}' is not a local path and could not be loaded from "
                              f"the hub ({type(err).__name__}): check the path, or the name and network") from None
    if not isinstance(dataset, datasets.DatasetDict):
        raise SimsegError(f"data.source {data_cfg.source} holds one split: save a DatasetDict with "
                          f"'{data_cfg.split}' and '{data_cfg.test_split}' splits")
    splits = [DatasetSource._pick(dataset, split, data_cfg.image_column, data_cfg.source)
              for split in (data_cfg.split, data_cfg.test_split)]
    features, columns = splits[0].dataset.features, splits[0].dataset.column_names
    column = data_cfg.label_column or next(
        (k for k in columns if isinstance(features[k], datasets.ClassLabel)),
        next((k for k in _LABEL_COLUMNS if k in columns), None))
    if column is None or column not in columns:
        raise SimsegError(f"{data_cfg.source} has no label column{f' {column!r}' if column else ''}: set "
                          f"data.label_column (columns: {', '.join(columns)})")
    if isinstance(features[column], datasets.ClassLabel):
        classes = list(features[column].names)
        def code(values):
            return [int(v) for v in values]
    else:
        classes = sorted({str(v) for v in splits[0].dataset[column]})
        def code(values):
            unknown = sorted({str(v) for v in values} - set(classes))
            if unknown:
                raise SimsegError(f"the test split of {data_cfg.source} has labels {unknown[:3]} that the training "
                                  f"split lacks: give both splits the same classes")
            return [classes.index(str(v)) for v in values]
    out = []
    for loaded, split in zip(splits, (data_cfg.split, data_cfg.test_split)):
        out.append(LabelledImages(f"{loaded.name}[{split}]", classes, [f"{split}_{i}" for i in range(len(loaded))],
                                  code(loaded.dataset[column]), loaded.image, loaded.fingerprint))
    return out[0], out[1]
