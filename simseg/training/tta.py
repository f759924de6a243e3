"""Test-time augmentation for segmentation: the model's softmax probabilities averaged over views of each image.

Views are every (scale, flip) pair of ``scales`` x (no flip, horizontal flip when ``flip``): the batch is resized
(bilinear) to ``scale`` times its side, rounded to a multiple of :data:`SIDE_MULTIPLE` (what both the ViT's patches
and a ResNet's strides divide; scale 1 keeps the side), flipped, predicted, then un-flipped and resized back before
averaging. A ViT sees other sizes through timm's position-embedding resampling (its encoder is built with
``dynamic_img_size``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SIDE_MULTIPLE = 32


def view_size(side: int, scale: float) -> int:
    """``scale`` x ``side`` rounded to the nearest multiple of 32 (at least 32); scale 1 keeps ``side`` as it is."""
    if scale == 1:
        return side
    return max(SIDE_MULTIPLE, round(side * scale / SIDE_MULTIPLE) * SIDE_MULTIPLE)


def tta_probabilities(model, images: torch.Tensor, scales: list[float], flip: bool) -> torch.Tensor:
    """Mean softmax probabilities (B, C, H, W) of ``model`` over the views of ``images`` (B, 3, H, W)."""
    height, width = images.shape[-2:]
    total, views = None, 0
    for scale in scales:
        size = (view_size(height, scale), view_size(width, scale))
        scaled = images if size == (height, width) else F.interpolate(images, size=size, mode="bilinear",
                                                                      align_corners=False)
        for flipped in ((False, True) if flip else (False,)):
            view = scaled.flip(-1) if flipped else scaled
            probs = model(images=view)["logits"].float().softmax(1)  # (B, C, h, w)
            probs = probs.flip(-1) if flipped else probs
            if probs.shape[-2:] != (height, width):
                probs = F.interpolate(probs, size=(height, width), mode="bilinear", align_corners=False)
            total = probs if total is None else total + probs
            views += 1
    return total / views
