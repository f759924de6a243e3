"""Labelled items decoded once: the image cache behind the labelled stages' batched path.

A folder holds, for the source items it was asked for (``items``, sorted source indices):

    images.npy       (N, S, S, 3) uint8   each image resized to S x S (aspect not kept: the augmentation draws its
                                          crop in the original geometry from ``sizes`` and maps it onto this square)
    masks.npy        (N, S, S)    uint8   class ids resized with NEAREST (pairs only)
    eval_images.npy  (N, E, E, 3) uint8   the stage's deterministic evaluation transform before normalisation, so
                                          evaluating from the cache scores exactly the per-image path's pixels
    eval_masks.npy   (N, E, E)    uint8   (pairs only)
    sizes.npy        (N, 2)       int32   original (height, width)
    items.npy        (N,)         int64   source index of each row
    labelled.json    format, the spec, the source's fingerprint and a CRC-32 per array, written last

Automatic caches live in one folder per source and spec below ``data.cache_dir`` (a run's own folder, or the sweep
folder that all its cells share). A cache is reused while its source's fingerprint (item names, file sizes and
modification times) is unchanged and it holds every item asked for; a run that needs more items extends it,
copying the rows it has and decoding only the new ones; a changed source rebuilds it; a damaged one (unreadable
description, truncated or altered array) is refused with one line. Building happens under a file lock, in a
temporary folder renamed into place, so concurrent cells and a full disk never leave a half-written cache.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from simseg.data.sources import SyntheticSource
from simseg.errors import SimsegError, one_line

FORMAT, VERSION, META = "simseg-labelled-cache", 1, "labelled.json"
_DECODE_BATCH = 16


@dataclasses.dataclass(frozen=True)
class CacheSpec:
    """What a cache stores: training squares of ``train_size``, evaluation images of ``eval_size`` made by
    ``eval_op`` (``resize``: the whole image to E x E, the segmentation stage's; ``shorter_crop``: shorter side to E
    and a centre crop, the classification stage's), and whether there are masks."""

    train_size: int
    eval_size: int
    eval_op: str
    masks: bool

    def row_bytes(self) -> int:
        """Bytes one item takes (images and masks at both sizes)."""
        channels = 4 if self.masks else 3
        return channels * (self.train_size ** 2 + self.eval_size ** 2) + 16


def cache_side(img_size: int) -> int:
    """The training squares' side for ``img_size`` training crops: a quarter more, so the crops of 50-100% of an
    image that the labelled stages draw are resampled near 1:1 rather than blown up (160 for 128)."""
    return img_size * 5 // 4


def source_fingerprint(source) -> str:
    """A digest of what the source holds: its name, its item names and, for files on disk, their sizes and
    modification times (a replaced or edited file changes it; its contents are not read); a dataset's own
    fingerprint; a synthetic source's seed and size."""
    digest = hashlib.sha256(f"{source.name}\n{len(source)}\n".encode())
    for name in getattr(source, "names", None) or []:
        digest.update(f"{name}\n".encode())
    for path in _files_of(source):
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    dataset = getattr(source, "dataset", None)
    digest.update(f"dataset:{getattr(dataset, '_fingerprint', None)}\n".encode())
    generator = (source if isinstance(source, SyntheticSource) else getattr(source, "_source", None)
                 or getattr(getattr(source, "_read", None), "__self__", None))
    if isinstance(generator, SyntheticSource):  # rendered images: the seed and size decide them
        digest.update(f"synthetic:{generator.seed}:{generator.size}\n".encode())
    return digest.hexdigest()


def _files_of(source) -> list[Path]:
    """Files the items are read from, where the source reads files (pets, class folders, image folders); else []."""
    if hasattr(source, "image_files"):
        return [*source.image_files, *source.trimap_files]
    if hasattr(source, "files"):
        return list(source.files)
    root = Path(source.name)
    return [root / name for name in source.names] if hasattr(source, "names") and root.is_dir() else []


def _eval_transform(spec: CacheSpec) -> v2.Transform:
    if spec.eval_op == "resize":  # simseg.data.pair_transforms.seg_eval_transform before its dtype and normalisation
        return v2.Resize((spec.eval_size, spec.eval_size), antialias=True)
    if spec.eval_op == "shorter_crop":  # simseg.data.transforms.eval_transform likewise
        return v2.Compose([v2.Resize(spec.eval_size, antialias=True), v2.CenterCrop(spec.eval_size)])
    raise ValueError(f"unknown eval_op {spec.eval_op!r}")


class _Decoded(Dataset):
    """Item i: the arrays of source item ``items[i]``, for the DataLoader that decodes (optionally in workers)."""

    def __init__(self, source, items: Sequence[int], spec: CacheSpec):
        self.source, self.items, self.spec = source, list(map(int, items)), spec
        self.eval = _eval_transform(spec) if spec.eval_size else None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        index, spec = self.items[i], self.spec
        if spec.masks:
            picture, ids = self.source.pair(index)
            mask = tv_tensors.Mask(torch.from_numpy(np.array(ids)))  # (H, W) uint8 class ids
        else:
            picture, mask = self.source.image(index), None
        image = tv_tensors.Image(TF.pil_to_tensor(picture))  # (3, H, W) uint8
        square = [spec.train_size, spec.train_size]
        row = {"images": TF.resize(image, square, antialias=True).permute(1, 2, 0),
               "sizes": torch.tensor(image.shape[-2:], dtype=torch.int32), "items": torch.tensor(index)}
        if mask is not None:
            row["masks"] = TF.resize(mask, square)  # masks resize with NEAREST
        if spec.eval_size and mask is None:
            row["eval_images"] = self.eval(image).permute(1, 2, 0)
        elif spec.eval_size:
            evaluated, evaluated_mask = self.eval(image, mask)
            row["eval_images"], row["eval_masks"] = evaluated.permute(1, 2, 0), evaluated_mask
        return {k: v.as_subclass(torch.Tensor).contiguous() for k, v in row.items()}


def _shapes(spec: CacheSpec, count: int) -> dict[str, tuple[tuple[int, ...], str]]:
    """{array name: (shape, dtype)}; eval_size 0 stores no evaluation arrays (pretraining evaluates per image)."""
    s, e = spec.train_size, spec.eval_size
    shapes = {"images": ((count, s, s, 3), "|u1"), "sizes": ((count, 2), "<i4"), "items": ((count,), "<i8")}
    if e:
        shapes["eval_images"] = ((count, e, e, 3), "|u1")
    if spec.masks:
        shapes["masks"] = ((count, s, s), "|u1")
        if e:
            shapes["eval_masks"] = ((count, e, e), "|u1")
    return shapes


class LabelledCache:
    """An opened cache: read-only memory maps of its arrays (see the module docstring) and its description."""

    def __init__(self, path: Path, meta: dict, arrays: dict[str, np.ndarray]):
        self.path, self.meta, self.arrays = path, meta, arrays
        self.spec = CacheSpec(**meta["spec"])
        self.items = arrays["items"]

    def __len__(self) -> int:
        return len(self.items)

    def holds(self, items: Sequence[int]) -> bool:
        return bool(np.isin(np.asarray(items, dtype=np.int64), self.items).all())

    def rows(self, items: Sequence[int] | np.ndarray) -> np.ndarray:
        """Rows of source items ``items`` (each must be cached)."""
        items = np.asarray(items, dtype=np.int64)
        rows = np.searchsorted(self.items, items)
        if len(items) and (rows.max() >= len(self.items) or (self.items[rows] != items).any()):
            raise SimsegError(f"the data cache {self.path} lacks some of the items asked for: delete the folder to "
                              f"rebuild it")
        return rows

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())


