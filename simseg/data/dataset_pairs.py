"""A Hugging Face ``datasets`` dataset of images and masks as labelled pairs.

Where the class names come from (first wins): a class file (``data.classes``, or ``classes.json`` beside a local
dataset); the dataset's features, when a column is a list of ``ClassLabel`` (the classes each mask holds, whose
``names`` are every class in id order); an ``id2label.json`` beside a local dataset (transformers' convention,
``{"0": "background", ...}``); ``data.label_map``; else the ids found in the masks. A mask column named
``trimap(s)``, or masks holding only the values 1/2/3, are Oxford-IIIT Pet trimaps (:data:`PETS`), as before
masks could be anything else. Masks are decoded by :mod:`simseg.data.mask_formats` with the same ``data.label_map``
as a mask folder's.

Reading every mask to find its values (no class names, no label_map) happens on first use of ``label_set`` or
``pair``, not when the source is opened.
"""

from __future__ import annotations

import io
import json
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from simseg.data.class_file import find_class_file, read_class_file
from simseg.data.label_set import PETS, LabelSet
from simseg.data.mask_classes import MaskOptions, resolve_classes, scan_masks
from simseg.data.mask_formats import MaskMapping, check_size, decode_mask
from simseg.data.sources import DatasetSource, digest
from simseg.errors import SimsegError

_MASK_NAMES = ("mask", "masks", "trimap", "trimaps", "annotation", "annotations", "label", "labels",
               "segmentation", "segmentation_mask")
_NAME_COLUMNS = ("file_name", "filename", "image_id", "name", "id")
_TRIMAPS = MaskMapping(dict(zip(PETS.values, range(3))), fix="an Oxford-IIIT Pet trimap holds only 1 (pet), 2 "
                       "(background) and 3 (boundary): fix the row, or give a class file (data.classes)")


def feature_class_names(features) -> list[str] | None:
    """The names of the first column that is a list of ``ClassLabel`` (the classes in each mask), or None."""
    import datasets

    for feature in features.values():
        inner = feature[0] if isinstance(feature, list) and feature else getattr(feature, "feature", None)
        if isinstance(inner, datasets.ClassLabel):
            return list(inner.names)
    return None


