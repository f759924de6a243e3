"""Labelled image/mask pairs for the segmentation stage: the protocol every pair source follows and the front door
that opens the one a ``data`` section names (the splits they are drawn into: :mod:`simseg.data.splits`).

    data.source=synthetic           the synthetic trimaps (simseg.data.synthetic_pairs)
    data.source=synthetic-shapes    the synthetic shapes as 7 classes
    an Oxford-IIIT Pet folder       images/ + annotations/trimaps/ (simseg.data.pets)
    a mask folder                   images/ + masks/ (simseg.data.mask_folder)
    a datasets dataset              save_to_disk folder, parquet/arrow files or a hub name (simseg.data.dataset_pairs)
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from simseg.data.dataset_pairs import DatasetPairsSource
from simseg.data.label_set import LabelSet
from simseg.data.mask_classes import MaskOptions
from simseg.data.mask_folder import MaskFolderSource, find_mask_folder
from simseg.data.pets import OxfordPetsSource
from simseg.data.sources import DatasetSource, is_table_folder, looks_local
from simseg.data.splits import given_split_from_lists
from simseg.data.synthetic_pairs import SYNTHETIC_MODES, SyntheticPairsSource
from simseg.errors import SimsegError

SYNTHETIC_POOL = 10_000  # synthetic images besides the test set (rendered only when used)


class PairSource(Protocol):
    """Labelled pairs: ``names`` are stable item names (image stem, a dataset's name column or row number),
    ``groups`` the breed or shape class per item for stratified splits (None where unknown)."""

    name: str
    names: list[str]
    groups: list[str] | None
    label_set: LabelSet
    """The classes the masks' ids stand for."""
    given_split: dict[str, list[int]] | None
    """The split the data already has, ``{"train": [...], "test": [...]}`` as indices (None: drawn)."""
    notes: list[str]
    """Lines for the user about how the data was read (e.g. classes named class_0.. for want of a class file)."""
    skipped: int
    """Unpaired files left out (``data.skip_unpaired``)."""

    def __len__(self) -> int: ...

    def pair(self, index: int) -> tuple[Image.Image, np.ndarray]:
        """(RGB image, (H, W) uint8 class ids, 255 = ignored) of item ``index``; the mask is the image's size."""
        ...

    def fingerprint(self) -> str:
        """As :meth:`simseg.data.sources.ImageSource.fingerprint`: changes when any pair does."""
        ...


def open_segmentation_pairs(data_cfg, stream: str = "segment") -> PairSource:
    """The pairs a segmentation stage's ``data`` section names (see :func:`open_pairs_source`), with the split
    ``data.train_list`` / ``data.test_list`` give, if any, as its ``given_split`` (over the data's own)."""
    test_size, subset, val_size = data_cfg.sizes()
    # A synthetic source's size must not depend on the subset, or the test set and the nesting would change with it.
    synthetic_count = test_size + max(SYNTHETIC_POOL, val_size + (subset or 0))
    source = open_pairs_source(data_cfg.source, stream=stream, synthetic_count=synthetic_count,
                               synthetic_seed=data_cfg.synthetic_seed, synthetic_size=data_cfg.synthetic_image_size,
                               skip_unpaired=data_cfg.skip_unpaired, split=data_cfg.split,
                               image_column=data_cfg.image_column, mask_column=data_cfg.mask_column,
                               masks=MaskOptions.of(data_cfg))
    listed = given_split_from_lists(source.names, data_cfg.train_list, data_cfg.test_list)
    if listed is not None:
        source.given_split = listed
    return source


def open_pairs_source(source: str, *, stream: str, synthetic_count: int, synthetic_seed: int, synthetic_size: int,
                      skip_unpaired: bool, split: str, image_column: str, mask_column: str,
                      masks: MaskOptions | None = None) -> PairSource:
    """The pair source named by ``source``; ``stream`` separates the synthetic images of different stages;
    ``masks`` says how mask values map to classes (:class:`~simseg.data.mask_classes.MaskOptions`)."""
    if source in SYNTHETIC_MODES:
        seed = zlib.crc32(f"{stream}:{synthetic_seed}".encode())  # the rule of data.open_image_source
        return SyntheticPairsSource(synthetic_count, seed, synthetic_size, SYNTHETIC_MODES[source])
    path = Path(source).expanduser()
    if path.is_dir() and OxfordPetsSource.find_root(path) is not None:
        return OxfordPetsSource(path, skip_unpaired)
    if path.is_dir() and not is_table_folder(path) and find_mask_folder(path) is not None:
        return MaskFolderSource(path, masks, skip_unpaired)
    if path.is_dir() and not is_table_folder(path):
        raise SimsegError(f"data.source {source} is neither an Oxford-IIIT Pet folder (images/ and "
                          f"annotations/trimaps/, or a parent of oxford-iiit-pet/), a mask folder (images/ and "
                          f"masks/) nor a datasets dataset: check the folder")
    if not path.exists() and looks_local(source):
        raise SimsegError(f"data.source {source} does not exist: check the path")
    # DatasetSource loads the dataset and picks the split; the columns are chosen again here, with the mask's in view
    loaded = (DatasetSource.from_local(path, split, image_column) if path.exists() else
              DatasetSource.from_hub(source, split, image_column))
    dataset, given = loaded.dataset, None
    if path.is_dir():
        dataset, given = _with_test_split(path, split, dataset)
    return DatasetPairsSource(dataset, image_column, mask_column, loaded.name, masks,
                              beside=path if path.is_dir() else None, given_split=given)


def _with_test_split(path: Path, split: str, train) -> tuple[object, dict[str, list[int]] | None]:
    """A local ``DatasetDict`` with a ``test`` (else ``validation``) split besides its ``train`` split (the one
    ``data.split`` names): its rows joined after the training rows and the split as indices; otherwise
    ``(train, None)``."""
    import datasets

    if split != "train" or not (path / "dataset_dict.json").is_file():
        return train, None
    whole = datasets.load_from_disk(str(path))
    test = next((whole[n] for n in ("test", "validation") if n in whole), None)
    if test is None or len(test) == 0:
        return train, None
    try:
        joined = datasets.concatenate_datasets([train, test])
    except ValueError as err:
        raise SimsegError(f"the {split} and test splits of {path} differ in their columns ({err}): give them the "
                          f"same features") from None
    return joined, {"train": list(range(len(train))), "test": list(range(len(train), len(joined)))}
