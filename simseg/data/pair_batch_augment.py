"""Batched segmentation augmentation of image + mask batches on their own device: the recipe of
:func:`simseg.data.pair_transforms.seg_train_transform` (random resized crop, horizontal flip, rotation, colour jitter,
Gaussian blur, normalisation) for a whole batch at once, for images and masks decoded once into a cache.

The cache stores every image squashed to S x S from its original (H_i, W_i). Crop boxes are drawn in each sample's
original geometry, as the per-image transform draws them on the original photo, and mapped to the stored pixels
when sampling. The same geometry moves image and mask: one bilinear ``grid_sample`` crops, resizes and flips the
images; an index gather with ``F.interpolate(mode="nearest")``'s rule does it for the masks; one more grid per batch
rotates both (:mod:`simseg.data.rotate_blur`). Colour jitter, blur and normalisation touch the image only.
``masks=None`` runs the image path alone (classification's recipe, with rotation and blur off).

:func:`reference_apply_pairs` is the per-image torchvision path with the same parameters; the two agree to float
rounding for images and exactly for masks (tests/data/test_pair_batch_augment.py). Differences from the per-image
pipeline beyond :mod:`simseg.data.batch_augment`'s (no antialiasing, float pixels, fixed jitter order):
- the crop samples the stored S x S copy, not the original photo (a squashed copy resampled, not the photo itself);
- a rotation by exactly 90, 180 or 270 degrees is interpolated, where torchvision transposes (probability zero).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from simseg.data.batch_augment import (
    BatchAugment,
    CropParams,
    _color_jitter,
    _uniform,
    reference_jitter,
    sample_params,
    sampling_grid,
)
from simseg.data.pair_transforms import blur_kernel
from simseg.data.rotate_blur import gaussian_blur, rotate
from simseg.errors import SimsegError
from simseg.models.segmentation import IGNORE_INDEX


@dataclasses.dataclass
class PairParams:
    """Per-sample parameters of the segmentation recipe, each a (B,) CPU tensor besides ``crop`` and ``kernel_size``.

    ``crop``: boxes in each sample's original pixels, flip and colour jitter (:class:`CropParams`); ``angle``:
    rotation in degrees, counter-clockwise (0 = none); ``blur``: whether the image is blurred, with ``sigma``;
    ``kernel_size``: the blur kernel's odd side, one for the batch as in the per-image transform.
    """

    crop: CropParams
    angle: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor
    kernel_size: int

    def __len__(self) -> int:
        return len(self.angle)


def sample_pair_params(heights: torch.Tensor, widths: torch.Tensor, scale: Sequence[float], ratio: Sequence[float],
                       hflip_prob: float, jitter: Sequence[float], jitter_prob: float, rotation: float = 0.0,
                       blur_prob: float = 0.0, blur_sigma: Sequence[float] = (0.1, 1.0),
                       generator: torch.Generator | None = None) -> PairParams:
    """Draw B = len(heights) samples of seg_train_transform's parameters; ``heights``, ``widths``: (B,) original sizes.

    Boxes, flip and jitter as :func:`~simseg.data.batch_augment.sample_params` in each sample's own (H_i, W_i);
    angle ~ U(-rotation, rotation) degrees; blur with probability ``blur_prob`` and sigma ~ U(blur_sigma). Every
    call draws the same amount from ``generator`` whatever the settings, so a seed reproduces the batch.
    """
    batch = len(heights)
    crop = sample_params(batch, heights, widths, scale, ratio, hflip_prob, jitter, jitter_prob, generator)
    angle = _uniform((batch,), -rotation, rotation, generator)  # float64, as RandomRotation's .item()
    blur = torch.rand(batch, generator=generator) < blur_prob
    sigma = _uniform((batch,), blur_sigma[0], blur_sigma[1], generator).float()
    return PairParams(crop=crop, angle=angle, blur=blur, sigma=sigma, kernel_size=blur_kernel(blur_sigma[1]))


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


def crop_masks(masks: torch.Tensor, params: CropParams, heights: torch.Tensor, widths: torch.Tensor,
               out_size: int) -> torch.Tensor:
    """uint8 masks (B, Hs, Ws) on any device, boxes in original pixels -> (B, out, out) cropped, resized (nearest)
    and flipped, on that device: one gather, so class ids are copied, never blended."""
    _, stored_h, stored_w = masks.shape
    rows = _nearest_indices(params.top, params.height, heights, stored_h, out_size)  # (B, out)
    cols = _nearest_indices(params.left, params.width, widths, stored_w, out_size)
    cols = torch.where(params.flip[:, None], cols.flip(1), cols)
    rows, cols = rows.to(masks.device, non_blocking=True), cols.to(masks.device, non_blocking=True)
    batch = torch.arange(len(masks), device=masks.device)[:, None, None]
    return masks[batch, rows[:, :, None], cols[:, None, :]]


def _fill_colour(mean: Sequence[float]) -> list[float]:
    """The per-image transform fills rotated corners of its uint8 image with round(255 * mean); here in [0, 1]."""
    return [round(255 * m) / 255 for m in mean]


def apply_pairs(images: torch.Tensor, masks: torch.Tensor | None, heights: torch.Tensor, widths: torch.Tensor,
                params: PairParams, out_size: int, mean: Sequence[float], std: Sequence[float],
                jitter: Callable = _color_jitter) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 images (B, 3, S, S) and masks (B, S, S) or None on any device, stored from originals ``heights``,
    ``widths`` (B,) CPU -> normalised float32 images (B, 3, out, out) and int64 masks (B, out, out) or None.

    Crop + resize + flip: one grid_sample (images) and one gather (masks); rotation: one grid_sample each, skipped
    when no sample rotates; jitter, blur and normalisation on the images. Runs in float32 even inside an autocast
    region. Rotated corners get the mean colour (0 after normalising) and :data:`IGNORE_INDEX`.
    """
    device = images.device
    with torch.autocast(device.type, enabled=False):
        grid = sampling_grid(params.crop, heights, widths, out_size, device)
        out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        out = out.mul_(1 / 255)  # (B, 3, out, out) in [0, 1]
        labels = None if masks is None else crop_masks(masks, params.crop, heights, widths, out_size)
        if bool((params.angle != 0).any()):  # CPU tensors: no device sync
            out = rotate(out, params.angle, "bilinear", _fill_colour(mean))
            if labels is not None:
                labels = rotate(labels[:, None].float(), params.angle, "nearest", [float(IGNORE_INDEX)])[:, 0]
        if bool(params.crop.jitter.any()):
            out = jitter(out, params.crop)
        if bool(params.blur.any()):
            chosen = params.blur.nonzero().squeeze(1).to(device)  # blur only the samples drawn for it
            out = out.index_copy(0, chosen, gaussian_blur(out[chosen], params.sigma[params.blur], params.kernel_size))
        mean_t = torch.tensor(mean, dtype=out.dtype, device=device).view(1, 3, 1, 1)
        std_t = torch.tensor(std, dtype=out.dtype, device=device).view(1, 3, 1, 1)
        return out.sub_(mean_t).div_(std_t), None if labels is None else labels.long()


