"""Batched per-sample augmentation of uint8 image batches on their own device: the pretraining recipe of
:func:`simseg.data.transforms.pretrain_transform` (random resized crop, horizontal flip, colour jitter, normalisation)
for a whole batch at once, for images decoded once into a :mod:`simseg.data.cache`.

Parameters are drawn on the CPU from a ``torch.Generator`` (:func:`sample_params`), so a seed gives the same batch on
any device; :func:`apply` does the pixel work in a few batched kernels. :func:`reference_apply` is the per-image
torchvision path with the same parameters; the two agree to float rounding (tests/test_batch_augment.py).

Differences from the per-image pipeline, by design:
- the crop is resampled bilinearly without antialiasing (a crop of the 144 px cache shrinks at most 1.125x to 128);
- pixels stay float after the crop (the uint8 pipeline rounds to 1/255 after resizing and again after each jitter);
- jitter applies brightness, contrast, saturation, hue in this fixed order (torchvision's ColorJitter draws a random
  order per image).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from simseg.errors import SimsegError

_TRIES = 10  # crop proposals per sample, as torchvision's RandomResizedCrop


@dataclasses.dataclass
class CropParams:
    """Per-sample augmentation parameters, each a (B,) CPU tensor.

    ``top, left, height, width``: crop box in source pixels (whole numbers, as torchvision's); ``flip``: mirror the
    output left-right; ``jitter``: whether colour jitter applies, with factors ``brightness, contrast, saturation``
    (1 = identity) and ``hue`` (a shift in turns, 0 = identity); identity where ``jitter`` is False.
    """

    top: torch.Tensor
    left: torch.Tensor
    height: torch.Tensor
    width: torch.Tensor
    flip: torch.Tensor
    jitter: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor

    def __len__(self) -> int:
        return len(self.top)


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, generator=generator, dtype=torch.float64) * (high - low) + low


def sample_params(batch_size: int, height: int | torch.Tensor, width: int | torch.Tensor,
                  scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
                  hflip_prob: float = 0.5, jitter: Sequence[float] = (0.0, 0.0, 0.0, 0.0), jitter_prob: float = 0.0,
                  generator: torch.Generator | None = None) -> CropParams:
    """Draw B samples of torchvision's RandomResizedCrop, RandomHorizontalFlip and RandomApply(ColorJitter).

    Crops: area fraction ~ U(scale), log aspect ratio ~ U(log ratio), side lengths rounded; the first of 10
    proposals that fits the (height, width) image wins, else torchvision's central-crop fallback. All 10 are drawn
    for every sample at once. ``height``, ``width``: one image size for the batch, or per-sample sizes as (B,) CPU
    tensors (each sample's box is then drawn in its own geometry; the draws are the same either way, so equal sizes
    give the same boxes). ``jitter`` is (brightness, contrast, saturation[, hue]): factors ~ U[max(0, 1-x), 1+x]
    and hue shift ~ U[-h, h]. Every call draws the same amount from ``generator`` (a CPU generator), whatever the
    settings, so a seed reproduces the batch.
    """
    # (B,) float64 sizes: whole numbers, so every product, ratio and rounding below equals the Python int arithmetic
    height = torch.as_tensor(height, dtype=torch.float64).expand(batch_size)
    width = torch.as_tensor(width, dtype=torch.float64).expand(batch_size)
    shape = (batch_size, _TRIES)
    target_area = (height * width)[:, None] * _uniform(shape, scale[0], scale[1], generator)  # (B, 10)
    aspect = torch.exp(_uniform(shape, math.log(ratio[0]), math.log(ratio[1]), generator))
    w = torch.sqrt(target_area * aspect).round()  # round half to even, as Python's round
    h = torch.sqrt(target_area / aspect).round()
    fits = (w > 0) & (w <= width[:, None]) & (h > 0) & (h <= height[:, None])  # (B, 10)
    first = fits.int().argmax(1, keepdim=True)  # the first proposal that fits (argmax returns the first maximum)
    found = fits.any(1)
    # torchvision's fallback: the largest central crop whose aspect ratio is within ``ratio``
    in_ratio = width / height
    narrow, wide = in_ratio < min(ratio), in_ratio > max(ratio)
    fallback_w = torch.where(wide, (height * max(ratio)).round(), width)  # (B,)
    fallback_h = torch.where(narrow, (width / min(ratio)).round(), height)
    w = torch.where(found, w.gather(1, first).squeeze(1), fallback_w)  # (B,)
    h = torch.where(found, h.gather(1, first).squeeze(1), fallback_h)
    # a uniform integer offset in [0, height - h], as torch.randint(0, height - h + 1)
    top = (torch.rand(batch_size, generator=generator, dtype=torch.float64) * (height - h + 1)).floor()
    left = (torch.rand(batch_size, generator=generator, dtype=torch.float64) * (width - w + 1)).floor()
    top = torch.where(found, torch.minimum(top, height - h), ((height - fallback_h) / 2).floor())
    left = torch.where(found, torch.minimum(left, width - w), ((width - fallback_w) / 2).floor())

    flip = torch.rand(batch_size, generator=generator) < hflip_prob
    applied = torch.rand(batch_size, generator=generator) < jitter_prob
    b, c, s, *rest = jitter
    hue = rest[0] if rest else 0.0
    factors = [_uniform((batch_size,), max(0.0, 1 - x), 1 + x, generator).float() for x in (b, c, s)]
    shift = _uniform((batch_size,), -hue, hue, generator).float()
    brightness, contrast, saturation = (torch.where(applied, f, 1.0) for f in factors)
    return CropParams(top=top.float(), left=left.float(), height=h.float(), width=w.float(), flip=flip,
                      jitter=applied, brightness=brightness, contrast=contrast, saturation=saturation,
                      hue=torch.where(applied, shift, 0.0))


def _source_coordinates(start: torch.Tensor, length: torch.Tensor, size: int | torch.Tensor,
                        out_size: int) -> torch.Tensor:
    """Crop starts and lengths (B,) along one axis of an image of ``size`` pixels (one int, or (B,) per sample)
    -> grid_sample coordinates (B, out) in [-1, 1], float64."""
    steps = torch.arange(out_size, dtype=torch.float64) + 0.5  # output pixel centres
    start, length = start.double()[:, None], length.double()[:, None]
    pixel = start + (steps * length / out_size - 0.5).clamp(min=0.0)  # (B, out)
    pixel = torch.minimum(pixel, start + length - 1)
    if isinstance(size, torch.Tensor):
        size = size.double()[:, None]
    return (2 * pixel + 1) / size - 1  # align_corners=False normalisation


def sampling_grid(params: CropParams, height: int | torch.Tensor, width: int | torch.Tensor, out_size: int,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """grid_sample's grid (B, out, out, 2) in [-1, 1] on ``device`` for crop, then resize, then flip.

    The source pixel of output column j is ``left + (j + 0.5) * width / out - 0.5`` (pixel centres, as
    ``F.interpolate(mode="bilinear", align_corners=False)``), clamped to the crop box as interpolate clamps to the
    cropped image's border; a flip reverses the columns (a negated x scale of the affine map). The map is separable,
    so only the (B, out) coordinates per axis are computed on the CPU (in float64) and moved; the grid is built on
    ``device``. ``height``, ``width``: the boxes' image size, one int or (B,) per sample. grid_sample's [-1, 1]
    coordinates do not depend on the resolution, so boxes drawn in each image's original size sample the same
    place of a copy resized to any size.
    """
    xs = _source_coordinates(params.left, params.width, width, out_size)
    xs = torch.where(params.flip[:, None], xs.flip(1), xs)
    ys = _source_coordinates(params.top, params.height, height, out_size)
    xs, ys = xs.float().to(device, non_blocking=True), ys.float().to(device, non_blocking=True)
    grid = torch.empty(len(params), out_size, out_size, 2, device=device)
    grid[..., 0] = xs[:, None, :]  # x varies along columns
    grid[..., 1] = ys[:, :, None]  # y along rows
    return grid


def _grayscale(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma with torchvision's weights and operation order."""
    r, g, b = images.unbind(1)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(1)


def _shift_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """torchvision's adjust_hue for a batch: RGB -> HSV, h += shift (B,), HSV -> RGB. images (B, 3, H, W) in [0, 1].

    RGB -> HSV follows torchvision's ``_rgb_to_hsv``; HSV -> RGB uses the closed form
    ``c = v - v * s * clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6h) mod 6``, n = 5, 3, 1 for r, g, b: the same
    function as torchvision's six-sector table lookup (to float rounding) at half the cost, with no index gather.
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
    offsets = torch.tensor([5.0, 3.0, 1.0], device=images.device).view(1, 3, 1, 1)
    k = (hue.unsqueeze(1) * 6 + offsets).remainder(6)  # (B, 3, H, W)
    return maxc.unsqueeze(1) - (maxc * saturation).unsqueeze(1) * torch.minimum(k, 4 - k).clamp(0, 1)


def _color_jitter(images: torch.Tensor, params: CropParams) -> torch.Tensor:
    """Brightness, contrast, saturation, hue on (B, 3, H, W) floats in [0, 1], as torchvision's functional
    adjust_* with their clamps; samples without jitter come back unchanged, bit for bit."""
    device = images.device
    b, c, s = (x.to(device).view(-1, 1, 1, 1) for x in (params.brightness, params.contrast, params.saturation))
    out = images.mul(b).clamp_(0, 1)
    mean = _grayscale(out).mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    out = out.mul(c).add_((1 - c) * mean).clamp_(0, 1)
    out = out.mul(s).add_((1 - s) * _grayscale(out)).clamp_(0, 1)
    if bool((params.hue != 0).any()):  # CPU tensors: no device sync; the costliest step, skipped when unused
        out = _shift_hue(out, params.hue.to(device))
    return torch.where(params.jitter.to(device).view(-1, 1, 1, 1), out, images)


def apply(images: torch.Tensor, params: CropParams, out_size: int, mean: Sequence[float],
          std: Sequence[float], jitter: Callable = _color_jitter) -> torch.Tensor:
    """uint8 (B, 3, H, W) on any device -> normalised float32 (B, 3, out, out) on that device.

    One ``grid_sample`` does every crop, resize and flip; jitter and normalisation are batched elementwise ops.
    Runs in float32 even inside a bf16/fp16 autocast region (autocast is switched off here; grid_sample would be
    kept in float32 by autocast anyway). ``jitter``: :func:`_color_jitter` or a compiled copy of it.
    """
    device = images.device
    _, _, height, width = images.shape
    with torch.autocast(device.type, enabled=False):
        grid = sampling_grid(params, height, width, out_size, device)
        # Sampling the 0..255 values and scaling afterwards touches out*out pixels instead of H*W.
        out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        out = out.mul_(1 / 255)  # (B, 3, out, out) in [0, 1]
        if bool(params.jitter.any()):
            out = jitter(out, params)
        mean_t = torch.tensor(mean, dtype=out.dtype, device=device).view(1, 3, 1, 1)
        std_t = torch.tensor(std, dtype=out.dtype, device=device).view(1, 3, 1, 1)
        return out.sub_(mean_t).div_(std_t)


def reference_apply(images: torch.Tensor, params: CropParams, out_size: int, mean: Sequence[float],
                    std: Sequence[float]) -> torch.Tensor:
    """The per-image torchvision v2 path with the same parameters: uint8 (B, 3, H, W) -> float32 (B, 3, out, out).

    Pixels become floats first, so the comparison with :func:`apply` measures the sampling, not uint8 rounding.
    """
    out = []
    for i, image in enumerate(images):
        x = TF.to_dtype(image, torch.float32, scale=True)
        box = [int(v[i]) for v in (params.top, params.left, params.height, params.width)]
        x = TF.resized_crop(x, *box, size=[out_size, out_size], antialias=False)
        if params.flip[i]:
            x = TF.horizontal_flip(x)
        out.append(TF.normalize(reference_jitter(x, params, i), list(mean), list(std)))
    return torch.stack(out)


def reference_jitter(image: torch.Tensor, params: CropParams, i: int) -> torch.Tensor:
    """Sample ``i``'s colour jitter on one float image (3, H, W) with torchvision's functional ops, in the batched
    path's order (brightness, contrast, saturation, hue)."""
    if not params.jitter[i]:
        return image
    image = TF.adjust_brightness(image, float(params.brightness[i]))
    image = TF.adjust_contrast(image, float(params.contrast[i]))
    image = TF.adjust_saturation(image, float(params.saturation[i]))
    return TF.adjust_hue(image, float(params.hue[i])) if params.hue[i] != 0 else image


class BatchAugment:
    """``augment(images_uint8, generator)``: (B, 3, H, W) uint8 -> (B, 3, img_size, img_size) normalised float32.

    Arguments as :func:`simseg.data.transforms.pretrain_transform`'s :class:`~simseg.config.loader.AugConfig` fields.
    ``compile``: run the colour jitter (two dozen elementwise passes, most of the augmentation's time) as one
    torch.compile'd kernel: ~5x faster on a 2-core CPU after a few seconds of compilation.
    """

    def __init__(self, img_size: int, scale: Sequence[float], ratio: Sequence[float], hflip: float,
                 color_jitter: Sequence[float], color_jitter_prob: float, mean: Sequence[float],
                 std: Sequence[float], compile: bool = False):
        hue_ok = len(color_jitter) == 3 or (len(color_jitter) == 4 and 0 <= color_jitter[3] <= 0.5)
        if not hue_ok or min(color_jitter[:3]) < 0:
            raise SimsegError(f"aug.color_jitter={list(color_jitter)} must be brightness, contrast, saturation >= 0 "
                              f"and hue in [0, 0.5]")
        self.img_size, self.scale, self.ratio, self.hflip = img_size, tuple(scale), tuple(ratio), hflip
        self.color_jitter, self.color_jitter_prob = tuple(color_jitter), color_jitter_prob
        self.mean, self.std = tuple(mean), tuple(std)
        self.jitter = torch.compile(_color_jitter, dynamic=False) if compile else _color_jitter

    @classmethod
    def from_aug_config(cls, aug, img_size: int, compile: bool = False) -> BatchAugment:
        return cls(img_size, aug.crop_scale, aug.crop_ratio, aug.hflip, aug.color_jitter, aug.color_jitter_prob,
                   aug.mean, aug.std, compile)

    def sample(self, batch_size: int, height: int, width: int,
               generator: torch.Generator | None = None) -> CropParams:
        return sample_params(batch_size, height, width, self.scale, self.ratio, self.hflip, self.color_jitter,
                             self.color_jitter_prob, generator)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        batch, _, height, width = images.shape
        return apply(images, self.sample(batch, height, width, generator), self.img_size, self.mean, self.std,
                     self.jitter)
