"""Patchify and unpatchify: images (B, C, H, W) <-> patch vectors (B, N, p*p*C) in the ViT's token order."""

from __future__ import annotations

import torch
from einops import rearrange


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/p * W/p, p*p*C), patches row-major, each patch's pixels row-major, channels last."""
    return rearrange(images, "b c (h p) (w q) -> b (h w) (p q c)", p=patch_size, q=patch_size)


def unpatchify(patches: torch.Tensor, patch_size: int, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """(B, N, p*p*C) -> (B, C, H, W); ``grid`` = (H/p, W/p), square when omitted."""
    if grid is None:
        side = int(round(patches.shape[1] ** 0.5))
        grid = (side, side)
    return rearrange(patches, "b (h w) (p q c) -> b c (h p) (w q)", h=grid[0], w=grid[1], p=patch_size, q=patch_size)