def open_labelled_cache(path: Path) -> LabelledCache:
    """The cache at ``path``, every array checked against its description; damage is one line naming the fix."""
    fix = f"delete {path} to rebuild it, or set data.pipeline=per_image"
    try:
        meta = json.loads((path / META).read_text())
        spec = CacheSpec(**meta["spec"])
        assert meta["format"] == FORMAT and meta["version"] == VERSION
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as err:
        raise SimsegError(f"the data cache {path} is damaged ({META}: {type(err).__name__}): {fix}") from None
    arrays = {}
    for name, (shape, dtype) in _shapes(spec, int(meta["count"])).items():
        try:
            array = np.load(path / f"{name}.npy", mmap_mode="r")
        except (OSError, ValueError) as err:
            raise SimsegError(f"the data cache {path} is damaged ({name}.npy: {type(err).__name__}): {fix}") from None
        if array.shape != shape or array.dtype != np.dtype(dtype) or _crc(array) != meta["crc32"][name]:
            raise SimsegError(f"the data cache {path} is damaged ({name}.npy differs from {META}): {fix}")
        arrays[name] = array
    return LabelledCache(path, meta, arrays)


def _crc(array: np.ndarray) -> int:
    return zlib.crc32(memoryview(np.ascontiguousarray(array)).cast("B"))


