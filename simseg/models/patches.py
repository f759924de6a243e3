"""Patchify and unpatchify: images (B, C, H, W) <-> patch vectors (B, N, p*p*C) in the ViT's token order."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


def patch_statistics(patches: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Each patch's mean and standard deviation over its p*p*C values: (..., P) -> two (..., 1). ``eps`` is added to
    the variance (MAE's 1e-6) so that a flat patch does not divide by zero."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True, unbiased=False)
    return mean, (var + eps).sqrt()


def normalize_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """MAE's ``norm_pix_loss`` targets: every patch shifted and scaled to zero mean and unit variance, (..., P).
    A layer norm without affine weights is exactly that (biased variance plus ``eps``), in one fused kernel."""
    return F.layer_norm(patches, patches.shape[-1:], eps=eps)


def pixel_targets(images: torch.Tensor, patch_size: int, norm_pix: bool) -> torch.Tensor:
    """What a masked-image model predicts per patch: (B, C, H, W) -> (B, N, p*p*C), per-patch normalised or not."""
    patches = patchify(images, patch_size)
    return normalize_patches(patches) if norm_pix else patches


def predictions_to_images(predictions: torch.Tensor, images: torch.Tensor, patch_size: int, grid: tuple[int, int],
                          norm_pix: bool) -> torch.Tensor:
    """Predicted patches (B, N, P) as images (B, C, H, W) a person can read: with ``norm_pix`` the predictions are
    normalised patches, so each is put back at the mean and spread of its own patch of ``images`` (MAE's
    visualisation)."""
    if norm_pix:
        mean, std = patch_statistics(patchify(images, patch_size))
        predictions = predictions * std + mean
    return unpatchify(predictions, patch_size, grid)
