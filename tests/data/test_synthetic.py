"""Tests of the synthetic dataset: determinism, encodings, the trimap's band geometry and the images' structure."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from simseg.data.synthetic import SHAPE_CLASSES, SyntheticSample, make_sample
from simseg.errors import SimsegError

N = 120


@pytest.fixture(scope="module")
def samples() -> list[SyntheticSample]:
    return [make_sample(0, i) for i in range(N)]


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Chessboard dilation: pixels within ``radius`` (max-norm) of a True pixel; outside the image counts as False."""
    out = mask.copy()
    for _ in range(radius):
        rows = out.copy()
        rows[1:] |= out[:-1]
        rows[:-1] |= out[1:]
        out = rows.copy()
        out[:, 1:] |= rows[:, :-1]
        out[:, :-1] |= rows[:, 1:]
    return out


def away_from_border(shape: tuple[int, int], margin: int) -> np.ndarray:
    inner = np.zeros(shape, dtype=bool)
    inner[margin:-margin, margin:-margin] = True
    return inner


def reaches_border(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` 4-connected inside ``mask`` to the image border (a flood fill)."""
    seen = np.zeros_like(mask)
    seen[[0, -1], :], seen[:, [0, -1]] = mask[[0, -1], :], mask[:, [0, -1]]
    while True:
        grown = dilate(seen, 1) & mask  # 8-neighbourhood growth; the trimap band keeps it from leaking diagonally
        if (grown == seen).all():
            return seen
        seen = grown


def test_shape_classes() -> None:
    assert len(SHAPE_CLASSES) == 6 and len(set(SHAPE_CLASSES)) == 6
    assert all(isinstance(name, str) for name in SHAPE_CLASSES)


def test_deterministic_and_pure() -> None:
    a = make_sample(3, 7)
    np.random.seed(123)  # the global generator must neither matter ...
    make_sample(3, 8)
    assert np.random.rand() == np.random.RandomState(123).rand()  # ... nor be consumed
    b = make_sample(3, 7)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.trimap.tobytes() == b.trimap.tobytes()
    assert a.label == b.label and isinstance(a.label, int)


def test_different_index_or_seed_gives_different_images() -> None:
    base = make_sample(5, 0).image
    assert not np.array_equal(base, make_sample(5, 1).image)
    assert not np.array_equal(base, make_sample(6, 0).image)
    # not merely a shifted noise field: the images differ a lot
    assert np.abs(base.astype(int) - make_sample(5, 1).image).mean() > 20


def test_dtypes_shapes_and_value_sets(samples: list[SyntheticSample]) -> None:
    for s in samples:
        assert s.image.shape == (160, 160, 3) and s.image.dtype == np.uint8
        assert s.trimap.shape == (160, 160) and s.trimap.dtype == np.uint8
        assert set(np.unique(s.trimap).tolist()) == {1, 2, 3}
        assert 0 <= s.label < len(SHAPE_CLASSES)


def test_band_separates_foreground_from_background(samples: list[SyntheticSample]) -> None:
    for s in samples + [make_sample(1, i, boundary_width=1) for i in range(30)]:
        fg, bg = s.trimap == 1, s.trimap == 2
        assert not (fg[:, :-1] & bg[:, 1:]).any() and not (bg[:, :-1] & fg[:, 1:]).any()
        assert not (fg[:-1] & bg[1:]).any() and not (bg[:-1] & fg[1:]).any()


@pytest.mark.parametrize("boundary_width", [1, 3, 5])
def test_band_is_about_twice_boundary_width_wide(boundary_width: int) -> None:
    for i in range(25):
        trimap = make_sample(2, i, boundary_width=boundary_width).trimap
        fg, bg, band = trimap == 1, trimap == 2, trimap == 3
        # |d| < w on both sides: foreground and background pixels are at least 2w apart (Euclidean) ...
        assert not (dilate(fg, boundary_width) & bg).any()
        # ... and no band pixel is more than about 2w from a non-band pixel (except where the image cuts the band)
        inner = away_from_border(trimap.shape, 2 * boundary_width + 2)
        assert not (band & inner & ~dilate(~band, 2 * boundary_width + 1)).any()


def test_boundary_is_a_small_fraction(samples: list[SyntheticSample]) -> None:
    fractions = np.array([(s.trimap == 3).mean() for s in samples])
    assert fractions.max() < 0.25 and fractions.min() > 0.005


def test_boundary_width_argument_scales_the_band() -> None:
    def band_pixels(width: int) -> int:
        return sum(int((make_sample(4, i, boundary_width=width).trimap == 3).sum()) for i in range(12))

    counts = {width: band_pixels(width) for width in (1, 3, 6)}
    assert 2.2 < counts[3] / counts[1] < 3.8
    assert 1.6 < counts[6] / counts[3] < 2.4


def test_every_class_appears(samples: list[SyntheticSample]) -> None:
    counts = Counter(s.label for s in samples)
    assert set(counts) == set(range(len(SHAPE_CLASSES)))
    assert min(counts.values()) >= 8  # uniform draws: about 20 each


def test_the_class_decides_the_form() -> None:
    # only a ring can enclose background; other forms are star-shaped, so all their background reaches the border
    enclosed = {name: [] for name in SHAPE_CLASSES}
    for i in range(90):
        s = make_sample(8, i, size=64, boundary_width=2)
        bg = s.trimap == 2
        enclosed[SHAPE_CLASSES[s.label]].append(bool((bg & ~reaches_border(bg)).any()))
    assert len(enclosed["ring"]) >= 5 and np.mean(enclosed["ring"]) >= 0.5
    assert not any(any(flags) for name, flags in enclosed.items() if name != "ring")


def test_structure(samples: list[SyntheticSample]) -> None:
    for s in samples:
        foreground = (s.trimap != 2).mean()  # the shape with its band
        assert 0.08 < foreground < 0.65
        assert (s.trimap == 1).mean() > 0.03
        assert s.image.std() > 20  # not flat
        background = s.image[s.trimap == 2].astype(np.float32)
        assert background.std() > 15  # textured and cluttered
        # fine detail in the background too (gratings, clutter edges, noise), not only smooth colour gradients
        dx = np.abs(np.diff(s.image.astype(np.float32), axis=1)).mean(axis=2)
        assert dx[(s.trimap == 2)[:, 1:] & (s.trimap == 2)[:, :-1]].mean() > 2


@pytest.mark.parametrize(("size", "boundary_width"), [(32, 1), (32, 3), (64, 2), (96, 6), (224, 5)])
def test_size_and_boundary_width_are_respected(size: int, boundary_width: int) -> None:
    for i in range(15):
        s = make_sample(9, i, size=size, boundary_width=boundary_width)
        assert s.image.shape == (size, size, 3) and s.trimap.shape == (size, size)
        assert set(np.unique(s.trimap).tolist()) == {1, 2, 3}
        fg, bg = s.trimap == 1, s.trimap == 2
        assert not (dilate(fg, boundary_width) & bg).any()


@pytest.mark.parametrize(("seed", "index", "size", "boundary_width"), [(0, 0, 16, 1), (0, 0, 160, 0), (0, 0, 160, 17),
                                                                     (-1, 0, 160, 3), (0, -1, 160, 3)])
def test_bad_arguments_are_rejected(seed: int, index: int, size: int, boundary_width: int) -> None:
    with pytest.raises(SimsegError):
        make_sample(seed, index, size=size, boundary_width=boundary_width)