def id2label_names(folder: Path | None) -> list[str] | None:
    """The names of ``folder/id2label.json`` in id order (ids must be 0..C-1), or None without one."""
    path = folder / "id2label.json" if folder is not None else None
    if path is None or not path.is_file():
        return None
    try:
        record = {int(k): str(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    except (OSError, ValueError, AttributeError) as err:
        raise SimsegError(f"{path} is not a {{\"0\": \"name\", ...}} mapping ({type(err).__name__}): fix it") from None
    if sorted(record) != list(range(len(record))):
        raise SimsegError(f"{path} must name the ids 0, 1, 2, ... once each; it has {sorted(record)}")
    return [record[i] for i in range(len(record))]


class DatasetPairsSource:
    """A ``datasets`` dataset with an image column and a mask column.

    Empty column names are detected: the image is the first Image column not named like a mask, the mask an Image
    column named mask/trimap/annotation/label(s)/segmentation, else the other Image column. ``names`` come from a
    unique string column file_name/filename/image_id/name/id, else the row number; ``groups`` from the first
    ClassLabel column (e.g. the breed), else None. ``beside`` is the folder of a local dataset, where a class file
    or ``id2label.json`` may lie; ``given_split`` the dataset's own train/test rows, if the caller joined them.
    """

    def __init__(self, dataset, image_column: str, mask_column: str, name: str, options: MaskOptions | None = None,
                 beside: Path | None = None, given_split: dict[str, list[int]] | None = None):
        import datasets

        features, columns = dataset.features, dataset.column_names
        for key, column in (("image_column", image_column), ("mask_column", mask_column)):
            if column and column not in columns:
                raise SimsegError(f"data.{key}='{column}' is not a column of {name}; it has {', '.join(columns)}")
        pictures = [k for k in columns if isinstance(features[k], datasets.Image)]
        if not image_column and not pictures:
            raise SimsegError(f"{name} has no column of Image type: set data.image_column "
                              f"(columns: {', '.join(columns)})")
        maskish = [k for k in pictures if k.lower() in _MASK_NAMES]
        image_column = image_column or next((k for k in pictures if k not in maskish), pictures[0])
        others = [k for k in maskish + pictures if k != image_column]
        if mask_column == image_column or not (mask_column or others):
            raise SimsegError(f"{name} has no mask column besides '{image_column}': set data.mask_column "
                              f"(columns: {', '.join(columns)})")
        self.dataset, self.name, self.given_split = dataset, name, given_split
        self.options = options = options or MaskOptions()
        self.image_column, self.mask_column = image_column, mask_column or others[0]
        self._images = DatasetSource(dataset.select_columns([image_column]), image_column, name)
        self._masks = dataset.select_columns([self.mask_column])
        names = next((list(dataset[k]) for k in _NAME_COLUMNS
                      if k in columns and getattr(features[k], "dtype", None) == "string"), None)
        unique = names is not None and len(set(names)) == len(names)
        self.names = [str(v) for v in names] if unique else [str(i) for i in range(len(dataset))]
        labels = next((k for k in columns if isinstance(features[k], datasets.ClassLabel)), None)
        self.groups = [features[labels].int2str(int(v)) for v in dataset[labels]] if labels else None
        class_path = Path(options.classes).expanduser() if options.classes else (
            find_class_file(beside) if beside is not None else None)
        self._class_file = read_class_file(class_path) if class_path else None
        self._class_names = feature_class_names(features) or id2label_names(beside)
        self.skipped = 0

    @cached_property
    def _resolved(self) -> tuple[LabelSet, MaskMapping, list[str]]:
        options, title = self.options, Path(self.name).name or self.name
        if self._class_file is not None or self._class_names or options.label_map:
            return resolve_classes(options, title, self._class_file, self._class_names, lambda: self._mask(0))
        if self.mask_column.lower() in ("trimap", "trimaps"):
            return PETS, _TRIMAPS, []
        scan = scan_masks(((self._mask(i), self._where(i)) for i in range(len(self))), options.threshold)
        if not scan.palette and scan.values <= {1, 2, 3} and len(scan.values) > 1:
            return PETS, _TRIMAPS, [f"{title}: masks hold only the values 1/2/3, read as Oxford-IIIT Pet trimaps "
                                    f"(1 pet, 2 background, 3 boundary); give a class file (data.classes) to read "
                                    f"them otherwise"]
        return resolve_classes(options, title, first_mask=lambda: self._mask(0), scan=lambda: scan)

    @property
    def label_set(self) -> LabelSet:
        return self._resolved[0]

    @property
    def notes(self) -> list[str]:
        return self._resolved[2]

    def __len__(self) -> int:
        return len(self.dataset)

    def _where(self, index: int) -> str:
        return f"{self.name}[{index}] column '{self.mask_column}'"

    def _mask(self, index: int) -> Image.Image | np.ndarray:
        """Row ``index``'s mask as stored: a PIL image (an Image feature) or an array."""
        try:
            value = self._masks[int(index)][self.mask_column]
            if isinstance(value, dict):  # undecoded Image feature: {"bytes": ..., "path": ...}
                value = Image.open(io.BytesIO(value["bytes"])) if value.get("bytes") else Image.open(value["path"])
            return value if isinstance(value, Image.Image) else np.asarray(value)
        except Exception as err:
            raise SimsegError(f"{self._where(index)} cannot be read as a mask ({type(err).__name__}): fix or drop "
                              f"that row") from None

    def pair(self, index: int) -> tuple[Image.Image, np.ndarray]:
        """(RGB image, (H, W) uint8 class ids, 255 = ignored) of row ``index``."""
        mapping, where = self._resolved[1], self._where(index)
        image = self._images.image(index)
        return image, check_size(decode_mask(self._mask(index), mapping, where), image, where)

    def fingerprint(self) -> str:
        # the trimap reading keeps its old fingerprint, so caches built before other masks were read stay valid
        mapping = self._resolved[1]
        return digest("pairs", self._images.fingerprint(), self.mask_column,
                      *(() if mapping is _TRIMAPS else (mapping.describe(),)))
