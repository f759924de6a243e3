import errno
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from simseg.config.pretrain import PretrainDataConfig
from simseg.data import cache
from simseg.data.cache import build_cache, cache_memory_bytes, gather, is_cache, open_cache
from simseg.data.unlabelled import open_image_source
from simseg.errors import SimsegError

SIZE = 24
# (width, height): square, wide, tall, smaller than the cache size; plus a greyscale image
SHAPES = [(40, 40), (50, 30), (17, 45), (12, 20)]


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    root.mkdir()
    for i, (w, h) in enumerate(SHAPES):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (33, 28), dtype=np.uint8)).save(root / "grey.png")
    return root


def source_of(folder):
    return open_image_source(PretrainDataConfig(source=str(folder)), stream="pretrain")


def expected(source, i):
    """What eval_transform does before normalising: (S, S, 3) uint8."""
    resize = v2.Compose([v2.PILToTensor(), v2.Resize(SIZE, antialias=True), v2.CenterCrop(SIZE)])
    return resize(source.image(i)).permute(1, 2, 0).numpy()


def test_round_trip_matches_resize_and_centre_crop(folder, tmp_path):
    source = source_of(folder)
    out = build_cache(source, tmp_path / "cache", size=SIZE, progress=False)
    assert is_cache(out) and sorted(p.name for p in out.iterdir()) == ["cache.json", "images.npy"]  # no temp files
    images = open_cache(out)
    assert len(images) == len(source) == 5 and images.size == SIZE and images.source == source.name
    assert images.array.shape == (5, SIZE, SIZE, 3) and not images.array.flags.writeable
    assert json.loads((out / "cache.json").read_text())["layout"] == "NHWC uint8 RGB"
    for i in range(len(source)):
        np.testing.assert_array_equal(images.array[i], expected(source, i))
        np.testing.assert_array_equal(np.asarray(images.image(i)), expected(source, i))
        assert images.image(i).mode == "RGB"


def test_batch_returns_the_requested_order(folder, tmp_path):
    images = open_cache(build_cache(source_of(folder), tmp_path / "cache", size=SIZE, progress=False))
    order = [3, 0, 4, 3, 1]
    for indices in (torch.tensor(order), np.array(order)):
        batch = images.batch(indices)
        assert batch.shape == (5, 3, SIZE, SIZE) and batch.dtype == torch.uint8
        for row, i in zip(batch, order):
            assert torch.equal(row, torch.from_numpy(np.array(images.array[i])).permute(2, 0, 1))
    resident = images.to_tensor("cpu")
    assert resident.shape == (5, SIZE, SIZE, 3) and torch.equal(gather(resident, torch.tensor(order)),
                                                                images.batch(order))


def test_workers_decode_the_same_pixels_and_cache_pickles_by_path(folder, tmp_path):
    import pickle

    one = open_cache(build_cache(source_of(folder), tmp_path / "a", size=SIZE, progress=False))
    two = open_cache(build_cache(source_of(folder), tmp_path / "b", size=SIZE, workers=2, progress=False))
    assert np.array_equal(one.array, two.array)
    assert len(pickle.dumps(one)) < 1000 and np.array_equal(pickle.loads(pickle.dumps(one)).array, one.array)


def test_existing_cache_is_refused_without_overwrite(folder, tmp_path):
    out = build_cache(source_of(folder), tmp_path / "cache", size=SIZE, progress=False)
    with pytest.raises(SimsegError, match="already holds an image cache: pass --overwrite") as err:
        build_cache(source_of(folder), out, size=SIZE, progress=False)
    assert "\n" not in str(err.value)
    build_cache(source_of(folder), out, size=SIZE + 2, progress=False, overwrite=True)
    assert open_cache(out).size == SIZE + 2


@pytest.mark.parametrize("damage, message", [
    (lambda out: (out / "cache.json").write_text("{not json"), "cannot be read"),
    (lambda out: (out / "cache.json").write_text('{"format": "something-else"}'), "is not a simseg-uint8-cache"),
    (lambda out: (out / "images.npy").write_bytes((out / "images.npy").read_bytes()[:1000]), "cannot be mapped"),
    (lambda out: np.save(out / "images.npy", np.zeros((2, SIZE, SIZE, 3), np.uint8)), "but cache.json says"),
])
def test_damaged_cache_is_refused_in_one_line(folder, tmp_path, damage, message):
    out = build_cache(source_of(folder), tmp_path / "cache", size=SIZE, progress=False)
    damage(out)
    with pytest.raises(SimsegError, match=message) as err:
        open_cache(out)
    assert "\n" not in str(err.value) and str(out) in str(err.value) and "simseg data cache" in str(err.value)


def test_corrupt_image_fails_in_one_line_and_leaves_nothing(folder, tmp_path):
    (folder / "broken.png").write_bytes(b"not a png")
    for workers in (0, 1):
        with pytest.raises(SimsegError, match=r"broken.png cannot be read") as err:
            build_cache(source_of(folder), tmp_path / "cache", size=SIZE, workers=workers, progress=False)
        assert "\n" not in str(err.value) and not (tmp_path / "cache").exists()


def test_disk_full_leaves_no_partial_cache(folder, tmp_path, monkeypatch):
    out = tmp_path / "cache"
    out.mkdir()
    calls = []

    def fill_disk(file, rows):
        calls.append(len(rows))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache, "_append", fill_disk)
    with pytest.raises(SimsegError, match="disk full while writing the image cache") as err:
        build_cache(source_of(folder), out, size=SIZE, progress=False)
    assert calls and "\n" not in str(err.value) and list(out.iterdir()) == []


def test_memory_bytes():
    assert cache_memory_bytes(1000, 144) == 1000 * 144 * 144 * 3
