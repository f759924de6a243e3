"""The random masking of both pretraining methods (SimMIM, MAE) over a grid of mask units.

A mask unit is a square of ``unit`` pixels (a whole number of patches). Every image gets exactly
``ceil(ratio * units)`` masked units, drawn uniformly without replacement, as in SimMIM's ``MaskGenerator``.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange, repeat


def masked_unit_count(img_size: int, unit: int, ratio: float) -> int:
    """Masked units per image: ``ceil(ratio * (img_size // unit) ** 2)`` (the epsilon absorbs float error)."""
    units = (img_size // unit) ** 2
    return math.ceil(ratio * units - 1e-9)


def masked_patch_count(img_size: int, patch_size: int, unit: int, ratio: float) -> int:
    """Masked patches per image of :func:`random_unit_mask` (the same for every image)."""
    return masked_unit_count(img_size, unit, ratio) * (unit // patch_size) ** 2


def random_unit_mask(
    batch_size: int,
    img_size: int,
    patch_size: int,
    unit: int,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random mask at patch resolution.

    Returns a bool tensor (B, H/patch, W/patch), True where a patch is masked. Patches of one unit share a value.
    """
    if unit % patch_size or img_size % unit:
        raise ValueError(f"unit {unit} must be a multiple of patch {patch_size} and divide image size {img_size}")
    side = img_size // unit
    device = generator.device if generator is not None and device is None else device
    scores = torch.rand(batch_size, side * side, generator=generator, device=device)  # (B, U)
    # The masked units are the ``count`` lowest scores: rank each unit by its score.
    ranks = scores.argsort(dim=1).argsort(dim=1)  # (B, U)
    unit_mask = ranks < masked_unit_count(img_size, unit, ratio)  # (B, U), exactly count True per row
    scale = unit // patch_size
    return repeat(unit_mask, "b (h w) -> b (h sh) (w sw)", h=side, sh=scale, sw=scale)  # (B, H/p, W/p)


def mask_to_pixels(mask: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Patch mask (B, h, w) -> pixel mask (B, 1, h*patch, w*patch) of the same dtype."""
    return repeat(mask, "b h w -> b 1 (h p) (w q)", p=patch_size, q=patch_size)


def flatten_mask(mask: torch.Tensor) -> torch.Tensor:
    """Patch mask (B, h, w) -> (B, h*w) in the encoder's row-major token order."""
    return rearrange(mask, "b h w -> b (h w)")


def positions_where(token_mask: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` positions per row where ``token_mask`` (B, N) is True, in ascending token order: (B, count).

    A stable descending sort of the 0/1 values puts each row's True entries first, in their original order; the
    caller guarantees every row has exactly ``count`` of them (checked on the device by the model)."""
    return token_mask.to(torch.uint8).argsort(dim=1, descending=True, stable=True)[:, :count]


def gather_tokens(tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """tokens (B, N, D) at positions (B, K) -> (B, K, D)."""
    return tokens.gather(1, positions.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
