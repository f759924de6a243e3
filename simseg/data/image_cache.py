"""The image cache of every stage: the items of a source decoded once, read back as memory maps.

A cache folder holds, for the source items it was made for (``items``, ascending source indices):

    images.npy       (N, S, S, 3) uint8   each image resized to S x S (aspect not kept: the batched augmentation draws
                                          its crop in the original geometry from ``sizes`` and maps it onto this square)
    sizes.npy        (N, 2)       int32   original (height, width)
    items.npy        (N,)         int64   source index of each row
    masks.npy        (N, S, S)    uint8   class ids resized with NEAREST (sources of image/mask pairs)
    labels.npy       (N,)         int64   class ids (sources of labelled images)
    eval_images.npy  (N, E, E, 3) uint8   the stage's evaluation transform before normalisation, so evaluating from
                                          the cache scores exactly the per-image path's pixels (when E > 0)
    eval_masks.npy   (N, E, E)    uint8   (pairs, when E > 0)
    cache.json       format, version, the spec, the source's name and fingerprint, a CRC-32 per array; written last

Caches are made by :mod:`simseg.data.cache_build` (automatically for a run, or by ``simseg data cache``). A cache is
itself an image source, so ``data.source`` may name one. Folders written by ``simseg data cache`` before this format
(``simseg-uint8-cache``: centre squares, ``images.npy`` alone) are read as they are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from simseg.errors import SimsegError

FORMAT, VERSION, META = "simseg-image-cache", 2, "cache.json"
LEGACY_FORMAT = "simseg-uint8-cache"  # version 1 of `simseg data cache`: centre squares in images.npy, no sizes


@dataclasses.dataclass(frozen=True)
class CacheSpec:
    """What a cache stores: training squares of ``train_size``; evaluation images of ``eval_size`` made by
    ``eval_op`` (:func:`simseg.data.transforms.eval_geometry`; 0 = none: evaluation reads the source); masks (the
    source yields image/mask pairs) and labels (it has a class id per item)."""

    train_size: int
    eval_size: int = 0
    eval_op: str = "shorter_crop"
    masks: bool = False
    labels: bool = False

    def shapes(self, count: int) -> dict[str, tuple[tuple[int, ...], str]]:
        """{array name: (shape, dtype)} of a cache of ``count`` items."""
        s, e = self.train_size, self.eval_size
        shapes = {"images": ((count, s, s, 3), "|u1"), "sizes": ((count, 2), "<i4"), "items": ((count,), "<i8")}
        if self.masks:
            shapes["masks"] = ((count, s, s), "|u1")
        if self.labels:
            shapes["labels"] = ((count,), "<i8")
        if e:
            shapes["eval_images"] = ((count, e, e, 3), "|u1")
            if self.masks:
                shapes["eval_masks"] = ((count, e, e), "|u1")
        return shapes

    def row_bytes(self) -> int:
        """Bytes one item takes."""
        return sum(int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(dtype).itemsize
                   for shape, dtype in self.shapes(1).values())


def cache_side(img_size: int) -> int:
    """The training squares' side for ``img_size`` training crops: a quarter more, so the crops of 50-100% of an
    image that the stages draw are resampled near 1:1 rather than blown up (160 for 128)."""
    return img_size * 5 // 4


class ImageCache:
    """An opened cache: read-only memory maps of its arrays (see the module docstring) and its description.

    Also an image source (:class:`~simseg.data.sources.ImageSource`), for a cache given as ``data.source``: item i
    is row i, its square resized back to the item's original size. ``note``: a line to show users (an old format).
    """

    def __init__(self, path: Path, meta: dict, arrays: dict[str, np.ndarray], note: str = ""):
        self.path, self.meta, self.arrays, self.note = path, meta, arrays, note
        self.spec = CacheSpec(**meta["spec"])
        self.items = arrays["items"]
        self.name = str(path)

    def __len__(self) -> int:
        return len(self.items)

    def __reduce__(self):
        # Reopen by path in another process: pickling the memory maps would copy the arrays.
        return open_cache, (self.path,)

    def holds(self, items) -> bool:
        return bool(np.isin(np.asarray(items, dtype=np.int64), self.items).all())

    def rows(self, items) -> np.ndarray:
        """Rows of source items ``items`` (each must be cached)."""
        items = np.asarray(items, dtype=np.int64)
        rows = np.searchsorted(self.items, items)
        if len(items) and (rows.max() >= len(self.items) or (self.items[rows] != items).any()):
            raise SimsegError(f"the data cache {self.path} lacks some of the items asked for: delete the folder to "
                              f"rebuild it")
        return rows

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    def image(self, index: int) -> Image.Image:
        height, width = (int(v) for v in self.arrays["sizes"][index])
        square = Image.fromarray(np.array(self.arrays["images"][index]))  # (S, S, 3) uint8 -> RGB
        return square if square.size == (width, height) else square.resize((width, height), Image.BILINEAR)

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.meta, sort_keys=True).encode()).hexdigest()


def crc32(array: np.ndarray) -> int:
    return zlib.crc32(memoryview(np.ascontiguousarray(array)).cast("B"))


def is_cache(path: str | Path) -> bool:
    """Whether ``path`` is a folder whose ``cache.json`` names a cache format (the arrays are not read)."""
    try:
        meta = json.loads((Path(path).expanduser() / META).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") in (FORMAT, LEGACY_FORMAT)


def open_cache(path: str | Path, fix: str = "") -> ImageCache:
    """The cache at ``path``, every array checked against its description; damage is one line naming ``fix`` (by
    default: rebuild with ``simseg data cache``)."""
    path = Path(path).expanduser()
    fix = fix or f"rebuild it with `simseg data cache SOURCE --out {path} --overwrite`"
    try:
        meta = json.loads((path / META).read_text())
        if meta.get("format") == LEGACY_FORMAT and meta.get("version") == 1:
            return _open_legacy(path, meta, fix)
        spec = CacheSpec(**meta["spec"])
        if (meta["format"], meta["version"]) != (FORMAT, VERSION):
            raise ValueError(f"format {meta['format']} version {meta['version']}")
        count, crcs = int(meta["count"]), dict(meta["crc32"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise SimsegError(f"the data cache {path} cannot be read ({META}: {type(err).__name__}): {fix}") from None
    arrays = {}
    for name, (shape, dtype) in spec.shapes(count).items():
        array = _load(path, name, fix)
        if array.shape != shape or array.dtype != np.dtype(dtype) or crc32(array) != crcs.get(name):
            raise SimsegError(f"the data cache {path} is damaged ({name}.npy differs from {META}): {fix}")
        arrays[name] = array
    return ImageCache(path, meta, arrays)


def _load(path: Path, name: str, fix: str) -> np.ndarray:
    try:
        return np.load(path / f"{name}.npy", mmap_mode="r")
    except (OSError, ValueError) as err:  # missing, truncated (shorter than its header says) or not .npy
        raise SimsegError(f"the data cache {path} is damaged ({name}.npy: {type(err).__name__}): {fix}") from None


def _open_legacy(path: Path, meta: dict, fix: str) -> ImageCache:
    """A cache of ``simseg data cache`` before this format: centre squares of each image, read as squares whose
    original size is their own (crops are drawn from the squares, as that version drew them)."""
    images = _load(path, "images", fix)
    count, size = int(meta["count"]), int(meta["size"])
    if images.shape != (count, size, size, 3) or images.dtype != np.uint8:
        raise SimsegError(f"the data cache {path} is damaged (images.npy holds {images.dtype} {images.shape}, "
                          f"{META} says uint8 {(count, size, size, 3)}): {fix}")
    arrays = {"images": images, "sizes": np.full((count, 2), size, dtype=np.int32),
              "items": np.arange(count, dtype=np.int64)}
    described = {**meta, "spec": dataclasses.asdict(CacheSpec(size))}
    note = (f"{path} is an image cache of an older simseg (centre squares of {size} px): read as it is, crops come "
            f"from the squares; `simseg data cache SOURCE --out {path} --overwrite` rebuilds it so that they come "
            f"from whole images")
    return ImageCache(path, described, arrays, note)
