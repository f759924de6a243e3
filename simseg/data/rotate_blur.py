"""Batched per-sample rotation and Gaussian blur that reproduce torchvision v2's functional ``rotate`` and
``gaussian_blur`` on float tensors, each sample with its own angle or sigma, in one kernel launch for the batch.

Used by :mod:`simseg.data.batch_augment` after the crop. The rotation follows torchvision's tensor kernel step by
step (``_get_inverse_affine_matrix`` -> ``_affine_grid`` -> ``_apply_grid_transform``) in float32, so nearest-sampled
masks come out bit-identical to torchvision's and bilinear images equal to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def rotation_grid(angles: torch.Tensor, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """grid_sample's grid (B, size, size, 2) on ``device`` rotating square (size x size) images about their centre by
    ``angles`` (B,) degrees, counter-clockwise, as torchvision's ``rotate(expand=False, center=None)``.

    The inverse affine matrices are torchvision's, computed the same way (Python float64 on angle % 360, then
    float32); the grid is torchvision's ``_affine_grid`` (pixel-centred base grid times theta over the half size),
    with one batched matmul instead of one per image.
    """
    matrices = []
    for angle in angles.tolist():  # B scalars on the CPU: the pixel work below is batched
        rot = math.radians(-(angle % 360))  # torchvision rotates by -angle to match its affine's direction
        # _get_inverse_affine_matrix with no shear, scale 1 and centre and translation 0 reduces to this
        matrices.append([math.cos(rot), math.sin(rot), 0.0, -math.sin(rot), math.cos(rot), 0.0])
    theta = torch.tensor(matrices, dtype=torch.float32, device=device).view(-1, 2, 3)  # (B, 2, 3)
    base = torch.empty(1, size, size, 3, dtype=torch.float32, device=device)
    steps = torch.linspace((1.0 - size) * 0.5, (size - 1.0) * 0.5, steps=size, device=device)  # pixel centres
    base[..., 0].copy_(steps)
    base[..., 1].copy_(steps.unsqueeze(-1))
    base[..., 2].fill_(1)
    half = torch.tensor([0.5 * size, 0.5 * size], dtype=torch.float32, device=device)
    rescaled = theta.transpose(1, 2).div(half)  # (B, 3, 2)
    grid = base.view(1, size * size, 3).expand(len(theta), -1, -1).bmm(rescaled)  # (B, size * size, 2)
    return grid.view(-1, size, size, 2)


def sample_with_fill(images: torch.Tensor, grid: torch.Tensor, mode: str, fill: Sequence[float]) -> torch.Tensor:
    """torchvision's ``_apply_grid_transform`` for a batch: float (B, C, H, W) sampled at ``grid`` (B, h, w, 2) with
    zeros outside, then blended with the ``fill`` value (C or 1 numbers) by the coverage of each output pixel.

    A channel of ones is sampled along with the image and gives the coverage: bilinear mixes image and fill by it
    (a pixel half outside the image is half fill), nearest takes the fill where coverage < 0.5. -> (B, C, h, w).
    """
    ones = torch.ones_like(images[:, :1])
    sampled = F.grid_sample(torch.cat([images, ones], 1), grid, mode=mode, padding_mode="zeros", align_corners=False)
    out, coverage = sampled[:, :-1], sampled[:, -1:].expand_as(sampled[:, :-1])
    fill_t = torch.tensor(list(fill), dtype=out.dtype, device=out.device).view(1, -1, 1, 1).expand_as(out)
    if mode == "nearest":
        return torch.where(coverage < 0.5, fill_t, out)
    return out.sub(fill_t).mul_(coverage).add_(fill_t)  # torchvision's order of operations, for equal rounding


def rotate(images: torch.Tensor, angles: torch.Tensor, mode: str, fill: Sequence[float]) -> torch.Tensor:
    """Float (B, C, S, S) on any device, each rotated by its angle in ``angles`` (B,) CPU degrees -> (B, C, S, S).

    One grid and one grid_sample for the batch; samples with angle 0 come back unchanged, bit for bit, as
    torchvision returns a copy for them.
    """
    grid = rotation_grid(angles, images.shape[-1], images.device)
    rotated = sample_with_fill(images, grid, mode, fill)
    still = (angles == 0).to(images.device).view(-1, 1, 1, 1)
    return torch.where(still, images, rotated)


def blur_kernel_size(max_sigma: float) -> int:
    """The odd kernel side covering +-3 sigma of the widest blur (the per-image transform's too)."""
    return 2 * max(1, math.ceil(3 * max_sigma)) + 1


def gaussian_kernels(sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Per-sample 1-D Gaussian kernels (B, kernel_size), float32, as torchvision's ``_get_gaussian_kernel1d``: taps
    at linspace(-lim, lim) with lim = (k - 1) / (2 sqrt 2), softmax of -(x / sigma)^2 (a Gaussian, normalised)."""
    lim = (kernel_size - 1) / (2.0 * math.sqrt(2.0))
    x = torch.linspace(-lim, lim, steps=kernel_size, dtype=torch.float32, device=sigma.device)
    return torch.softmax(x.div(sigma.float()[:, None]).pow(2).neg(), dim=1)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Float (B, C, H, W), each blurred with its own ``sigma`` (B,) -> (B, C, H, W), as torchvision's
    ``gaussian_blur`` with square kernels: reflect padding, then the kernel.

    torchvision convolves with the 2-D outer product of the 1-D kernel; two 1-D passes are the same sum in another
    order (equal to float rounding) at 2k instead of k^2 taps. Every (sample, channel) plane is a group of one
    grouped convolution, so the batch takes two conv2d calls.
    """
    batch, channels, height, width = images.shape
    kernels = gaussian_kernels(sigma.to(images.device), kernel_size).repeat_interleave(channels, 0)  # (B*C, k)
    pad = kernel_size // 2
    planes = F.pad(images.reshape(1, batch * channels, height, width), [pad, pad, pad, pad], mode="reflect")
    planes = F.conv2d(planes, kernels.view(-1, 1, 1, kernel_size), groups=batch * channels)  # along rows
    planes = F.conv2d(planes, kernels.view(-1, 1, kernel_size, 1), groups=batch * channels)  # along columns
    return planes.view(batch, channels, height, width)
