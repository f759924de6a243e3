"""The batched data path of every stage: training batches gathered from an image cache
(:mod:`simseg.data.image_cache`) by index and augmented as one batch on the training device
(:class:`~simseg.data.batch_augment.BatchAugment`), and evaluation batches of the cache's ready-made evaluation
pixels; and the rule that chooses between this path and the per-image one.

The training DataLoader yields index batches only (Accelerate still shards and seeds the shuffle); they stay on the
CPU, where the augmentation parameters are drawn from each item's original size, and only the gathered pixels go
to the device.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from simseg.data.batch_augment import BatchAugment
from simseg.data.image_cache import ImageCache

AUTO_MEMORY_SHARE = 0.25  # data.pipeline=auto caches a source when its arrays take at most this share of the RAM
DEVICE_SHARE = 0.5  # keep a cache's pixels on the GPU when they take at most this share of its free memory
_STAGING_BYTES = 64 * 2**20  # host chunk size when copying a memory map into a device tensor


def choose_pipeline(requested: str, recorded: str | None, cache_bytes: int, source_is_cache: bool = False) -> str:
    """``per_image`` or ``batched`` for ``data.pipeline=requested``.

    ``recorded``: what a resumed run chose when it started (None for a new run), which it keeps. Otherwise ``auto``
    is batched for a source that is an image cache already, or when an automatic cache of ``cache_bytes`` takes at
    most :data:`AUTO_MEMORY_SHARE` of this machine's memory.
    """
    if requested != "auto":
        return requested
    if recorded is not None:
        return recorded
    if source_is_cache or cache_bytes <= AUTO_MEMORY_SHARE * physical_memory_bytes():
        return "batched"
    return "per_image"


def physical_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: assume a small machine
        return 8 * 2**30


class IndexDataset(Dataset):
    """Item i is the source index ``indices[i]``: the loader batches and shuffles indices, not images."""

    def __init__(self, indices: Sequence[int]):
        self.indices = torch.as_tensor(list(map(int, indices)), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.indices[i]

    def __getitems__(self, positions: list[int]) -> list[int]:
        """A whole batch in one gather (the DataLoader calls this when it exists), instead of a call and a
        collation per item on the main thread."""
        return self.indices[positions].tolist()  # default_collate makes the list one (B,) int64 tensor


def sorted_gather(array: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``array[rows]`` of a memory map, read in ascending row order (locality in the file), in the order asked for."""
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows), *array.shape[1:]), dtype=array.dtype)
    out[order] = array[rows[order]]
    return out


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A whole memory-mapped array as one tensor on ``device``, copied in chunks of 64 MiB, so the host never holds
    a second full copy (the map's pages live in the OS page cache, which the kernel reclaims)."""
    out = torch.empty(array.shape, dtype=torch.from_numpy(np.empty(0, array.dtype)).dtype, device=device)
    step = max(1, _STAGING_BYTES // max(1, array[:1].nbytes))
    for start in range(0, len(array), step):
        out[start:start + step].copy_(torch.from_numpy(np.array(array[start:start + step])))
    return out


class CachedBatches:
    """``batches(items)``: source indices (B,) on the CPU -> (images (B, 3, img, img) normalised float32, targets)
    on ``device``; targets are the masks (B, img, img) int64 of a cache of pairs, the labels (B,) int64 of a cache
    of labelled images, else None. Reseed the augmentation with :meth:`manual_seed` every epoch."""

    def __init__(self, cache: ImageCache, augment: BatchAugment, device: torch.device):
        self.cache, self.augment, self.device = cache, augment, torch.device(device)
        self.sizes = torch.from_numpy(np.array(cache.arrays["sizes"]))  # (N, 2) original (height, width), CPU
        pixels = ("images", "masks") if cache.spec.masks else ("images",)
        self.on_device = (self.device.type == "cuda" and sum(cache.arrays[k].nbytes for k in pixels)
                          <= DEVICE_SHARE * torch.cuda.mem_get_info(self.device)[0])
        # On the CPU the memory maps are the storage (no second copy); on a GPU the pixels move there once.
        self.arrays = {k: to_device(cache.arrays[k], self.device) if self.on_device else cache.arrays[k]
                       for k in pixels}
        self.labels = torch.from_numpy(np.array(cache.arrays["labels"])) if cache.spec.labels else None
        self.generator = torch.Generator()

    def manual_seed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def _gather(self, key: str, rows: np.ndarray) -> torch.Tensor:
        array = self.arrays[key]
        if self.on_device:
            return array[torch.from_numpy(rows).to(self.device, non_blocking=True)]
        return torch.from_numpy(sorted_gather(array, rows)).to(self.device, non_blocking=True)

    def __call__(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        rows = self.cache.rows(items.cpu().numpy())
        images = self._gather("images", rows).permute(0, 3, 1, 2)  # (B, 3, S, S) uint8, channels-last view
        masks = self._gather("masks", rows) if "masks" in self.arrays else None  # (B, S, S) uint8
        sizes = self.sizes[torch.from_numpy(rows)]
        images, masks = self.augment(images, sizes[:, 0], sizes[:, 1], masks, self.generator)
        if self.labels is not None:
            return images, self.labels[torch.from_numpy(rows)].to(self.device, non_blocking=True)
        return images, masks

    def describe(self) -> str:
        where = f"kept on {self.device}" if self.on_device else "gathered from the memory map"
        note = f" ({self.cache.note})" if self.cache.note else ""
        return (f"batched augmentation on {self.device.type} from the {self.cache.nbytes() / 2**20:,.0f} MiB data "
                f"cache ({where}){note}")


class CachedEvalSet(Dataset):
    """Item i: the evaluation pixels of source item ``items[i]`` normalised, float32 (3, E, E), with its mask int64
    (E, E) or its label (int64). :meth:`__getitems__` returns a whole batch already stacked; give the DataLoader
    ``collate_fn=keep_batch``."""

    def __init__(self, cache: ImageCache, items: Sequence[int], mean: Sequence[float], std: Sequence[float]):
        self.cache, self.items = cache, np.asarray(items, dtype=np.int64)
        self.rows = cache.rows(self.items)
        self.mean, self.std = list(mean), list(std)
        self.target = "eval_masks" if cache.spec.masks else "labels"

    def __len__(self) -> int:
        return len(self.items)

    def __getitems__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.rows[positions]
        pixels = torch.from_numpy(sorted_gather(self.cache.arrays["eval_images"], rows)).permute(0, 3, 1, 2)
        images = TF.normalize(TF.to_dtype(pixels, torch.float32, scale=True), self.mean, self.std)
        return images, torch.from_numpy(sorted_gather(self.cache.arrays[self.target], rows)).long()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = self.__getitems__([i])
        return images[0], targets[0]


def keep_batch(batch):
    """collate_fn for datasets whose ``__getitems__`` already returns a stacked batch."""
    return batch
