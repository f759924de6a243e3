"""The paired bootstrap on constructed cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from simseg.experiments.report.intervals import (
    ABOVE,
    BELOW,
    NOISE,
    blocked_bootstrap,
    format_interval,
    level_interval,
    miou_of_counts,
    paired_bootstrap,
)


def counts(rng, seeds=3, images=60, classes=3, hit=0.7, spread=0.15):
    """(S, N, C, 2) counts of images whose per-class IoU scatters around ``hit``."""
    union = rng.integers(50, 500, size=(seeds, images, classes))
    iou = np.clip(rng.normal(hit, spread, size=union.shape), 0, 1)
    return np.stack([np.round(iou * union), union], -1).astype(np.int64)


def test_miou_of_counts_skips_classes_without_pixels():
    summed = np.array([[3, 4], [0, 0], [1, 4]])  # class 1 absent everywhere
    assert miou_of_counts(summed) == pytest.approx((0.75 + 0.25) / 2)


def test_identical_arms_give_an_interval_around_zero():
    scores = counts(np.random.default_rng(0))
    interval = paired_bootstrap(scores, scores.copy(), resamples=300)
    assert interval.gain == 0 and interval.low == 0 == interval.high and interval.verdict == NOISE


def test_two_draws_of_the_same_arm_are_within_noise():
    rng = np.random.default_rng(1)
    interval = paired_bootstrap(counts(rng), counts(rng), resamples=500)
    assert interval.low < 0 < interval.high and interval.verdict == NOISE


def test_a_shifted_arm_is_above_zero_and_the_reference_below():
    rng = np.random.default_rng(2)
    reference = counts(rng)
    better = reference.copy()
    better[..., 0] = np.minimum(better[..., 1], np.round(better[..., 0] * 1.1))  # every intersection up by 10%
    up, down = paired_bootstrap(better, reference, resamples=500), paired_bootstrap(reference, better, resamples=500)
    assert up.verdict == ABOVE and 0 < up.low <= up.gain <= up.high
    assert down.verdict == BELOW and down.gain == pytest.approx(-up.gain)
    assert format_interval(up).startswith(f"{up.gain:+.3f} [")


def test_the_same_seed_gives_the_same_interval_and_shapes_must_pair():
    rng = np.random.default_rng(3)
    a, b = counts(rng), counts(rng)
    assert paired_bootstrap(a, b, resamples=200, seed=5) == paired_bootstrap(a, b, resamples=200, seed=5)
    with pytest.raises(ValueError, match="paired scores must both be"):
        paired_bootstrap(a, b[:, :10])


def test_blocks_share_each_resamples_draw_of_seeds_and_images():
    rng = np.random.default_rng(4)
    arm, reference = counts(rng, images=30), counts(rng, images=30)
    one = paired_bootstrap(arm, reference, resamples=100, seed=7)
    assert blocked_bootstrap(arm[None], reference[None], resamples=100, seed=7) == one
    # two copies of a block: the same draws for both, so the mean of their gains is the one block's, resample by
    # resample
    twice = blocked_bootstrap(np.stack([arm, arm]), np.stack([reference, reference]), resamples=100, seed=7)
    assert twice == pytest.approx(one)

    # the multiplicity matrix gives what drawing the images and summing their counts gives
    second = counts(rng, images=30, hit=0.6)
    arms, references = np.stack([arm, second]), np.stack([reference, reference])  # (B=2, S, N, C, 2)
    draws = np.random.default_rng(9)
    seeds_drawn = draws.integers(0, 3, size=(40, 3))  # (R, S)
    images_drawn = draws.integers(0, 30, size=(40 * 3, 30)).reshape(40, 3, 30)  # (R, S, N)
    picked = (slice(None), seeds_drawn[..., None], images_drawn)
    gathered = [miou_of_counts(x.transpose(1, 2, 0, 3, 4)[picked[1:]].sum(2)).mean(1) for x in (arms, references)]
    by_hand = (gathered[0] - gathered[1]).mean(-1)  # (R,)
    low, high = np.quantile(by_hand, [0.025, 0.975])
    fast = blocked_bootstrap(arms, references, resamples=40, seed=9)
    assert (fast.low, fast.high) == (pytest.approx(low), pytest.approx(high))
    gains = [paired_bootstrap(a, reference, resamples=1).gain for a in (arm, second)]
    assert fast.gain == pytest.approx(np.mean(gains))
    with pytest.raises(ValueError, match="paired blocks must both be"):
        blocked_bootstrap(arm, reference)


def test_an_arms_own_score_gets_the_interval_of_its_resamples():
    rng = np.random.default_rng(6)
    scores = counts(rng, hit=0.6)
    level = level_interval(scores[None], resamples=400)
    assert level.gain == pytest.approx(miou_of_counts(scores.sum(1)).mean())  # mean over seeds of each seed's score
    assert 0.5 < level.low < level.gain < level.high < 0.7 and level.verdict == ABOVE
    # every image alike and one seed: every resample scores the same, so the interval is the score itself
    alike = np.repeat(scores[:1, :1], 40, axis=1)
    fixed = level_interval(alike[None], resamples=50)
    assert fixed.low == pytest.approx(fixed.gain) and fixed.high == pytest.approx(fixed.gain)
    assert fixed.gain == pytest.approx(miou_of_counts(scores[0, 0]))
    # two pooled arms (blocks): the mean of their scores; the interval spans both arms' spread
    other = counts(rng, hit=0.4)
    pooled = level_interval(np.stack([scores, other]), resamples=400)
    assert pooled.gain == pytest.approx((level.gain + miou_of_counts(other.sum(1)).mean()) / 2)
