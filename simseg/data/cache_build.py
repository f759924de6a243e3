"""Making image caches (the format: :mod:`simseg.data.image_cache`): automatically for a run's items
(:func:`ensure_cache`) or for a whole source by ``simseg data cache`` (:func:`build_cache`).

An automatic cache lives in one folder per source and spec below ``data.cache_dir`` (a run's own folder, or the sweep
folder that all its cells share). It is reused while its source's fingerprint (:meth:`ImageSource.fingerprint`:
names, file sizes and modification times; a dataset's fingerprint; a synthetic seed) is unchanged and it holds
every item asked for; a run that needs more items extends it, copying the rows it has and decoding only the new
ones; a changed source, or a cache of an older simseg, rebuilds it; a damaged one is refused with one line. Every
cache is written under a file lock into a temporary folder with its blocks allocated first, then renamed into place,
so concurrent runs and a full disk never leave half a cache.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from filelock import FileLock
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from simseg.config.pretrain import PretrainDataConfig
from simseg.data.image_cache import (
    FORMAT,
    META,
    VERSION,
    CacheSpec,
    ImageCache,
    cache_side,
    crc32,
    is_cache,
    open_cache,
)
from simseg.data.transforms import eval_geometry
from simseg.data.unlabelled import open_pretraining_images
from simseg.errors import SimsegError, one_line

_DECODE_BATCH = 16
_OLD_AUTOMATIC_META = "labelled.json"  # what automatic caches were described by before this format


class _Decoded(Dataset):
    """Item i: the arrays of source item ``items[i]`` (see :meth:`CacheSpec.shapes`), for the DataLoader that
    decodes, optionally in worker processes."""

    def __init__(self, source, items: Sequence[int], spec: CacheSpec):
        self.source, self.items, self.spec = source, list(map(int, items)), spec
        self.eval = v2.Compose(eval_geometry(spec.eval_size, spec.eval_op)) if spec.eval_size else None

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
        if spec.labels:
            row["labels"] = torch.tensor(int(self.source.labels[index]))
        if self.eval is not None and mask is None:
            row["eval_images"] = self.eval(image).permute(1, 2, 0)
        elif self.eval is not None:
            evaluated, evaluated_mask = self.eval(image, mask)
            row["eval_images"], row["eval_masks"] = evaluated.permute(1, 2, 0), evaluated_mask
        return {k: v.as_subclass(torch.Tensor).contiguous() for k, v in row.items()}


def cache_folder(root: Path, source, spec: CacheSpec) -> Path:
    """The folder below ``root`` for this source and spec: readable name, then a hash of the source's name."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(source.name).name or source.name).strip("-")[:40] or "source"
    digest = hashlib.sha256(source.name.encode()).hexdigest()[:8]
    return root / f"{slug}-{digest}-s{spec.train_size}-e{spec.eval_size}-{spec.eval_op}"


def ensure_cache(source, items: Sequence[int], spec: CacheSpec, root: str | Path, workers: int = 0,
                 progress: bool = True, say: Callable[[str], None] = print) -> ImageCache:
    """The automatic cache of ``source`` below ``root`` holding ``items``: reused, extended, or (re)built (see the
    module docstring). ``say`` prints the one line that tells what happened."""
    folder = cache_folder(Path(root).expanduser(), source, spec)
    fingerprint = source.fingerprint()
    fix = f"delete {folder} to rebuild it, or set data.pipeline=per_image"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SimsegError(f"cannot create the data cache folder {folder.parent} ({err.strerror}): set "
                          f"data.cache_dir to a writable folder") from None
    with FileLock(str(folder) + ".lock"):
        old = None
        if (folder / _OLD_AUTOMATIC_META).exists() and not is_cache(folder):
            say(f"data cache {folder} was made by an older simseg; rebuilding it")
        elif folder.exists():
            old = open_cache(folder, fix)
        if old is not None and old.meta["fingerprint"] == fingerprint and old.spec == spec and old.holds(items):
            say(f"data cache {folder}: {len(old):,} items, reused")
            return old
        if old is not None and (old.meta["fingerprint"] != fingerprint or old.spec != spec):
            say(f"data cache {folder}: {source.name} changed since it was built; rebuilding")
            old = None
        wanted = np.union1d(np.asarray(items, dtype=np.int64), old.items if old is not None else [])
        fix = "free space, set data.cache_dir to another disk, or set data.pipeline=per_image"
        write_cache(source, wanted, spec, fingerprint, folder, old, workers, progress, fix)
        cache = open_cache(folder)
        say(f"data cache {folder}: {len(cache):,} items of {source.name} decoded once "
            f"({cache.nbytes() / 2**20:,.0f} MiB)")
        return cache


