"""A mask folder: images and their masks in two folders, paired by name, the layout most segmentation data ships in::

    ROOT/images/NAME.jpg   + ROOT/masks/NAME.png     (or NAME_mask.png: a suffix every mask carries)
    ROOT/images/train/...  + ROOT/masks/train/...    (a split the data already has: train pool and test set)
    ROOT/images/test/...   + ROOT/masks/test/...
    ROOT/classes.json                                (optional: names, colours, values; simseg.data.class_file)

The image folder may also be called ``imgs``/``img_dir``/``image``, the mask folder ``annotations``/``ann_dir``/
``labels``/``label``/``segmentations``/``gt`` (mmsegmentation's ``img_dir``/``ann_dir`` included), and the test
folder ``val``/``validation``. How a mask's values become class ids: :mod:`simseg.data.mask_formats`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from simseg.data.class_file import find_class_file, read_class_file
from simseg.data.mask_classes import MaskOptions, resolve_classes, scan_masks
from simseg.data.mask_formats import (
    JPEG_EXTENSIONS,
    MASK_EXTENSIONS,
    check_size,
    decode_mask,
    read_mask_file,
    refuse_jpeg,
)
from simseg.data.sources import digest, files_fingerprint, read_rgb
from simseg.data.stem_pairs import files_by_stem, refuse_unpaired
from simseg.errors import SimsegError

IMAGE_DIRS = ("images", "imgs", "img_dir", "image", "img")
MASK_DIRS = ("masks", "mask", "annotations", "ann_dir", "labels", "label", "segmentations", "gt")
TRAIN_DIRS, TEST_DIRS = ("train", "training"), ("test", "val", "validation")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def find_mask_folder(root: Path) -> tuple[Path, Path] | None:
    """(image folder, mask folder) of a mask-folder layout at ``root``, or None."""
    images = next((root / n for n in IMAGE_DIRS if (root / n).is_dir()), None)
    masks = next((root / n for n in MASK_DIRS if (root / n).is_dir()), None)
    return (images, masks) if images is not None and masks is not None else None


def _split_folders(images: Path, masks: Path) -> list[tuple[str, Path, Path]]:
    """[(split, image folder, mask folder)]: ``train`` and ``test`` when both folders have both; the train folders
    alone as ``all`` when there is no test folder; else the folders themselves as ``all``."""
    train = next((n for n in TRAIN_DIRS if (images / n).is_dir() and (masks / n).is_dir()), None)
    test = next((n for n in TEST_DIRS if (images / n).is_dir() and (masks / n).is_dir()), None)
    if train and test:
        return [("train", images / train, masks / train), ("test", images / test, masks / test)]
    return [("all", images / train, masks / train)] if train else [("all", images, masks)]


def detect_suffix(masks: list[str], images: set[str]) -> str:
    """What every mask stem adds to its image's stem (``_mask``, ``_segmentation``), or ``""``: the separator-led
    ending all the masks share that pairs the most of them. Masks that pair by different endings are an error."""
    direct = sum(m in images for m in masks)
    if direct == len(masks):
        return ""
    common = os.path.commonprefix([m[::-1] for m in masks])[::-1]
    candidates = [common[i:] for i in range(len(common)) if common[i] in "_-."]
    paired = {c: sum(m[:-len(c)] in images for m in masks) for c in candidates}
    best = max(candidates, key=lambda c: (paired[c], -len(c)), default=None)
    if best is not None and paired[best] > direct:
        return best
    endings: dict[str, str] = {}
    for m in masks:
        cuts = [i for i, c in enumerate(m) if c in "_-."] if m not in images else [len(m)]
        ending = next((m[i:] for i in reversed(cuts) if m[:i] in images), None)
        if ending is not None:
            endings.setdefault(ending, m)
    if len(endings) > 1:
        shown = ", ".join(f"{m} ({e!r})" for e, m in list(endings.items())[:3])
        raise SimsegError(f"the masks' names add different suffixes to their images' ({shown}): rename them to "
                          f"share one, or set data.mask_suffix to the one to pair by")
    return ""


class MaskFolderSource:
    """The pairs of a mask folder (module docstring); ``names`` are the image stems (train items, then test items,
    each sorted), ``given_split`` the data's own train/test split as indices (None without one), ``notes`` lines
    for the user, ``skipped`` the unpaired files left out with ``skip_unpaired``."""

    def __init__(self, root: Path, options: MaskOptions | None = None, skip_unpaired: bool = False):
        options = options or MaskOptions()
        found = find_mask_folder(Path(root))
        if found is None:
            raise SimsegError(f"data.source {root} is not a mask folder: it needs images/ and masks/ (or "
                              f"annotations/, labels/, img_dir/ + ann_dir/)")
        self.root, self.name, self.groups = Path(root), str(root), None
        parts = [(split, files_by_stem(i, IMAGE_EXTENSIONS), files_by_stem(m, MASK_EXTENSIONS))
                 for split, i, m in _split_folders(*found)]
        suffix = options.suffix
        if suffix is None:
            suffix = detect_suffix([s for _, _, masks in parts for s in masks],
                                   {s for _, images, _ in parts for s in images})
        self.image_files, self.mask_files, splits, no_mask, no_image = [], [], {}, [], []
        for split, images, masks in parts:
            masks = {s[:len(s) - len(suffix)] if suffix and s.endswith(suffix) else s: p for s, p in masks.items()}
            no_mask += [images[s] for s in images if s not in masks]
            no_image += [masks[s] for s in masks if s not in images]
            stems = sorted(s for s in images if s in masks)
            splits[split] = list(range(len(self.image_files), len(self.image_files) + len(stems)))
            self.image_files += [images[s] for s in stems]
            self.mask_files += [masks[s] for s in stems]
        if not skip_unpaired:
            refuse_unpaired(no_mask, no_image, root,
                            fix=", set data.mask_suffix if the names differ by more than a suffix")
        self.skipped = len(no_mask) + len(no_image)
        self.names = [p.stem for p in self.image_files]
        if not self.names:
            raise SimsegError(f"data.source {root} holds no image/mask pairs: check {found[0]} and {found[1]}")
        if len(set(self.names)) < len(self.names):
            twice = next(n for n in self.names if self.names.count(n) > 1)
            raise SimsegError(f"{root} holds the image {twice} in both train/ and test/: keep it in one")
        self.given_split = splits if "all" not in splits else None
        jpeg = next((p for p in self.mask_files if p.suffix.lower() in JPEG_EXTENSIONS), None)
        if jpeg is not None and options.threshold is None:
            raise refuse_jpeg(str(jpeg))
        class_path = Path(options.classes).expanduser() if options.classes else find_class_file(self.root)
        self.label_set, self.mapping, self.notes = resolve_classes(
            options, self.root.name, read_class_file(class_path) if class_path else None,
            first_mask=lambda: read_mask_file(self.mask_files[0]),
            scan=lambda: scan_masks(((read_mask_file(p), str(p)) for p in self.mask_files), options.threshold))

    def __len__(self) -> int:
        return len(self.names)

    def pair(self, index: int) -> tuple[Image.Image, np.ndarray]:
        """(RGB image, (H, W) uint8 class ids, 255 = ignored) of item ``index``."""
        where = str(self.mask_files[index])
        image = read_rgb(self.image_files[index])
        return image, check_size(decode_mask(read_mask_file(self.mask_files[index]), self.mapping, where), image,
                                 where)

    def fingerprint(self) -> str:
        """Changes with any file and with the mapping of values to ids (another ``label_map`` is other data)."""
        return digest("mask-folder", files_fingerprint([*self.image_files, *self.mask_files]),
                      self.mapping.describe())
