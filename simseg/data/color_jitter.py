"""torchvision's colour jitter (``ColorJitter`` with its functional ``adjust_*`` ops) for a whole batch at once, each
sample with its own factors, as batched elementwise ops; used by :mod:`simseg.data.batch_augment` after the crop.

The order is fixed (brightness, contrast, saturation, hue) where torchvision draws a random order per image: the
per-image path and this one agree for the same factors in this order (``tests/data/reference_augment.py``).
"""

from __future__ import annotations

import torch


def grayscale(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma with torchvision's weights and operation order."""
    r, g, b = images.unbind(1)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(1)


def shift_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_hue for a batch: RGB -> HSV, h += shift (B,), HSV -> RGB. images (B, 3, H, W) in [0, 1].

    RGB -> HSV follows torchvision's ``_rgb_to_hsv``; HSV -> RGB uses the closed form
    ``c = v - v * s * clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6h) mod 6``, n = 5, 3, 1 for r, g, b: the same
    function as torchvision's six-sector table lookup (to float rounding), with no index gather.
    """
    r, g, b = images.unbind(1)
    maxc, minc = images.amax(1), images.amin(1)  # (B, H, W)
    delta = maxc - minc
    flat = delta == 0  # grey pixels: hue and saturation 0, no division by zero
    saturation = delta / torch.where(flat, 1.0, maxc)
    rc, gc, bc = ((maxc.unsqueeze(1) - images) / torch.where(flat, 1.0, delta).unsqueeze(1)).unbind(1)
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = (hue / 6.0 + 1.0).fmod(1.0)
    hue = (hue + shift.view(-1, 1, 1)).remainder(1.0)  # (B, H, W) in turns
    offsets = torch.arange(5.0, 0.0, -2.0, device=images.device).view(1, 3, 1, 1)  # 5, 3, 1 made on the device
    k = (hue.unsqueeze(1) * 6 + offsets).remainder(6)  # (B, 3, H, W)
    return maxc.unsqueeze(1) - (maxc * saturation).unsqueeze(1) * torch.minimum(k, 4 - k).clamp(0, 1)


def jitter_colours(images: torch.Tensor, applied: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor,
                 saturation: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast, saturation and hue on (B, 3, H, W) floats in [0, 1], as torchvision's functional
    ``adjust_*`` with their clamps. Factors (B,) on any device (1 = identity; ``hue`` a shift in turns, 0 =
    identity); samples where ``applied`` (B,) is False come back unchanged, bit for bit.

    The factors move to a GPU without waiting for it (``non_blocking``): a blocking copy from the CPU would stall
    until every kernel queued before it had run."""
    device = images.device
    b, c, s = (x.to(device, non_blocking=True).view(-1, 1, 1, 1) for x in (brightness, contrast, saturation))
    out = images.mul(b).clamp_(0, 1)
    mean = grayscale(out).mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    out = out.mul(c).add_((1 - c) * mean).clamp_(0, 1)
    out = out.mul(s).add_((1 - s) * grayscale(out)).clamp_(0, 1)
    if bool((hue != 0).any()):  # CPU tensors: no device sync; the costliest step, skipped when unused
        out = shift_hue(out, hue.to(device, non_blocking=True))
    return torch.where(applied.to(device, non_blocking=True).view(-1, 1, 1, 1), out, images)
