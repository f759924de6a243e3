"""A decoded-once image cache: every image of a source resized and centre-cropped to ``size`` and stored as one uint8
array (N, size, size, 3) in ``images.npy``, described by ``cache.json``.

Why: JPEG decoding and per-image PIL augmentation in worker processes limit pretraining throughput. With the images
decoded once, a batch is a gather by index (from the memory map, or from a copy kept on the GPU) followed by the
batched augmentation of :mod:`simseg.data.batch_augment`. ``cache.json`` is written last: its presence marks a complete
cache. :class:`UInt8Cache` is also an :class:`~simseg.data.sources.ImageSource`, so the per-image path can train on
it too.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from simseg.data.sources import ImageSource
from simseg.errors import SimsegError, one_line
from simseg.files import temp_file_beside

CACHE_FORMAT = "simseg-uint8-cache"
CACHE_VERSION = 1
IMAGES_FILE, META_FILE = "images.npy", "cache.json"
_DECODE_BATCH = 32  # images per DataLoader item: large enough to amortise inter-process transfer, small for memory
_STAGING_BYTES = 64 * 2**20  # host chunk size when copying the memory map into a device tensor


def cache_memory_bytes(count: int, size: int) -> int:
    """Bytes of a cache of ``count`` images of ``size`` x ``size`` (uint8 RGB); the header adds < 4 KiB on disk."""
    return count * size * size * 3


def fit_square(image: Image.Image, size: int) -> torch.Tensor:
    """PIL RGB image -> uint8 (size, size, 3): shorter side resized to ``size`` (bilinear, antialiased), centre crop.

    The same operations as :func:`simseg.data.transforms.eval_transform` before normalisation.
    """
    pixels = TF.pil_to_tensor(image)  # (3, H, W) uint8
    pixels = TF.center_crop(TF.resize(pixels, [size], antialias=True), [size, size])
    return pixels.permute(1, 2, 0).contiguous()  # (S, S, 3)


class _Decoded(Dataset):
    """``fit_square(source.image(i))`` for the DataLoader that decodes in worker processes."""

    def __init__(self, source: ImageSource, size: int):
        self.source, self.size = source, size

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> torch.Tensor:
        return fit_square(self.source.image(index), self.size)


def _append(file, rows: np.ndarray) -> None:
    """Write a (b, S, S, 3) block of rows at the end of the array file (a seam for tests that fill the disk)."""
    file.write(rows.tobytes())


def build_cache(source: ImageSource, out_dir: str | Path, size: int = 144, workers: int = 0, progress: bool = True,
                overwrite: bool = False) -> Path:
    """Decode every image of ``source`` once into ``out_dir/images.npy`` (N, size, size, 3) uint8; return ``out_dir``.

    The array is written sequentially into a temporary file, fsynced and renamed, then ``cache.json`` is written
    atomically. Plain writes rather than a writable memory map: on a full disk, a store into a memory-mapped page
    kills the process with SIGBUS, while ``write`` fails with ENOSPC, which becomes one line here. On any failure
    nothing of the new cache is left behind; an existing cache being overwritten stays intact until the new array
    is complete. ``workers`` > 0 decodes in that many DataLoader worker processes.
    """
    out_dir = Path(out_dir).expanduser()
    if size < 1:
        raise SimsegError(f"cache size {size} must be a positive number of pixels")
    if is_cache(out_dir) and not overwrite:
        raise SimsegError(f"{out_dir} already holds an image cache: pass --overwrite to rebuild it, or choose "
                          f"another --out")
    count = len(source)
    shape = (count, size, size, 3)
    created = not out_dir.exists()
    tmp: Path | None = None
    replaced = False  # once the new array is renamed into place, a failure must remove it too
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(out_dir).free
        if free < cache_memory_bytes(count, size):
            raise SimsegError(f"{out_dir} has {free / 1e9:.2f} GB free but the cache of {count:,} images at {size} "
                              f"px needs {cache_memory_bytes(count, size) / 1e9:.2f} GB: free space or choose "
                              f"another --out")
        fd, name = temp_file_beside(out_dir / IMAGES_FILE)
        tmp = Path(name)
        with os.fdopen(fd, "wb") as file:
            np.lib.format.write_array_header_1_0(file, {"descr": "|u1", "fortran_order": False, "shape": shape})
            loader = DataLoader(_Decoded(source, size), batch_size=_DECODE_BATCH, num_workers=workers)
            with tqdm(total=count, unit="img", desc=f"caching {source.name}", disable=not progress) as bar:
                for rows in loader:  # (b, S, S, 3) uint8
                    _append(file, rows.numpy())
                    bar.update(len(rows))
            file.flush()
            os.fsync(file.fileno())
        (out_dir / META_FILE).unlink(missing_ok=True)  # an overwritten cache stops being complete here
        os.replace(tmp, out_dir / IMAGES_FILE)
        tmp, replaced = None, True
        meta = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "count": count, "size": size,
                "source": source.name, "layout": "NHWC uint8 RGB",
                "resize": "shorter side to size (bilinear, antialias), centre crop"}
        _write_durably(out_dir / META_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    except BaseException as err:
        _clean_up(out_dir, tmp, replaced, created)
        if isinstance(err, OSError):
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise SimsegError(f"disk full while writing the image cache in {out_dir} (removed again): free "
                                  f"{cache_memory_bytes(count, size) / 1e9:.2f} GB or choose another --out") from None
            raise SimsegError(f"cannot write the image cache in {out_dir} ({err.strerror or err}): check the "
                              f"folder's permissions") from None
        if isinstance(err, SimsegError):  # a worker's error arrives with its traceback folded into the message
            raise SimsegError(one_line(err)) from None
        raise
    return out_dir


def _write_durably(path: Path, payload: bytes) -> None:
    """Temporary file beside ``path``, fsync, rename. OSError is left to the caller, which knows what was built."""
    fd, name = temp_file_beside(path)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def _clean_up(out_dir: Path, tmp: Path | None, replaced: bool, created: bool) -> None:
    """Remove what a failed build wrote; the folder too if the build created it and it is empty."""
    if tmp is not None:
        tmp.unlink(missing_ok=True)
    if replaced:
        (out_dir / META_FILE).unlink(missing_ok=True)
        (out_dir / IMAGES_FILE).unlink(missing_ok=True)
    if created and out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()


def is_cache(path: str | Path) -> bool:
    """Whether ``path`` is a folder with a ``cache.json`` of this format (complete or not, the array is not read)."""
    try:
        meta = json.loads((Path(path).expanduser() / META_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == CACHE_FORMAT


def open_cache(path: str | Path) -> UInt8Cache:
    """The cache at ``path`` memory-mapped read-only, or one line naming what is wrong and how to rebuild it."""
    path = Path(path).expanduser()
    meta_file, images_file = path / META_FILE, path / IMAGES_FILE
    fix = f"rebuild it with `simseg data cache SOURCE --size S --out {path}`"
    try:
        meta = json.loads(meta_file.read_text())
    except FileNotFoundError:
        raise SimsegError(f"{path} is not an image cache (no {META_FILE}): {fix}") from None
    except (OSError, ValueError) as err:
        raise SimsegError(f"{meta_file} cannot be read ({type(err).__name__}): {fix}") from None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT or meta.get("version") != CACHE_VERSION:
        found = (meta.get("format"), meta.get("version")) if isinstance(meta, dict) else type(meta).__name__
        raise SimsegError(f"{meta_file} is not a {CACHE_FORMAT} version {CACHE_VERSION} file (found {found}): {fix}")
    try:
        count, size = int(meta["count"]), int(meta["size"])
    except (KeyError, TypeError, ValueError):
        raise SimsegError(f"{meta_file} lacks a valid count and size: {fix}") from None
    fix = fix.replace("--size S", f"--size {size}")
    try:
        array = np.load(images_file, mmap_mode="r")
    except (OSError, ValueError) as err:  # missing, truncated (shorter than its header says) or not .npy
        raise SimsegError(f"{images_file} cannot be mapped ({type(err).__name__}): the cache is incomplete or "
                          f"damaged; {fix}") from None
    expected = (count, size, size, 3)
    if array.shape != expected or array.dtype != np.uint8:
        raise SimsegError(f"{images_file} holds {array.dtype} {array.shape} but {META_FILE} says uint8 {expected}: "
                          f"{fix}")
    return UInt8Cache(path, array, meta["source"])


class UInt8Cache:
    """An opened cache: ``array`` is the read-only memory map (N, S, S, 3) uint8 of ``images.npy``.

    Satisfies :class:`~simseg.data.sources.ImageSource` (``name``, ``len``, ``image(i)``), and adds ``batch`` (a gather
    from the memory map) and ``to_tensor`` (the whole array on a device).
    """

    def __init__(self, path: Path, array: np.memmap, source: str):
        self.path, self.array, self.source = path, array, source
        self.name = str(path)
        self.size = array.shape[1]

    def __len__(self) -> int:
        return self.array.shape[0]

    def __reduce__(self):
        # Reopen by path in another process: pickling the memmap itself would copy the whole array.
        return open_cache, (self.path,)

    def image(self, index: int) -> Image.Image:
        return Image.fromarray(np.array(self.array[int(index)]))  # (S, S, 3) uint8 -> RGB

    def batch(self, indices: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Images at ``indices`` (B,) as uint8 (B, 3, S, S) on the CPU, in the order asked for.

        Rows are read in ascending index order, for locality in the file, then put back. The result is a
        channels-last view of the gathered NHWC rows; ``.contiguous()`` it if a kernel needs NCHW memory.
        """
        if isinstance(indices, torch.Tensor):
            indices = indices.cpu().numpy()
        rows = sorted_gather(self.array, np.asarray(indices, dtype=np.int64))  # (B, S, S, 3)
        return torch.from_numpy(rows).permute(0, 3, 1, 2)  # (B, 3, S, S)

    def to_tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The whole array as one uint8 tensor (N, S, S, 3) on ``device``; gather batches with :func:`gather`.

        Kept on the GPU when it fits (see :func:`cache_memory_bytes`): copied in chunks of 64 MiB, so the host
        never holds a second full copy; the memory map's pages live in the OS page cache, which the kernel reclaims.
        On the CPU the tensor is the one full copy in process memory.
        """
        images = torch.empty(self.array.shape, dtype=torch.uint8, device=device)
        step = max(1, _STAGING_BYTES // cache_memory_bytes(1, self.size))
        for start in range(0, len(self), step):
            chunk = np.array(self.array[start:start + step])  # a writable host copy of one chunk
            images[start:start + len(chunk)].copy_(torch.from_numpy(chunk))
        return images


def sorted_gather(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``array[rows]`` of a memory map, read in ascending row order (locality in the file), in the order asked for."""
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), *array.shape[1:]), dtype=array.dtype)
    out[order] = array[rows[order]]
    return out


def gather(images: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Rows of a device-resident cache tensor (N, S, S, 3) uint8 -> (B, 3, S, S) uint8 on the same device
    (channels-last view, as :meth:`UInt8Cache.batch`)."""
    return images[indices.to(images.device)].permute(0, 3, 1, 2)