def reference_apply_pairs(images: torch.Tensor, masks: torch.Tensor | None, params: PairParams, out_size: int,
                          mean: Sequence[float], std: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The per-image torchvision v2 path with the same parameters: uint8 images (B, 3, H, W) and masks (B, H, W) or
    None, stored at their original size -> float32 (B, 3, out, out) and int64 (B, out, out) or None.

    Images become floats first (as :func:`simseg.data.batch_augment.reference_apply`), masks stay uint8
    ``tv_tensors.Mask``, so torchvision resizes and rotates them with NEAREST.
    """
    crop, fill = params.crop, _fill_colour(mean)
    out_images, out_masks = [], []
    for i, image in enumerate(images):
        x = TF.to_dtype(image, torch.float32, scale=True)
        m = None if masks is None else tv_tensors.Mask(masks[i])
        box = [int(v[i]) for v in (crop.top, crop.left, crop.height, crop.width)]
        x = TF.resized_crop(x, *box, size=[out_size, out_size], antialias=False)
        m = None if m is None else TF.resized_crop(m, *box, size=[out_size, out_size],
                                                   interpolation=TF.InterpolationMode.NEAREST)
        if crop.flip[i]:
            x, m = TF.horizontal_flip(x), None if m is None else TF.horizontal_flip(m)
        angle = float(params.angle[i])
        x = TF.rotate(x, angle, TF.InterpolationMode.BILINEAR, fill=fill)
        m = None if m is None else TF.rotate(m, angle, fill=IGNORE_INDEX)
        x = reference_jitter(x, crop, i)
        if params.blur[i]:
            x = TF.gaussian_blur(x, [params.kernel_size] * 2, [float(params.sigma[i])] * 2)
        out_images.append(TF.normalize(x, list(mean), list(std)))
        if m is not None:
            out_masks.append(m.as_subclass(torch.Tensor).long())
    return torch.stack(out_images), torch.stack(out_masks) if out_masks else None


class PairBatchAugment:
    """``augment(images, masks, heights, widths, generator)``: uint8 (B, 3, S, S) and (B, S, S) or None, with the
    original sizes (B,) -> normalised float32 (B, 3, img_size, img_size) and int64 (B, img_size, img_size) or None.

    Arguments as :func:`simseg.data.pair_transforms.seg_train_transform`'s. ``compile``: the colour jitter as one
    torch.compile'd kernel, as :class:`~simseg.data.batch_augment.BatchAugment`, which also checks the jitter.
    """

    def __init__(self, img_size: int, scale: Sequence[float], ratio: Sequence[float], hflip: float,
                 color_jitter: Sequence[float], color_jitter_prob: float, mean: Sequence[float],
                 std: Sequence[float], rotation: float = 0.0, blur_prob: float = 0.0,
                 blur_sigma: Sequence[float] = (0.1, 1.0), compile: bool = False):
        if not (0 <= rotation <= 180 and 0 <= blur_prob <= 1 and 0 < blur_sigma[0] <= blur_sigma[1]):
            raise SimsegError(f"rotation={rotation}, blur_prob={blur_prob}, blur_sigma={list(blur_sigma)}: rotation "
                              f"must be in [0, 180] degrees, blur_prob a probability, 0 < blur_sigma low <= high")
        self.base = BatchAugment(img_size, scale, ratio, hflip, color_jitter, color_jitter_prob, mean, std, compile)
        self.rotation, self.blur_prob, self.blur_sigma = rotation, blur_prob, tuple(blur_sigma)

    @classmethod
    def from_aug_config(cls, aug, img_size: int, compile: bool = False) -> PairBatchAugment:
        """From a stage's aug config; classification's has no rotation or blur, which then stay off."""
        return cls(img_size, aug.crop_scale, aug.crop_ratio, aug.hflip, aug.color_jitter, aug.color_jitter_prob,
                   aug.mean, aug.std, getattr(aug, "rotation", 0.0), getattr(aug, "blur_prob", 0.0),
                   getattr(aug, "blur_sigma", (0.1, 1.0)), compile)

    def sample(self, heights: torch.Tensor, widths: torch.Tensor,
               generator: torch.Generator | None = None) -> PairParams:
        base = self.base
        return sample_pair_params(heights, widths, base.scale, base.ratio, base.hflip, base.color_jitter,
                                  base.color_jitter_prob, self.rotation, self.blur_prob, self.blur_sigma, generator)

    def __call__(self, images: torch.Tensor, masks: torch.Tensor | None, heights: torch.Tensor,
                 widths: torch.Tensor, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        heights, widths = heights.cpu(), widths.cpu()  # parameters are drawn and mapped on the CPU
        return apply_pairs(images, masks, heights, widths, self.sample(heights, widths, generator),
                           self.base.img_size, self.base.mean, self.base.std, self.base.jitter)