def build_cache(source, out: str | Path, spec: CacheSpec, workers: int = 0, progress: bool = True,
                overwrite: bool = False) -> Path:
    """Decode every item of ``source`` into a cache at ``out`` (``simseg data cache``); an existing cache there is
    replaced only with ``overwrite``, and stays intact until the new one is complete."""
    out = Path(out).expanduser()
    if is_cache(out) and not overwrite:
        raise SimsegError(f"{out} already holds an image cache: pass --overwrite to rebuild it, or choose another "
                          f"--out")
    if out.is_file() or (out.is_dir() and not is_cache(out) and any(out.iterdir())):
        raise SimsegError(f"--out {out} is a file or a folder holding other files: choose a new or empty folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SimsegError(f"cannot create {out.parent} ({err.strerror}): choose another --out") from None
    lock = Path(f"{out}.lock")
    try:
        with FileLock(str(lock)):
            write_cache(source, np.arange(len(source)), spec, source.fingerprint(), out, None, workers, progress,
                        "free space or choose another --out")
    finally:
        lock.unlink(missing_ok=True)  # a folder of the user's choosing: leave nothing beside it
    return out


def write_cache(source, items: np.ndarray, spec: CacheSpec, fingerprint: str, folder: Path,
                old: ImageCache | None, workers: int, progress: bool, fix: str) -> None:
    """Write the cache of ``items`` into a temporary folder beside ``folder``, then swap it in. Rows ``old`` holds
    are copied; the others are decoded. On any failure nothing is left behind; a full disk is one line ending in
    ``fix``."""
    shapes = spec.shapes(len(items))
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        kept = np.isin(items, old.items) if old is not None else np.zeros(len(items), dtype=bool)
        arrays = {name: _allocated_memmap(tmp / f"{name}.npy", shape, dtype) for name, (shape, dtype) in shapes.items()}
        if kept.any():
            rows = old.rows(items[kept])
            for name, array in arrays.items():
                array[kept] = old.arrays[name][rows]
        todo = np.flatnonzero(~kept)
        batches = iter(DataLoader(_Decoded(source, items[todo], spec), batch_size=_DECODE_BATCH, num_workers=workers))
        done = 0
        try:
            with tqdm(total=len(todo), unit="img", desc=f"caching {Path(source.name).name}",
                      disable=not progress) as bar:
                for batch in batches:
                    positions = todo[done:done + len(batch["items"])]
                    for name, array in arrays.items():
                        array[positions] = batch[name].numpy()
                    done += len(positions)
                    bar.update(len(positions))
        finally:
            # An iterator left by a worker's error would release its workers only when collected, after torch's
            # 5-second join timeout; shut them down now (torch has no public call for it).
            getattr(batches, "_shutdown_workers", lambda: None)()
        crc = {name: crc32(array) for name, array in arrays.items()}
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
                                  f"was left behind): {fix}") from None
            raise SimsegError(f"cannot write the data cache {folder} ({err.strerror or err}): choose a writable "
                              f"folder") from None
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


class SourceCache(NamedTuple):
    out: Path
    images: int
    side: int
    excluded: dict | None  # {"excluded": n, "listed": m} when an exclude file left images out


def cache_source(source: str, out: str | Path, img_size: int = 128, size: int | None = None, workers: int = 0,
                 overwrite: bool = False, exclude: str = "") -> SourceCache:
    """``simseg data cache``: every image of ``source`` (less those ``exclude`` names) decoded once into a cache at
    ``out``, squares of ``size`` pixels (default: a quarter more than ``img_size``, room for the random crops)."""
    side = cache_side(img_size) if size is None else size
    if side < 1 or img_size < 1:
        raise SimsegError(f"--size {side} and --img-size {img_size} must be positive numbers of pixels")
    images, excluded = open_pretraining_images(PretrainDataConfig(source=source, exclude=exclude), stream="pretrain")
    path = build_cache(images, out, CacheSpec(side), workers=workers, overwrite=overwrite)
    return SourceCache(path, len(images), side, excluded or None)
