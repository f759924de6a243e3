"""The test oracle of the batched augmentation: the per-image torchvision v2 path, one image at a time, with the
parameters a :class:`~simseg.data.batch_augment.AugmentParams` holds (what the per-image transform would have drawn)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as TF

from simseg.data.batch_augment import AugmentParams, fill_colour
from simseg.models.segmentation import IGNORE_INDEX


def reference_jitter(image: torch.Tensor, params: AugmentParams, i: int) -> torch.Tensor:
    """Sample ``i``'s colour jitter on one float image (3, H, W) with torchvision's functional ops, in the batched
    path's order (brightness, contrast, saturation, hue)."""
    if not params.jitter[i]:
        return image
    image = TF.adjust_brightness(image, float(params.brightness[i]))
    image = TF.adjust_contrast(image, float(params.contrast[i]))
    image = TF.adjust_saturation(image, float(params.saturation[i]))
    return TF.adjust_hue(image, float(params.hue[i])) if params.hue[i] != 0 else image


def reference_apply(images: torch.Tensor, params: AugmentParams, out_size: int, mean: Sequence[float],
                    std: Sequence[float], masks: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 images (B, 3, H, W) and masks (B, H, W) or None, stored at the size the boxes were drawn in -> float32
    (B, 3, out, out) and int64 (B, out, out) or None.

    Images become floats first, so the comparison with the batched path measures the sampling, not uint8 rounding;
    masks stay uint8 ``tv_tensors.Mask``, so torchvision resizes and rotates them with NEAREST."""
    out_images, out_masks = [], []
    for i, image in enumerate(images):
        x = TF.to_dtype(image, torch.float32, scale=True)
        m = None if masks is None else tv_tensors.Mask(masks[i])
        box = [int(v[i]) for v in (params.top, params.left, params.height, params.width)]
        x = TF.resized_crop(x, *box, size=[out_size, out_size], antialias=False)
        m = None if m is None else TF.resized_crop(m, *box, size=[out_size, out_size],
                                                   interpolation=TF.InterpolationMode.NEAREST)
        if params.flip[i]:
            x, m = TF.horizontal_flip(x), None if m is None else TF.horizontal_flip(m)
        angle = float(params.angle[i])
        if angle:
            x = TF.rotate(x, angle, TF.InterpolationMode.BILINEAR, fill=fill_colour(mean))
            m = None if m is None else TF.rotate(m, angle, fill=IGNORE_INDEX)
        x = reference_jitter(x, params, i)
        if params.blur[i]:
            x = TF.gaussian_blur(x, [params.kernel_size] * 2, [float(params.sigma[i])] * 2)
        out_images.append(TF.normalize(x, list(mean), list(std)))
        if m is not None:
            out_masks.append(m.as_subclass(torch.Tensor).long())
    return torch.stack(out_images), torch.stack(out_masks) if out_masks else None
