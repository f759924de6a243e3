"""How sure a gain is: a 95% interval from a paired bootstrap over seeds and test images, and its verdict.

Two arms compared on the same test images with the same seeds are paired: a resample draws seeds with replacement
(the same seeds for both arms) and, within each drawn seed, test images with replacement (the same images for both
arms), and recomputes each arm's mIoU from the resampled images' counts. The spread of the difference over the
resamples gives the interval; the verdict says whether it excludes zero. Scores are summed counts, not per-image
means, so a resample's mIoU is computed as the test mIoU is: per class, intersections over unions of all its pixels.

An average of gains over several settings (subset sizes, other axes' values) is :func:`blocked_bootstrap`: the
settings are kept as blocks and share each resample's draw.

Shapes: an arm's scores are ``(S, N, C, 2)`` counts (seed, test image, class, [intersection, union]); blocks of
them ``(B, S, N, C, 2)``.
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
    return blocked_bootstrap(arm[None], reference[None], resamples, level, seed)


def blocked_bootstrap(arms: np.ndarray, references: np.ndarray, resamples: int = RESAMPLES, level: float = LEVEL,
                      seed: int = 0) -> Interval:
    """The mean over B settings (blocks: e.g. the subset sizes or other axes' values at which two arms both ran) of
    each setting's paired gain, with its interval. ``arms`` and ``references`` are (B, S, N, C, 2) counts: every
    block holds the same S seeds and N test images, index for index.

    The blocks are kept, not resampled (the mean is over the settings the sweep ran: a handful, too few to
    resample); each resample draws seeds and, within each drawn seed, images once and applies the same draw to every
    block, so what the blocks share (the test images, and a seed's labelled subset, which the nested draw keeps
    across subset sizes) stays correlated as it is. Concatenating the blocks along the seed axis would instead
    resample them as if they were exchangeable seeds of one setting. One block is :func:`paired_bootstrap`.
    """
    if arms.shape != references.shape or arms.ndim != 5 or arms.shape[-1] != 2 or 0 in arms.shape[:3]:
        raise ValueError(f"paired blocks must both be (blocks, seeds, images, classes, 2); got {arms.shape} and "
                         f"{references.shape}")
    blocks, seeds, images, classes = arms.shape[:4]
    per_block = miou_of_counts(arms.sum(2)).mean(1) - miou_of_counts(references.sum(2)).mean(1)  # (B,)
    gain = float(per_block.mean())
    # (S, N, 2B * C * 2): per seed, a resample's summed counts are (its image multiplicities) @ these
    both = np.concatenate([arms, references]).transpose(1, 2, 0, 3, 4).reshape(seeds, images, -1).astype(float)
    rng = np.random.default_rng(seed)
    differences = np.empty(resamples)
    chunk = max(1, 2_000_000 // (seeds * images))  # bound the multiplicity matrix's memory
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        drawn_seeds = rng.integers(0, seeds, size=(count, seeds)).ravel()  # (R * S,)
        drawn_images = rng.integers(0, images, size=(count * seeds, images))  # (R * S, N)
        offsets = np.arange(count * seeds)[:, None] * images
        multiplicity = np.bincount((drawn_images + offsets).ravel(), minlength=count * seeds * images)
        multiplicity = multiplicity.reshape(count * seeds, images).astype(float)  # (R * S, N)
        # every slot's sums under every seed (integer sums, exact in float64), then the drawn seed's: (R * S, 2BC2)
        under_each = (multiplicity @ both.transpose(1, 0, 2).reshape(images, -1)).reshape(count * seeds, seeds, -1)
        summed = under_each[np.arange(count * seeds), drawn_seeds]
        miou = miou_of_counts(summed.reshape(count, seeds, 2 * blocks, classes, 2)).mean(1)  # (R, 2B)
        differences[start:start + count] = (miou[:, :blocks] - miou[:, blocks:]).mean(1)
    low, high = np.quantile(differences, [(1 - level) / 2, (1 + level) / 2])
    return Interval(gain, float(low), float(high), verdict(float(low), float(high)))


def level_interval(blocks: np.ndarray, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0) -> Interval:
    """One arm's own score rather than a gain: the mean over B blocks (e.g. pretraining seeds pooled into one arm)
    of the mean over seeds of each seed's score, with its interval from the same resamples as
    :func:`blocked_bootstrap` (the gain over a reference whose counts are all zero, which scores 0). ``blocks``:
    (B, S, N, C, 2) [intersection, union] counts of any per-class measure: the class pixels (mIoU) or the Boundary
    IoU bands (Boundary IoU). The verdict says only whether the score is above zero."""
    blocks = np.asarray(blocks)
    return blocked_bootstrap(blocks, np.zeros_like(blocks), resamples, level, seed)


def format_interval(interval: Interval, digits: int = 3) -> str:
    """``+0.044 [+0.012, +0.079]``."""
    return f"{interval.gain:+.{digits}f} [{interval.low:+.{digits}f}, {interval.high:+.{digits}f}]"
