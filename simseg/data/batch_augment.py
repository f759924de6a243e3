"""The batched augmentation of every stage: the per-image training transform (:func:`simseg.data.transforms
.train_transform`: random resized crop, horizontal flip, rotation, colour jitter, Gaussian blur, normalisation) for a
whole batch at once on its own device, for images (and masks) decoded once into a cache
(:mod:`simseg.data.image_cache`).

A cache stores every image squashed to S x S from its original (H_i, W_i). Crop boxes are drawn in each sample's
original geometry, as the per-image transform draws them on the original photo, and mapped to the stored pixels when
sampling. The same geometry moves image and mask: one bilinear ``grid_sample`` crops, resizes and flips the images;
an index gather with ``F.interpolate(mode="nearest")``'s rule does it for the masks; one more grid per batch rotates
both (:mod:`simseg.data.rotate_blur`). Colour jitter, blur and normalisation touch the image only.

The per-image torchvision path with the same parameters agrees with this one to float rounding for images and
exactly for masks (``tests/data/reference_augment.py``). What differs from the per-image pipeline, by design: the
crop samples the stored S x S copy (bilinear, no antialiasing) rather than the photo; pixels stay float between the
steps; colour jitter runs in a fixed order; a rotation by exactly 90, 180 or 270 degrees is interpolated where
torchvision transposes (probability zero).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from simseg.data.color_jitter import jitter_colours
from simseg.data.rotate_blur import blur_kernel_size, gaussian_blur, rotate
from simseg.models.segmentation import IGNORE_INDEX

_TRIES = 10  # crop proposals per sample, as torchvision's RandomResizedCrop


@dataclasses.dataclass
class AugmentParams:
    """Per-sample parameters of the training transform, each a (B,) CPU tensor besides ``kernel_size``.

    ``heights, widths``: the image sizes the boxes were drawn in (the originals); ``top, left, height, width``: crop
    boxes in those pixels (whole numbers, as torchvision's); ``flip``: mirror the output left-right; ``jitter``:
    whether colour jitter applies, with factors ``brightness, contrast, saturation`` (1 = identity) and ``hue`` (a
    shift in turns); ``angle``: rotation in degrees, counter-clockwise (0 = none); ``blur``: whether the image is
    blurred, with ``sigma``; ``kernel_size``: the blur kernel's odd side, one for the batch as in the per-image path.
    """

    heights: torch.Tensor
    widths: torch.Tensor
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
    angle: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor
    kernel_size: int

    def __len__(self) -> int:
        return len(self.top)


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(shape, generator=generator, dtype=torch.float64) * (high - low) + low


def sample_params(batch_size: int, heights: int | torch.Tensor, widths: int | torch.Tensor,
                  scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
                  hflip_prob: float = 0.5, jitter: Sequence[float] = (0.0, 0.0, 0.0, 0.0), jitter_prob: float = 0.0,
                  rotation: float = 0.0, blur_prob: float = 0.0, blur_sigma: Sequence[float] = (0.1, 1.0), *,
                  generator: torch.Generator | None = None) -> AugmentParams:
    """Draw B samples of torchvision's RandomResizedCrop, RandomHorizontalFlip, RandomRotation,
    RandomApply(ColorJitter) and RandomApply(GaussianBlur).

    Crops: area fraction ~ U(scale), log aspect ratio ~ U(log ratio), side lengths rounded; the first of 10
    proposals that fits wins, else torchvision's central-crop fallback. All 10 are drawn for every sample at once.
    ``heights``, ``widths``: one image size for the batch, or per-sample sizes as (B,) CPU tensors (the draws are the
    same either way, so equal sizes give the same boxes). ``jitter`` is (brightness, contrast, saturation, hue):
    factors ~ U[max(0, 1-x), 1+x], hue shift ~ U[-h, h]; angle ~ U(-rotation, rotation); blur with probability
    ``blur_prob`` and sigma ~ U(blur_sigma). Every call draws the same amount from ``generator`` (a CPU generator),
    whatever the settings, so a seed reproduces the batch.
    """
    # (B,) float64 sizes: whole numbers, so every product, ratio and rounding below equals the Python int arithmetic
    height = torch.as_tensor(heights, dtype=torch.float64).expand(batch_size)
    width = torch.as_tensor(widths, dtype=torch.float64).expand(batch_size)
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
    factors = [_uniform((batch_size,), max(0.0, 1 - x), 1 + x, generator).float() for x in jitter[:3]]
    shift = _uniform((batch_size,), -jitter[3], jitter[3], generator).float()
    brightness, contrast, saturation = (torch.where(applied, f, 1.0) for f in factors)
    angle = _uniform((batch_size,), -rotation, rotation, generator)  # float64, as RandomRotation's .item()
    blur = torch.rand(batch_size, generator=generator) < blur_prob
    sigma = _uniform((batch_size,), blur_sigma[0], blur_sigma[1], generator).float()
    return AugmentParams(heights=height.long(), widths=width.long(), top=top.float(), left=left.float(),
                         height=h.float(), width=w.float(), flip=flip, jitter=applied, brightness=brightness,
                         contrast=contrast, saturation=saturation, hue=torch.where(applied, shift, 0.0), angle=angle,
                         blur=blur, sigma=sigma, kernel_size=blur_kernel_size(blur_sigma[1]))


def _source_coordinates(start: torch.Tensor, length: torch.Tensor, size: torch.Tensor, out_size: int) -> torch.Tensor:
    """Crop starts and lengths (B,) along one axis of images ``size`` (B,) pixels long -> grid_sample coordinates
    (B, out) in [-1, 1], float64."""
    steps = torch.arange(out_size, dtype=torch.float64) + 0.5  # output pixel centres
    start, length = start.double()[:, None], length.double()[:, None]
    pixel = start + (steps * length / out_size - 0.5).clamp(min=0.0)  # (B, out)
    pixel = torch.minimum(pixel, start + length - 1)
    return (2 * pixel + 1) / size.double()[:, None] - 1  # align_corners=False normalisation


def sampling_grid(params: AugmentParams, out_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """grid_sample's grid (B, out, out, 2) in [-1, 1] on ``device`` for crop, then resize, then flip.

    The source pixel of output column j is ``left + (j + 0.5) * width / out - 0.5`` (pixel centres, as
    ``F.interpolate(mode="bilinear", align_corners=False)``), clamped to the crop box as interpolate clamps to the
    cropped image's border; a flip reverses the columns. The map is separable, so only the (B, out) coordinates per
    axis are computed on the CPU (in float64) and moved. grid_sample's [-1, 1] coordinates do not depend on the
    resolution, so boxes drawn in each image's original size sample the same place of a copy resized to any size.
    """
    xs = _source_coordinates(params.left, params.width, params.widths, out_size)
    xs = torch.where(params.flip[:, None], xs.flip(1), xs)
    ys = _source_coordinates(params.top, params.height, params.heights, out_size)
    xs, ys = xs.float().to(device, non_blocking=True), ys.float().to(device, non_blocking=True)
    grid = torch.empty(len(params), out_size, out_size, 2, device=device)
    grid[..., 0] = xs[:, None, :]  # x varies along columns
    grid[..., 1] = ys[:, :, None]  # y along rows
    return grid


def _nearest_indices(start: torch.Tensor, length: torch.Tensor, size: torch.Tensor, stored: int,
                     out_size: int) -> torch.Tensor:
    """Crop starts and lengths (B,) in original pixels of images ``size`` (B,) long along one axis -> (B, out) int64
    indices into the copy stored ``stored`` pixels long.

    Output j takes original pixel ``start + floor(j * (length / out))`` with the scale and product in float32 and the
    offset clamped to the box: ``F.interpolate(mode="nearest")``'s rule, which torchvision's NEAREST resize of a
    mask uses. That pixel's centre falls in stored pixel ``floor((x + 0.5) * stored / size)``, the one nearest to
    where the image's bilinear grid samples; the identity when stored == size.
    """
    scale = length.float()[:, None] / out_size  # (B, 1) float32
    offset = (torch.arange(out_size, dtype=torch.float32) * scale).floor().double()  # (B, out)
    pixel = start.double()[:, None] + torch.minimum(offset, length.double()[:, None] - 1)
    index = ((pixel + 0.5) * stored / size.double()[:, None]).floor()
    return index.clamp(0, stored - 1).long()


def crop_masks(masks: torch.Tensor, params: AugmentParams, out_size: int) -> torch.Tensor:
    """uint8 masks (B, Hs, Ws) on any device -> (B, out, out) cropped, resized (nearest) and flipped, on that
    device: one gather, so class ids are copied, never blended."""
    _, stored_h, stored_w = masks.shape
    rows = _nearest_indices(params.top, params.height, params.heights, stored_h, out_size)  # (B, out)
    cols = _nearest_indices(params.left, params.width, params.widths, stored_w, out_size)
    cols = torch.where(params.flip[:, None], cols.flip(1), cols)
    rows, cols = rows.to(masks.device, non_blocking=True), cols.to(masks.device, non_blocking=True)
    batch = torch.arange(len(masks), device=masks.device)[:, None, None]
    return masks[batch, rows[:, :, None], cols[:, None, :]]


def fill_colour(mean: Sequence[float]) -> list[float]:
    """The per-image transform fills rotated corners of its uint8 image with round(255 * mean); here in [0, 1]."""
    return [round(255 * m) / 255 for m in mean]


def apply(images: torch.Tensor, params: AugmentParams, out_size: int, mean: Sequence[float], std: Sequence[float],
          masks: torch.Tensor | None = None, jitter: Callable = jitter_colours
          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 images (B, 3, S, S) and masks (B, S, S) or None on any device, stored from originals of
    ``params.heights, params.widths`` -> normalised float32 images (B, 3, out, out) and int64 masks (B, out, out)
    or None, on that device.

    Crop + resize + flip: one grid_sample (images) and one gather (masks); rotation: one grid_sample each, skipped
    when no sample rotates; jitter, blur and normalisation on the images. Runs in float32 even inside an autocast
    region. Rotated corners get the mean colour (0 after normalising) and :data:`IGNORE_INDEX`. ``jitter``:
    :func:`~simseg.data.color_jitter.jitter_colours` or a compiled copy of it.
    """
    device = images.device
    with torch.autocast(device.type, enabled=False):
        grid = sampling_grid(params, out_size, device)
        # Sampling the 0..255 values and scaling afterwards touches out*out pixels instead of S*S.
        out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        out = out.mul_(1 / 255)  # (B, 3, out, out) in [0, 1]
        labels = None if masks is None else crop_masks(masks, params, out_size)
        if bool((params.angle != 0).any()):  # CPU tensors: no device sync
            out = rotate(out, params.angle, "bilinear", fill_colour(mean))
            if labels is not None:
                labels = rotate(labels[:, None].float(), params.angle, "nearest", [float(IGNORE_INDEX)])[:, 0]
        if bool(params.jitter.any()):
            out = jitter(out, params.jitter, params.brightness, params.contrast, params.saturation, params.hue)
        if bool(params.blur.any()):
            chosen = params.blur.nonzero().squeeze(1).to(device, non_blocking=True)  # only those drawn for it
            out = out.index_copy(0, chosen, gaussian_blur(out[chosen], params.sigma[params.blur], params.kernel_size))
        # Made on the CPU and sent without waiting: torch.tensor(..., device=cuda) would wait for the GPU's queue.
        mean_t = torch.tensor(mean, dtype=out.dtype).view(1, 3, 1, 1).to(device, non_blocking=True)
        std_t = torch.tensor(std, dtype=out.dtype).view(1, 3, 1, 1).to(device, non_blocking=True)
        return out.sub_(mean_t).div_(std_t), None if labels is None else labels.long()


class BatchAugment:
    """``augment(images, heights, widths, masks=None, generator=None)``: uint8 (B, 3, S, S) and (B, S, S) or None,
    stored from originals of ``heights``, ``widths`` (B,) -> normalised float32 (B, 3, img_size, img_size) and int64
    (B, img_size, img_size) or None.

    Arguments as an :class:`~simseg.config.sections.AugConfig`'s fields (validated there). ``compile``: the colour
    jitter, two dozen elementwise passes and most of the augmentation's time, as one torch.compile'd kernel.
    """

    def __init__(self, img_size: int, scale: Sequence[float], ratio: Sequence[float], hflip: float,
                 color_jitter: Sequence[float], color_jitter_prob: float, mean: Sequence[float],
                 std: Sequence[float], rotation: float = 0.0, blur_prob: float = 0.0,
                 blur_sigma: Sequence[float] = (0.1, 1.0), compile: bool = False):
        self.img_size, self.mean, self.std = img_size, tuple(mean), tuple(std)
        self.draws = dict(scale=tuple(scale), ratio=tuple(ratio), hflip_prob=hflip, jitter=tuple(color_jitter),
                          jitter_prob=color_jitter_prob, rotation=rotation, blur_prob=blur_prob,
                          blur_sigma=tuple(blur_sigma))
        self.jitter = torch.compile(jitter_colours, dynamic=False) if compile else jitter_colours

    @classmethod
    def from_aug_config(cls, aug, img_size: int, compile: bool = False) -> BatchAugment:
        return cls(img_size, aug.crop_scale, aug.crop_ratio, aug.hflip, aug.color_jitter, aug.color_jitter_prob,
                   aug.mean, aug.std, aug.rotation, aug.blur_prob, aug.blur_sigma, compile)

    def sample(self, heights: torch.Tensor, widths: torch.Tensor,
               generator: torch.Generator | None = None) -> AugmentParams:
        return sample_params(len(heights), heights, widths, **self.draws, generator=generator)

    def __call__(self, images: torch.Tensor, heights: torch.Tensor, widths: torch.Tensor,
                 masks: torch.Tensor | None = None, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        params = self.sample(heights.cpu(), widths.cpu(), generator)  # drawn and mapped on the CPU
        return apply(images, params, self.img_size, self.mean, self.std, masks, self.jitter)
