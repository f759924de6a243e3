"""Image transforms (torchvision transforms v2). Each takes a PIL RGB image of any size and returns a float tensor
(3, img_size, img_size) normalised with the config's mean and std."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2


def pretrain_transform(aug, img_size: int) -> v2.Compose:
    """Random resized crop, horizontal flip, colour jitter, normalisation (SimMIM's recipe plus jitter)."""
    brightness, contrast, saturation, hue = aug.color_jitter
    return v2.Compose([
        v2.PILToTensor(),  # uint8 (3, H, W): cropping and flipping uint8 is cheaper than float
        v2.RandomResizedCrop(img_size, scale=tuple(aug.crop_scale), ratio=tuple(aug.crop_ratio), antialias=True),
        v2.RandomHorizontalFlip(aug.hflip),
        v2.RandomApply([v2.ColorJitter(brightness, contrast, saturation, hue)], p=aug.color_jitter_prob),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(aug.mean), list(aug.std)),
    ])


def eval_transform(img_size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """Deterministic: resize the shorter side to ``img_size``, centre crop, normalise."""
    return v2.Compose([
        v2.PILToTensor(),
        v2.Resize(img_size, antialias=True),
        v2.CenterCrop(img_size),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
    ])


def denormalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalised (B, 3, H, W) -> real colours in [0, 1], for pictures."""
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * std_t + mean_t).clamp(0, 1)
