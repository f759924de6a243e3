"""Boundary IoU (Cheng et al., CVPR 2021, "Boundary IoU: Improving Object-Centric Image Segmentation Evaluation"):
the IoU of each class's contour band, a boundary measure that means the same on every dataset.

For class ``c`` with target mask ``G`` and predicted mask ``P``, the band of a mask ``M`` is ``M`` minus its erosion
by ``d`` pixels (the pixels of ``M`` within ``d`` of its contour), and

    Boundary IoU_c = |G_d ∩ P_d| / |G_d ∪ P_d|,   d = max(1, round(dilation_ratio * image diagonal)),

with the paper's ``dilation_ratio`` 0.02 (d = 6 at 224 x 224). As with the confusion matrix
(:mod:`simseg.training.metrics`), intersections and unions are summed over every image of a split and the ratio is
taken once; the same absent-class policy holds: a class whose summed union is zero (in neither band anywhere) is
undefined, ``None``, and left out of the mean.

Accumulate per batch, next to the confusion matrix::

    counts = torch.zeros(2, C, dtype=torch.long, device=device)
    counts += boundary_counts(pred, target, C)            # pred, target: (B, H, W) after gather_for_metrics
    figures = boundary_iou(counts, class_names)          # {"boundary_iou": ..., "boundary_iou_per_class": {...}}

Unlike the pets' "boundary" class (a trimap label that only Oxford-IIIT Pet has), this needs no boundary label.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

DILATION_RATIO = 0.02  # the paper's: the band is 2% of the image diagonal wide


def band_width(height: int, width: int, dilation_ratio: float = DILATION_RATIO) -> int:
    """``d`` of an image of ``height`` x ``width`` pixels: ``max(1, round(dilation_ratio * diagonal))``, rounded as
    the reference implementation rounds (Python's ``round``)."""
    return max(1, int(round(dilation_ratio * math.hypot(height, width))))


def boundary_band(masks: Tensor, d: int) -> Tensor:
    """The pixels of each mask within ``d`` of its contour: ``masks`` minus their erosion. (N, H, W) bool -> same.

    The erosion takes the minimum over a square (2d+1) x (2d+1) window, as two separable max-pools of the
    complement: cheap on a GPU and the same on every device. A square window measures distance as the chessboard
    distance, an approximation of the paper's Euclidean "within d of the contour"; it is exactly what the authors'
    reference code computes (``cv2.erode`` with a 3 x 3 kernel, ``d`` iterations). Like that code, the image is
    padded with zeros, so a mask cut by the image border has its contour there too.
    """
    outside = (~masks).float()[:, None]  # (N, 1, H, W): 1 where not in the mask
    outside = F.pad(outside, (d, d, d, d), value=1.0)  # beyond the image is not the mask
    outside = F.max_pool2d(outside, (1, 2 * d + 1), stride=1)  # (N, 1, H + 2d, W)
    outside = F.max_pool2d(outside, (2 * d + 1, 1), stride=1)  # (N, 1, H, W)
    eroded = outside[:, 0] == 0  # no pixel outside the mask within the window
    return masks & ~eroded


def boundary_counts(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = 255,
                    dilation_ratio: float = DILATION_RATIO) -> Tensor:
    """Per class, the pixels of the target and predicted bands' intersection and union, summed over the batch.

    ``pred`` and ``target``: (B, H, W) integer class ids (``target`` may hold ``ignore_index``). Returns a
    LongTensor (2, num_classes) on ``pred``'s device: row 0 intersections, row 1 unions; add the counts of every
    batch of a split, then call :func:`boundary_iou`.

    Ignored target pixels are don't-care pixels: they count in neither band, and for the erosion the target takes
    the prediction's class there, so an unlabelled strip (e.g. a trimap's boundary set to 255) is a contour of
    neither mask and a prediction right on every labelled pixel scores 1, wherever it puts the edge inside the strip.
    """
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be (B, H, W)")
    pred, target = pred.long(), target.long()
    labelled = torch.ones_like(target, dtype=torch.bool)
    if ignore_index is not None:
        labelled = target != ignore_index
        target = torch.where(labelled, target, pred)
    d = band_width(target.shape[1], target.shape[2], dilation_ratio)
    counts = torch.zeros(2, num_classes, dtype=torch.long, device=pred.device)
    for c in range(num_classes):  # one class at a time: memory stays (2B, H, W) for any class count
        bands = boundary_band(torch.cat([target == c, pred == c]), d) & labelled.repeat(2, 1, 1)  # (2B, H, W)
        truth, guess = bands.chunk(2)
        counts[0, c] = (truth & guess).sum()
        counts[1, c] = (truth | guess).sum()
    return counts


def boundary_iou(counts: Tensor, class_names: list[str]) -> dict:
    """``boundary_iou`` (mean over the classes with a non-zero union, None when there are none) and
    ``boundary_iou_per_class`` (name -> value, None when undefined) of :func:`boundary_counts`' (2, C) sums."""
    if counts.shape != (2, len(class_names)):
        raise ValueError(f"boundary counts {tuple(counts.shape)} do not match {len(class_names)} class names")
    intersection, union = counts.detach().cpu().to(torch.float64)
    iou = torch.where(union > 0, intersection / union.clamp(min=1), torch.full_like(union, math.nan))
    values = [None if math.isnan(v) else v for v in [float(iou.nanmean()), *iou.tolist()]]  # JSON has no NaN
    return {"boundary_iou": values[0], "boundary_iou_per_class": dict(zip(class_names, values[1:]))}
