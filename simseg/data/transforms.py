"""Per-image transforms (torchvision transforms v2), the per-image path of every stage: the training transform
(random resized crop, flip, rotation, colour jitter, Gaussian blur, normalisation) and the evaluation transforms.

Each is called as ``transform(image)`` or ``transform(image, mask)`` with a PIL RGB image and its mask of class ids
(PIL ``L`` or a uint8 numpy array (H, W), the image's size) and returns a float32 (3, img_size, img_size) normalised
with ``mean``/``std``, and with a mask, an int64 (img_size, img_size) beside it.

Image and mask are wrapped as ``tv_tensors`` before any transform runs, so torchvision itself applies the same crop,
flip and rotation to both, resizes and rotates the mask with NEAREST (a class id is never blended with its
neighbour), and applies colour jitter, blur and normalisation to the image only. A rotation uncovers the corners of
the crop: the image gets the normalisation mean there (zeros after normalising, so no edge the model could learn
from) and the mask gets :data:`IGNORE_INDEX`, which the loss skips: those pixels are not in the photo, and calling
them background would teach the model that rotated corners are background.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image as PILImage
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from simseg.data.rotate_blur import blur_kernel_size
from simseg.errors import SimsegError
from simseg.models.segmentation import IGNORE_INDEX

EVAL_OPS = ("resize", "shorter_crop")


class ImageTransform:
    """``v2.Compose(transforms)`` applied to an image, or to an image and its mask together (see the module
    docstring)."""

    def __init__(self, transforms: Sequence[v2.Transform]):
        self.transforms = v2.Compose(transforms)

    def __call__(self, image: PILImage.Image, mask: PILImage.Image | np.ndarray | None = None):
        pixels = tv_tensors.Image(F.pil_to_tensor(image))  # uint8 (3, H, W): crop and flip uint8, then go float
        if mask is None:
            return self.transforms(pixels).as_subclass(torch.Tensor)
        ids = np.array(mask)  # (H, W); a copy, so torch gets a writable array
        if ids.dtype != np.uint8 or ids.shape != tuple(pixels.shape[-2:]):
            raise SimsegError(f"a segmentation mask of shape {ids.shape} and type {ids.dtype} does not fit its image "
                              f"{tuple(pixels.shape[-2:])}: masks must be uint8 class ids (PIL 'L'), the image's size")
        image, mask = self.transforms(pixels, tv_tensors.Mask(torch.from_numpy(ids)))
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)  # plain tensors for collate

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transforms})"


def train_transform(aug, img_size: int) -> ImageTransform:
    """An :class:`~simseg.config.sections.AugConfig`'s training transform: random resized crop and horizontal flip
    (and, with ``aug.rotation`` > 0, a rotation by up to +-``rotation`` degrees) of image and mask; colour jitter
    with probability ``aug.color_jitter_prob``, Gaussian blur with probability ``aug.blur_prob`` and normalisation
    of the image only. Steps that are off draw nothing, so a seed draws what it drew before they existed."""
    geometry = [v2.RandomResizedCrop(img_size, scale=tuple(aug.crop_scale), ratio=tuple(aug.crop_ratio),
                                     antialias=True), v2.RandomHorizontalFlip(aug.hflip)]
    if aug.rotation > 0:
        mean_colour = tuple(round(255 * m) for m in aug.mean)
        geometry.append(v2.RandomRotation(aug.rotation, interpolation=v2.InterpolationMode.BILINEAR,
                                          fill={tv_tensors.Image: mean_colour, tv_tensors.Mask: IGNORE_INDEX}))
    blur = v2.GaussianBlur(blur_kernel_size(aug.blur_sigma[1]), tuple(aug.blur_sigma))
    return ImageTransform([
        *geometry,
        v2.RandomApply([v2.ColorJitter(*aug.color_jitter)], p=aug.color_jitter_prob),
        *([v2.RandomApply([blur], p=aug.blur_prob)] if aug.blur_prob > 0 else []),
        *_to_float_and_normalize(aug.mean, aug.std),
    ])


def eval_geometry(img_size: int, op: str) -> list[v2.Transform]:
    """The deterministic resize of an evaluation transform: ``resize`` the whole image (and mask) to exactly
    ``img_size`` x ``img_size`` (no crop, so every pixel is scored; the aspect ratio is not kept), the segmentation
    stage's; or ``shorter_crop``: the shorter side to ``img_size``, then a centre crop, the other stages'.
    Antialiased for images, nearest for masks."""
    if op == "resize":
        return [v2.Resize((img_size, img_size), antialias=True)]
    if op == "shorter_crop":
        return [v2.Resize(img_size, antialias=True), v2.CenterCrop(img_size)]
    raise ValueError(f"unknown evaluation op {op!r}; choose one of {EVAL_OPS}")


def eval_transform(img_size: int, mean: Sequence[float], std: Sequence[float],
                   op: str = "shorter_crop") -> ImageTransform:
    """:func:`eval_geometry`, then normalisation of the image."""
    return ImageTransform([*eval_geometry(img_size, op), *_to_float_and_normalize(mean, std)])


def _to_float_and_normalize(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    # scale=True scales the image's uint8 to [0, 1] only; the mask's class ids are cast unchanged
    to_dtype = v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64}, scale=True)
    return [to_dtype, v2.Normalize(list(mean), list(std))]


def denormalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalised (B, 3, H, W) -> real colours in [0, 1], for pictures."""
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images * std_t + mean_t).clamp(0, 1)
