"""Reading image caches: what a spec stores, refusal of a damaged cache in one line, and caches written by
``simseg data cache`` before this format, which are read as they are."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simseg.config.pretrain import PretrainDataConfig
from simseg.data.cache_build import build_cache
from simseg.data.image_cache import CacheSpec, ImageCache, cache_side, is_cache, open_cache
from simseg.data.sources import SyntheticSource
from simseg.data.unlabelled import open_image_source
from simseg.errors import SimsegError


def test_a_spec_stores_what_its_stage_needs():
    assert set(CacheSpec(160).shapes(2)) == {"images", "sizes", "items"}
    seg = CacheSpec(160, 128, "resize", masks=True)
    assert set(seg.shapes(2)) == {"images", "sizes", "items", "masks", "eval_images", "eval_masks"}
    assert set(CacheSpec(160, 128, labels=True).shapes(2)) == {"images", "sizes", "items", "labels", "eval_images"}
    assert seg.row_bytes() == 160 * 160 * 4 + 128 * 128 * 4 + 2 * 4 + 8
    assert cache_side(128) == 160


@pytest.fixture
def cache_dir(tmp_path):
    return build_cache(SyntheticSource(4, seed=1, size=40), tmp_path / "cache", CacheSpec(24), progress=False)


@pytest.mark.parametrize("damage, message", [
    (lambda out: (out / "cache.json").write_text("{not json"), "cannot be read"),
    (lambda out: (out / "cache.json").write_text('{"format": "something-else", "version": 1, "spec": {}}'),
     "cannot be read"),
    (lambda out: (out / "images.npy").write_bytes((out / "images.npy").read_bytes()[:1000]), "damaged"),
    (lambda out: np.save(out / "images.npy", np.zeros((2, 24, 24, 3), np.uint8)), "images.npy differs"),
    (lambda out: (out / "sizes.npy").unlink(), r"damaged \(sizes.npy"),
])
def test_a_damaged_cache_is_refused_in_one_line_naming_the_fix(cache_dir, damage, message):
    damage(cache_dir)
    with pytest.raises(SimsegError, match=message) as err:
        open_cache(cache_dir)
    assert "\n" not in str(err.value) and str(cache_dir) in str(err.value) and "simseg data cache" in str(err.value)


def legacy_cache(folder, count=3, size=20):
    """What `simseg data cache` wrote before this format: centre squares in images.npy and a cache.json."""
    folder.mkdir()
    squares = np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    np.save(folder / "images.npy", squares)
    (folder / "cache.json").write_text(json.dumps({
        "format": "simseg-uint8-cache", "version": 1, "count": count, "size": size, "source": "/data/photos",
        "layout": "NHWC uint8 RGB", "resize": "shorter side to size (bilinear, antialias), centre crop"}))
    return squares


def test_a_cache_of_an_older_simseg_is_read_as_it_is_saying_so(tmp_path):
    squares = legacy_cache(tmp_path / "old")
    assert is_cache(tmp_path / "old")
    source = open_image_source(PretrainDataConfig(source=str(tmp_path / "old")), stream="pretrain")
    assert isinstance(source, ImageCache) and len(source) == 3
    np.testing.assert_array_equal(source.arrays["images"], squares)
    assert source.arrays["sizes"].tolist() == [[20, 20]] * 3  # crops are drawn from the squares, as before
    np.testing.assert_array_equal(np.asarray(source.image(1)), squares[1])
    assert "older simseg" in source.note and "\n" not in source.note and "--overwrite" in source.note
    np.save(tmp_path / "old" / "images.npy", squares[:2])
    with pytest.raises(SimsegError, match="damaged"):
        open_cache(tmp_path / "old")
