"""torch Datasets over an image or pair source: the per-image path's transforms applied item by item."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset

from simseg.data.sources import ImageSource


class TransformedImages(Dataset):
    """``transform(source.image(indices[i]))``: a (3, H, W) float tensor per item."""

    def __init__(self, source: ImageSource, indices: Sequence[int], transform: Callable):
        self.source, self.indices, self.transform = source, list(map(int, indices)), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.source.image(self.indices[i]))


class TransformedPairs(Dataset):
    """``transform(*source.pair(indices[i]))``: (image (3, H, W) float, mask (H, W) int64) per item."""

    def __init__(self, source, indices: Sequence[int], transform: Callable):
        self.source, self.indices, self.transform = source, list(map(int, indices)), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(*self.source.pair(self.indices[i]))


class WithFixedMasks(Dataset):
    """Pairs item i with ``masks[i]``, so held-out images keep the same mask in every epoch and on every process."""

    def __init__(self, images: Dataset, masks: torch.Tensor):
        assert len(images) == len(masks), (len(images), len(masks))
        self.images, self.masks = images, masks

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.masks[i]