def cache_folder(root: Path, source, spec: CacheSpec) -> Path:
    """The folder below ``root`` for this source and spec: readable name, then a hash of the source's name."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(source.name).name or source.name).strip("-")[:40] or "source"
    digest = hashlib.sha256(source.name.encode()).hexdigest()[:8]
    return root / f"{slug}-{digest}-s{spec.train_size}-e{spec.eval_size}-{spec.eval_op}"


def ensure_labelled_cache(source, items: Sequence[int], spec: CacheSpec, root: str | Path, workers: int = 0,
                          progress: bool = True, say: Callable[[str], None] = print) -> LabelledCache:
    """The cache of ``source`` below ``root`` holding ``items``: reused, extended, or (re)built; see the module
    docstring. ``say`` prints the one line that tells what happened."""
    folder = cache_folder(Path(root).expanduser(), source, spec)
    fingerprint = source_fingerprint(source)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SimsegError(f"cannot create the data cache folder {folder.parent} ({err.strerror}): set "
                          f"data.cache_dir to a writable folder") from None
    with FileLock(str(folder) + ".lock"):
        old = open_labelled_cache(folder) if folder.exists() else None
        if old is not None and old.meta["fingerprint"] == fingerprint and old.holds(items):
            say(f"data cache {folder}: {len(old):,} items, reused")
            return old
        if old is not None and old.meta["fingerprint"] != fingerprint:
            say(f"data cache {folder}: {source.name} changed since it was built; rebuilding")
            old = None
        wanted = np.union1d(np.asarray(items, dtype=np.int64), old.items if old is not None else [])
        _build(source, wanted, spec, fingerprint, folder, old, workers, progress)
        cache = open_labelled_cache(folder)
        say(f"data cache {folder}: {len(cache):,} items of {source.name} decoded once "
            f"({cache.nbytes() / 2**20:,.0f} MiB)")
        return cache


def _build(source, items: np.ndarray, spec: CacheSpec, fingerprint: str, folder: Path, old: LabelledCache | None,
           workers: int, progress: bool) -> None:
    """Write the cache of ``items`` into a temporary folder beside ``folder``, then swap it in. Rows ``old`` holds
    are copied; the others are decoded."""
    shapes = _shapes(spec, len(items))
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        kept = np.isin(items, old.items) if old is not None else np.zeros(len(items), dtype=bool)
        arrays = {name: _allocated_memmap(tmp / f"{name}.npy", shape, dtype) for name, (shape, dtype) in shapes.items()}
        if kept.any():
            rows = old.rows(items[kept])
            for name, array in arrays.items():
                array[kept] = old.arrays[name][rows]
        todo = np.flatnonzero(~kept)
        loader = DataLoader(_Decoded(source, items[todo], spec), batch_size=_DECODE_BATCH, num_workers=workers)
        done = 0
        with tqdm(total=len(todo), unit="img", desc=f"caching {Path(source.name).name}", disable=not progress) as bar:
            for batch in loader:
                positions = todo[done:done + len(batch["items"])]
                for name, array in arrays.items():
                    array[positions] = batch[name].numpy()
                done += len(positions)
                bar.update(len(positions))
        crc = {name: _crc(array) for name, array in arrays.items()}
        for array in arrays.values():
            array.flush()
        del arrays
        meta = {"format": FORMAT, "version": VERSION, "source": source.name, "fingerprint": fingerprint,
                "count": len(items), "spec": dataclasses.asdict(spec), "crc32": crc}
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        _swap_in(tmp, folder)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                need = len(items) * spec.row_bytes() / 2**20
                raise SimsegError(f"disk full while writing the data cache {folder} ({need:,.0f} MiB; nothing "
                                  f"was left behind): free space, set data.cache_dir to another disk, or set "
                                  f"data.pipeline=per_image") from None
            raise SimsegError(f"cannot write the data cache {folder} ({err.strerror or err}): set data.cache_dir "
                              f"to a writable folder") from None
        if isinstance(err, SimsegError):  # a worker's error arrives with its traceback folded into the message
            raise SimsegError(one_line(err)) from None
        raise


def _allocated_memmap(path: Path, shape: tuple[int, ...], dtype: str) -> np.memmap:
    """A writable .npy memory map whose blocks are allocated first: a store into a page of a sparse file on a full
    disk kills the process with SIGBUS, while the allocation fails with ENOSPC, which becomes one line."""
    array = np.lib.format.open_memmap(path, "w+", np.dtype(dtype), shape)
    if hasattr(os, "posix_fallocate"):
        with open(path, "r+b") as file:
            os.posix_fallocate(file.fileno(), 0, os.path.getsize(path))
    return array


def _swap_in(tmp: Path, folder: Path) -> None:
    """Replace ``folder`` by the complete ``tmp`` with renames: a reader sees the old cache or the new one."""
    if not folder.exists():
        os.replace(tmp, folder)
        return
    aside = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(aside, ignore_errors=True)
    os.replace(folder, aside)
    os.replace(tmp, folder)
    shutil.rmtree(aside, ignore_errors=True)
