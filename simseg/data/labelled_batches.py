"""The labelled stages' batched path: training batches gathered from a :mod:`~simseg.data.labelled_cache` by index
and augmented as one batch on the training device (:class:`~simseg.data.pair_batch_augment.PairBatchAugment`), and
evaluation batches of the cache's ready-made evaluation pixels.

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

from simseg.data.batched import DEVICE_SHARE
from simseg.data.cache import sorted_gather
from simseg.data.labelled_cache import LabelledCache
from simseg.data.pair_batch_augment import PairBatchAugment

AUTO_MEMORY_SHARE = 0.25  # data.pipeline=auto caches a source when its arrays take at most this share of the RAM


def choose_pipeline(requested: str, recorded: str | None, cache_bytes: int, source_is_cache: bool = False) -> str:
    """``per_image`` or ``batched`` for ``data.pipeline=requested``.

    ``recorded``: the value a resumed run folder's config.yaml holds (None for a new run): a resumed run keeps the
    path it started on, and a folder written before runs recorded their choice (``auto``) keeps what ``auto`` meant
    then: batched for an image cache made by ``simseg data cache`` (``source_is_cache``), else per image. Otherwise
    ``auto`` is batched for such a cache, or when an automatic cache of ``cache_bytes`` takes at most
    :data:`AUTO_MEMORY_SHARE` of this machine's memory.
    """
    if requested != "auto":
        return requested
    if recorded in ("per_image", "batched"):
        return recorded
    if source_is_cache:
        return "batched"
    if recorded is not None:
        return "per_image"
    return "batched" if cache_bytes <= AUTO_MEMORY_SHARE * physical_memory_bytes() else "per_image"


def physical_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system: assume a small machine
        return 8 * 2**30


class CachedLabelledBatches:
    """``batches(items)``: source indices (B,) on the CPU -> (images (B, 3, img, img) normalised float32, masks
    (B, img, img) int64 or None) on ``device``. Reseed the augmentation with :meth:`manual_seed` every epoch."""

    def __init__(self, cache: LabelledCache, augment: PairBatchAugment, device: torch.device):
        self.cache, self.augment, self.device = cache, augment, torch.device(device)
        self.sizes = torch.from_numpy(np.array(cache.arrays["sizes"]))  # (N, 2) original (height, width), CPU
        self.on_device = (self.device.type == "cuda"
                          and cache.nbytes() <= DEVICE_SHARE * torch.cuda.mem_get_info(self.device)[0])
        keys = ("images", "masks") if cache.spec.masks else ("images",)
        # On the CPU the memory maps are the storage (no second copy); on a GPU the arrays move there once.
        self.arrays = {k: torch.from_numpy(np.array(cache.arrays[k])).to(self.device) if self.on_device
                       else cache.arrays[k] for k in keys}
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
        return self.augment(images, masks, sizes[:, 0], sizes[:, 1], self.generator)

    def describe(self) -> str:
        where = f"kept on {self.device}" if self.on_device else "gathered from the memory map"
        return (f"batched augmentation on {self.device.type} from the {self.cache.nbytes() / 2**20:,.0f} MiB data "
                f"cache ({where})")


class CachedEvalSet(Dataset):
    """Item i: the evaluation pixels of source item ``items[i]`` normalised, float32 (3, E, E), with its mask
    int64 (E, E) or its class id ``labels[items[i]]`` (int64). :meth:`__getitems__` returns a whole batch already
    stacked; give the DataLoader ``collate_fn=keep_batch``."""

    def __init__(self, cache: LabelledCache, items: Sequence[int], mean: Sequence[float], std: Sequence[float],
                 labels: Sequence[int] | None = None):
        self.cache, self.items = cache, np.asarray(items, dtype=np.int64)
        self.rows = cache.rows(self.items)
        self.mean, self.std = list(mean), list(std)
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.items)

    def __getitems__(self, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self.rows[positions]
        pixels = torch.from_numpy(sorted_gather(self.cache.arrays["eval_images"], rows)).permute(0, 3, 1, 2)
        images = TF.normalize(TF.to_dtype(pixels, torch.float32, scale=True), self.mean, self.std)
        if self.labels is not None:
            return images, self.labels[torch.from_numpy(self.items[positions])]
        return images, torch.from_numpy(sorted_gather(self.cache.arrays["eval_masks"], rows)).long()

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, second = self.__getitems__([i])
        return images[0], second[0]


def keep_batch(batch):
    """collate_fn for datasets whose ``__getitems__`` already returns a stacked batch."""
    return batch
