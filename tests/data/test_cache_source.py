"""``cache_source``, what ``simseg data cache`` runs: a whole image source decoded once into a cache (less what an
exclude file names), its side a quarter more than the image size unless given, an existing cache replaced only when
asked, and one-line refusals. The images differ in width, so the cache's recorded original sizes say which it holds."""

from __future__ import annotations

import numpy as np
import pytest

from simseg.config.pretrain import PretrainDataConfig
from simseg.data.cache_build import SourceCache, cache_source
from simseg.data.image_cache import CacheSpec, ImageCache, cache_side, open_cache
from simseg.data.unlabelled import open_image_source
from simseg.errors import SimsegError
from tests.helpers import write_images

WIDTHS = {f"photo_{i}": 30 + i for i in range(5)}  # name -> width; every image is 20 pixels high


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    for seed, (name, width) in enumerate(WIDTHS.items()):
        write_images(folder, [f"{name}.png"], size=(width, 20), seed=seed)
    return folder


def original_sizes(cache: ImageCache) -> list[tuple[int, int]]:
    return sorted(tuple(size) for size in cache.arrays["sizes"].tolist())  # (height, width) of each cached image


def test_every_image_is_cached_at_a_quarter_more_than_the_image_size(photos, tmp_path):
    out = tmp_path / "cache"
    result = cache_source(str(photos), out, img_size=32)
    assert result[:3] == (out, len(WIDTHS), cache_side(32)) and not result.excluded
    cache = open_cache(out)
    assert cache.spec == CacheSpec(cache_side(32)) and cache.arrays["images"].shape == (5, 40, 40, 3)
    assert original_sizes(cache) == [(20, width) for width in sorted(WIDTHS.values())]
    # the cache is itself a data.source, giving back images of the originals' sizes
    source = open_image_source(PretrainDataConfig(source=str(out)), stream="pretrain")
    assert isinstance(source, ImageCache) and sorted(source.image(i).size[0] for i in range(5)) == sorted(
        WIDTHS.values())


def test_what_the_exclude_file_names_is_never_cached(photos, tmp_path):
    exclude = tmp_path / "test_images.txt"
    exclude.write_text("photo_1\nphoto_3\nnot_in_the_folder\n")
    result = cache_source(str(photos), tmp_path / "cache", img_size=32, exclude=str(exclude))
    assert result.images == 3
    assert (result.excluded["listed"], result.excluded["excluded"]) == (3, 2)
    assert result.excluded["excluded_names"] == ["photo_1", "photo_3"]
    kept = [width for name, width in WIDTHS.items() if name not in ("photo_1", "photo_3")]
    assert original_sizes(open_cache(tmp_path / "cache")) == [(20, width) for width in kept]


def test_an_existing_cache_is_replaced_only_with_overwrite(photos, tmp_path):
    out = tmp_path / "cache"
    cache_source(str(photos), out, img_size=32)
    with pytest.raises(SimsegError, match="already holds an image cache: pass --overwrite to rebuild it"):
        cache_source(str(photos), out, img_size=32, size=24)
    assert open_cache(out).spec == CacheSpec(40)  # the refused call left the cache as it was
    assert cache_source(str(photos), out, img_size=32, size=24, overwrite=True) == SourceCache(out, 5, 24, None)
    assert open_cache(out).spec == CacheSpec(24) and len(open_cache(out)) == 5


def test_decoding_in_a_worker_process_caches_the_same_pixels(photos, tmp_path):
    cache_source(str(photos), tmp_path / "here", img_size=32, workers=0)
    cache_source(str(photos), tmp_path / "worker", img_size=32, workers=1)
    here, worker = open_cache(tmp_path / "here"), open_cache(tmp_path / "worker")
    assert all(np.array_equal(here.arrays[name], worker.arrays[name]) for name in ("images", "sizes", "items"))


def test_bad_sizes_a_missing_source_and_an_occupied_out_are_one_line(photos, tmp_path):
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "notes.txt").write_text("mine")
    cases = [
        (dict(source=str(photos), size=-1), "--size -1 and --img-size 128 must be positive numbers of pixels"),
        (dict(source=str(photos), size=0), "--size 0 and --img-size 128 must be positive numbers of pixels"),
        (dict(source=str(photos), img_size=0), "--img-size 0 must be positive"),
        (dict(source=str(tmp_path / "nowhere")), "nowhere does not exist"),
        (dict(source=str(photos), out=tmp_path / "occupied"), "is a file or a folder holding other files"),
    ]
    for arguments, message in cases:
        with pytest.raises(SimsegError, match=message) as err:
            cache_source(**{"out": tmp_path / "cache", **arguments})
        assert "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists() and [p.name for p in (tmp_path / "occupied").iterdir()] == ["notes.txt"]
