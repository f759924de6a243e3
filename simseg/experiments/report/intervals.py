"""How sure a gain is: a 95% interval from a paired bootstrap over seeds and test images, and its verdict.

Two arms compared on the same test images with the same seeds are paired: a resample draws seeds with replacement
(the same seeds for both arms) and, within each drawn seed, test images with replacement (the same images for both
arms), and recomputes each arm's mIoU from the resampled images' counts. The spread of the difference over the
resamples gives the interval; the verdict says whether it excludes zero. Scores are summed counts, not per-image
means, so a resample's mIoU is computed as the test mIoU is: per class, intersections over unions of all its pixels.

Shapes: an arm's scores are ``(S, N, C, 2)`` counts (seed, test image, class, [intersection, union]).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000
ABOVE, BELOW, NOISE = "above zero", "below zero", "within noise"


class Interval(NamedTuple):
    gain: float  # the observed difference of mean mIoU (arm minus reference)
    low: float
    high: float
    verdict: str  # ABOVE, BELOW or NOISE


def miou_of_counts(counts: np.ndarray) -> np.ndarray:
    """(..., C, 2) summed [intersection, union] counts -> (...) mIoU over the classes with any union."""
    intersection, union = counts[..., 0], counts[..., 1]
    present = union > 0
    iou = np.divide(intersection, union, out=np.zeros(intersection.shape, dtype=float), where=present)
    return iou.sum(-1) / np.maximum(present.sum(-1), 1)


def verdict(low: float, high: float) -> str:
    return ABOVE if low > 0 else BELOW if high < 0 else NOISE


def paired_bootstrap(arm: np.ndarray, reference: np.ndarray, resamples: int = RESAMPLES, level: float = LEVEL,
                     seed: int = 0) -> Interval:
    """The gain of ``arm`` over ``reference`` (mean over seeds of each seed's test mIoU) with its ``level`` percentile
    interval from ``resamples`` paired resamples of seeds and images. Both are (S, N, C, 2) counts whose seeds and
    images correspond index for index."""
    if arm.shape != reference.shape or arm.ndim != 4 or arm.shape[-1] != 2:
        raise ValueError(f"paired scores must both be (seeds, images, classes, 2); got {arm.shape} and "
                         f"{reference.shape}")
    seeds, images = arm.shape[:2]
    gain = float(miou_of_counts(arm.sum(1)).mean() - miou_of_counts(reference.sum(1)).mean())
    rng = np.random.default_rng(seed)
    differences = np.empty(resamples)
    chunk = max(1, 4_000_000 // max(1, seeds * images * arm.shape[2]))  # bound the gathered counts' memory
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        drawn_seeds = rng.integers(0, seeds, size=(count, seeds))  # (R, S)
        drawn_images = rng.integers(0, images, size=(count, seeds, images))  # (R, S, N)
        picked = (drawn_seeds[..., None], drawn_images)
        ours = miou_of_counts(arm[picked].sum(2)).mean(1)  # (R, S, N, C, 2) -> (R, S, C, 2) -> (R, S) -> (R,)
        theirs = miou_of_counts(reference[picked].sum(2)).mean(1)
        differences[start:start + count] = ours - theirs
    low, high = np.quantile(differences, [(1 - level) / 2, (1 + level) / 2])
    return Interval(gain, float(low), float(high), verdict(float(low), float(high)))


def format_interval(interval: Interval, digits: int = 3) -> str:
    """``+0.044 [+0.012, +0.079]``."""
    return f"{interval.gain:+.{digits}f} [{interval.low:+.{digits}f}, {interval.high:+.{digits}f}]"
