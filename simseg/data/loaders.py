"""torch Datasets of the per-image path: items decoded and transformed one by one in the loader."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch.utils.data import Dataset


class TransformedItems(Dataset):
    """Item i: source item ``indices[i]`` decoded and transformed: the image (3, H, W) float alone (``targets``
    None), with its mask (H, W) int64 (``masks``: a source of image/mask pairs) or with its class id, an int64
    scalar (``labels``: a source with a label per item)."""

    def __init__(self, source, indices: Sequence[int], transform: Callable,
                 targets: Literal["masks", "labels"] | None = None):
        self.source, self.indices, self.transform, self.targets = source, list(map(int, indices)), transform, targets

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        index = self.indices[i]
        if self.targets == "masks":
            return self.transform(*self.source.pair(index))
        image = self.transform(self.source.image(index))
        return image if self.targets is None else (image, torch.tensor(self.source.labels[index]))


class WithFixedMasks(Dataset):
    """Pairs item i with ``masks[i]``, so held-out images keep the same mask in every epoch and on every process."""

    def __init__(self, images: Dataset, masks: torch.Tensor):
        assert len(images) == len(masks), (len(images), len(masks))
        self.images, self.masks = images, masks

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.masks[i]
