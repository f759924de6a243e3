"""MixUp and CutMix for segmentation: images mixed, and per-pixel soft targets mixed with the same weights.

Each batch is mixed with itself reversed (image i with image B-1-i, as timm's ``Mixup`` does for classification),
with one factor per batch:

- MixUp: ``x = lam x_i + (1 - lam) x_j``, target ``lam t_i + (1 - lam) t_j`` at every pixel;
- CutMix: a box of area ``1 - lam`` of image j pasted into image i, and the same box of j's target into i's target,
  so every pixel's target is one-hot again (the class of the image it shows).

Targets are (B, C, H, W) per-pixel distributions; an unlabelled pixel (``IGNORE_INDEX``, a rotation's corner) is the
zero vector, which the soft loss skips (see :func:`simseg.models.segmentation.segmentation_loss`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from simseg.models.segmentation import IGNORE_INDEX


def soft_targets(mask: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, H, W) class ids -> (B, C, H, W) one-hot float targets; unlabelled pixels get all zeros."""
    labelled = mask != IGNORE_INDEX
    one_hot = F.one_hot(mask.masked_fill(~labelled, 0), num_classes).permute(0, 3, 1, 2).float()
    return one_hot * labelled.unsqueeze(1)


def mixup(images: torch.Tensor, targets: torch.Tensor, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend each image and target with the batch's reverse, weight ``lam`` on the image itself."""
    return lam * images + (1 - lam) * images.flip(0), lam * targets + (1 - lam) * targets.flip(0)


def cutmix(images: torch.Tensor, targets: torch.Tensor, box: tuple[int, int, int, int]
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste rows ``box[0]:box[1]``, columns ``box[2]:box[3]`` of the reversed batch into image and target."""
    top, bottom, left, right = box
    images, targets = images.clone(), targets.clone()
    images[..., top:bottom, left:right] = images.flip(0)[..., top:bottom, left:right]
    targets[..., top:bottom, left:right] = targets.flip(0)[..., top:bottom, left:right]
    return images, targets


def random_box(height: int, width: int, lam: float, generator: torch.Generator | None = None
               ) -> tuple[int, int, int, int]:
    """A box of about ``(1 - lam)`` of the image's area at a uniform random centre, clipped to the image."""
    cut = math.sqrt(1 - lam)
    box_h, box_w = round(height * cut), round(width * cut)
    cy = int(torch.randint(height, (1,), generator=generator))
    cx = int(torch.randint(width, (1,), generator=generator))
    return (max(cy - box_h // 2, 0), min(cy + box_h - box_h // 2, height),
            max(cx - box_w // 2, 0), min(cx + box_w - box_w // 2, width))


def mix_segmentation_batch(images: torch.Tensor, mask: torch.Tensor, num_classes: int, alpha: float,
                           cutmix_alpha: float, prob: float, switch_prob: float,
                           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, soft targets (B, C, H, W)) of one training batch, mixed with probability ``prob``: CutMix with
    probability ``switch_prob`` when both are on, else MixUp; factors from Beta(alpha, alpha) / Beta(cutmix_alpha,
    cutmix_alpha). Randomness from torch (seeded per epoch by the stage)."""
    targets = soft_targets(mask, num_classes)
    if float(torch.rand((), generator=generator)) >= prob or (alpha <= 0 and cutmix_alpha <= 0):
        return images, targets
    use_cutmix = cutmix_alpha > 0 and (alpha <= 0 or float(torch.rand((), generator=generator)) < switch_prob)
    a = cutmix_alpha if use_cutmix else alpha
    lam = float(torch.distributions.Beta(a, a).sample())
    if use_cutmix:
        return cutmix(images, targets, random_box(*images.shape[-2:], lam, generator))
    return mixup(images, targets, lam)
