"""Paired image + mask transforms for segmentation (torchvision transforms v2).

Each transform is called as ``transform(image, mask)`` with a PIL RGB image and its mask of class ids (PIL ``L`` or a
uint8 numpy array (H, W), the image's size) and returns ``(image, mask)``: float32 (3, img_size, img_size) normalised
with ``mean``/``std``, and int64 (img_size, img_size).

Both are wrapped as ``tv_tensors`` (``Image``, ``Mask``) before any transform runs, so torchvision itself applies the
same crop, flip and rotation to both, resizes and rotates the mask with NEAREST (a class id is never blended with
its neighbour), and applies colour jitter, blur and normalisation to the image only.

A rotation uncovers the corners of the crop: the image gets the normalisation mean there (zeros after normalising,
so no edge the model could learn from) and the mask gets :data:`IGNORE_INDEX`, which the loss skips: those pixels
are not in the photo, and calling them background would teach the model that rotated corners are background.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image as PILImage
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from simseg.config.sections import IMAGENET_MEAN, IMAGENET_STD
from simseg.errors import SimsegError
from simseg.models.segmentation import IGNORE_INDEX


class PairedTransform:
    """``v2.Compose(transforms)`` applied to an image and its mask together; see the module docstring."""

    def __init__(self, transforms: Sequence[v2.Transform]):
        self.transforms = v2.Compose(transforms)

    def __call__(self, image: PILImage.Image, mask: PILImage.Image | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        image = tv_tensors.Image(F.pil_to_tensor(image))  # uint8 (3, H, W): crop and flip uint8, then go float
        ids = np.array(mask)  # (H, W); a copy, so torch gets a writable array
        if ids.dtype != np.uint8 or ids.shape != tuple(image.shape[-2:]):
            raise SimsegError(f"a segmentation mask of shape {ids.shape} and type {ids.dtype} does not fit its image "
                              f"{tuple(image.shape[-2:])}: masks must be uint8 class ids (PIL 'L'), the image's size")
        mask = tv_tensors.Mask(torch.from_numpy(ids))
        image, mask = self.transforms(image, mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)  # plain tensors for collate

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transforms})"


def seg_train_transform(
    img_size: int,
    crop_scale: tuple[float, float] = (0.5, 1.0),
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip: float = 0.5,
    color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
    color_jitter_prob: float = 0.8,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    rotation: float = 0.0,
    blur_prob: float = 0.0,
    blur_sigma: tuple[float, float] = (0.1, 1.0),
) -> PairedTransform:
    """Random resized crop, horizontal flip and (``rotation`` > 0) a rotation by up to +-``rotation`` degrees on
    both; colour jitter (image only, with probability ``color_jitter_prob``; 0 turns it off); Gaussian blur with
    sigma in ``blur_sigma`` (image only, with probability ``blur_prob``); normalisation (image only)."""
    brightness, contrast, saturation, hue = color_jitter
    geometry = [v2.RandomResizedCrop(img_size, scale=tuple(crop_scale), ratio=tuple(crop_ratio), antialias=True),
                v2.RandomHorizontalFlip(hflip)]
    if rotation > 0:
        mean_colour = tuple(round(255 * m) for m in mean)
        geometry.append(v2.RandomRotation(rotation, interpolation=v2.InterpolationMode.BILINEAR,
                                          fill={tv_tensors.Image: mean_colour, tv_tensors.Mask: IGNORE_INDEX}))
    blur = [v2.RandomApply([v2.GaussianBlur(blur_kernel(blur_sigma[1]), tuple(blur_sigma))], p=blur_prob)]
    return PairedTransform([
        *geometry,
        v2.RandomApply([v2.ColorJitter(brightness, contrast, saturation, hue)], p=color_jitter_prob),
        *(blur if blur_prob > 0 else []),
        *_to_float_and_normalize(mean, std),
    ])


def blur_kernel(max_sigma: float) -> int:
    """The odd kernel size covering +-3 sigma of the widest blur."""
    return 2 * max(1, int(np.ceil(3 * max_sigma))) + 1


def seg_eval_transform(
    img_size: int, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> PairedTransform:
    """Deterministic: resize the whole image and mask to exactly ``img_size`` x ``img_size`` (no crop, so every pixel
    is scored; the aspect ratio is not kept), antialiased for the image, nearest for the mask; normalise the image."""
    return PairedTransform([
        v2.Resize((img_size, img_size), antialias=True),
        *_to_float_and_normalize(mean, std),
    ])


def _to_float_and_normalize(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    # scale=True scales the image's uint8 to [0, 1] only; the mask's class ids are cast unchanged
    to_dtype = v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64}, scale=True)
    return [to_dtype, v2.Normalize(list(mean), list(std))]
