"""Making image caches: exact evaluation pixels, reuse, extension, rebuild when the source changes (for every kind of
source, through its own fingerprint), rebuild of an older simseg's cache, refusal when damaged, nothing left behind
on a full disk or an unreadable image; and ``simseg data cache``'s whole-source caches."""

from __future__ import annotations

import errno
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from simseg.config.pretrain import PretrainDataConfig
from simseg.data import cache_build
from simseg.data.cache_build import build_cache, cache_folder, ensure_cache
from simseg.data.cached_batches import CachedEvalSet, keep_batch
from simseg.data.image_cache import CacheSpec, is_cache, open_cache
from simseg.data.loaders import TransformedItems
from simseg.data.pets import OxfordPetsSource
from simseg.data.scenes import folder_images
from simseg.data.sources import files_fingerprint, read_rgb
from simseg.data.transforms import eval_transform
from simseg.data.unlabelled import open_image_source
from simseg.errors import SimsegError
from tests.helpers import write_images, write_pair

SPEC = CacheSpec(train_size=40, eval_size=32, eval_op="resize", masks=True)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture
def pets(tmp_path):
    root = tmp_path / "pets"
    for i in range(6):  # different sizes and aspect ratios, as real photos
        write_pair(root, f"breed_{i}", size=(30 + 7 * i, 24 + 3 * i))
    return OxfordPetsSource(root)


def quiet(line):
    quiet.lines.append(line)


quiet.lines = []


def ensure(source, items, root, spec=SPEC, say=quiet):
    return ensure_cache(source, items, spec, root, progress=False, say=say)


def test_evaluation_pixels_equal_the_per_image_path(pets, tmp_path):
    cache = ensure(pets, [0, 2, 3, 5], tmp_path / "cache")
    items = [5, 0, 3]
    cached = CachedEvalSet(cache, items, MEAN, STD)
    per_image = TransformedItems(pets, items, eval_transform(32, MEAN, STD, "resize"), "masks")
    images, masks = next(iter(DataLoader(cached, batch_size=3, collate_fn=keep_batch)))
    for i in range(3):
        image, mask = per_image[i]
        torch.testing.assert_close(images[i], image, rtol=0, atol=1e-6)
        assert torch.equal(masks[i], mask)
        torch.testing.assert_close(cached[i][0], image, rtol=0, atol=1e-6)
    assert cache.arrays["sizes"][cache.rows([5])[0]].tolist() == [24 + 15, 30 + 35]  # original (height, width)


def test_classification_evaluation_pixels_and_labels_equal_the_per_image_path(tmp_path):
    write_images(tmp_path / "train" / "a", ["x.jpg", "y.png"], size=(50, 30))
    write_images(tmp_path / "train" / "b", ["z.jpg"], size=(20, 44), seed=1)
    source = folder_images(tmp_path / "train")
    spec = CacheSpec(40, 32, "shorter_crop", labels=True)
    cache = ensure(source, [0, 1, 2], tmp_path / "cache", spec)
    assert cache.arrays["labels"].tolist() == [0, 0, 1]
    cached = CachedEvalSet(cache, [2, 0], MEAN, STD)
    per_image = TransformedItems(source, [2, 0], eval_transform(32, MEAN, STD), "labels")
    for i in range(2):
        torch.testing.assert_close(cached[i][0], per_image[i][0], rtol=0, atol=1e-6)
        assert int(cached[i][1]) == int(per_image[i][1])


def test_reused_extended_and_rebuilt_when_the_source_changes(pets, tmp_path, monkeypatch):
    root, lines = tmp_path / "cache", []
    first = ensure(pets, [1, 2], root, say=lines.append)
    decoded = []
    real = cache_build._Decoded.__getitem__
    monkeypatch.setattr(cache_build._Decoded, "__getitem__", lambda self, i: decoded.append(self.items[i])
                        or real(self, i))
    again = ensure(pets, [2], root, say=lines.append)
    assert "reused" in lines[-1] and decoded == [] and len(again) == 2
    bigger = ensure(pets, [0, 2, 4], root, say=lines.append)
    assert decoded == [0, 4], "only the items it lacked are decoded; the others are copied"
    assert bigger.items.tolist() == [0, 1, 2, 4]
    np.testing.assert_array_equal(bigger.arrays["images"][bigger.rows([1, 2])], first.arrays["images"])

    # a replaced photo changes the fingerprint (size and modification time): the cache is rebuilt, not reused
    photo = pets.image_files[2]
    write_pair(pets.root, "breed_2", size=(33, 33))
    os.utime(photo, ns=(1, 1))
    changed = OxfordPetsSource(pets.root)
    rebuilt = ensure(changed, [2], root, say=lines.append)
    assert "changed since it was built; rebuilding" in lines[-2]
    assert rebuilt.items.tolist() == [2] and rebuilt.arrays["sizes"][0].tolist() == [33, 33]
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) == [cache_folder(root, pets,
                                                                                                   SPEC).name]


class NumpyImages:
    """A kind of source the cache code has never seen: images stored as .npy arrays, one file each. It identifies
    itself only through the protocol's ``fingerprint``, with no attribute the cache could probe."""

    def __init__(self, folder: Path):
        self.name, self._paths = str(folder), sorted(folder.glob("*.npy"))

    def __len__(self) -> int:
        return len(self._paths)

    def image(self, index: int) -> Image.Image:
        return Image.fromarray(np.load(self._paths[index]))

    def fingerprint(self) -> str:
        return files_fingerprint(self._paths)


def test_a_new_kind_of_source_is_rebuilt_when_one_of_its_files_changes(tmp_path):
    folder = tmp_path / "arrays"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        np.save(folder / f"{i}.npy", rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))
    spec, lines = CacheSpec(16), []
    before = ensure(NumpyImages(folder), [0, 1, 2], tmp_path / "cache", spec, lines.append)
    old_pixels = np.array(before.arrays["images"][1])
    ensure(NumpyImages(folder), [1], tmp_path / "cache", spec, lines.append)
    assert "reused" in lines[-1], "an unchanged source reuses its cache"
    np.save(folder / "1.npy", np.zeros((20, 30, 3), dtype=np.uint8))  # one file replaced by another picture
    os.utime(folder / "1.npy", ns=(10**9, 10**9))
    after = ensure(NumpyImages(folder), [0, 1, 2], tmp_path / "cache", spec, lines.append)
    assert "changed since it was built; rebuilding" in lines[-2]
    assert (np.array(after.arrays["images"][1]) == 0).all() and not (old_pixels == 0).all()


def test_a_cache_of_an_older_simseg_is_rebuilt_saying_so(pets, tmp_path):
    root = tmp_path / "cache"
    folder = cache_folder(root, pets, SPEC)
    folder.mkdir(parents=True)  # what the automatic caches before this format held
    (folder / "labelled.json").write_text(json.dumps({"format": "simseg-labelled-cache", "version": 1}))
    np.save(folder / "images.npy", np.zeros((1, 40, 40, 3), np.uint8))
    lines = []
    cache = ensure(pets, [0, 1], root, say=lines.append)
    assert lines[0] == f"data cache {folder} was made by an older simseg; rebuilding it"
    assert len(cache) == 2 and not (folder / "labelled.json").exists() and is_cache(folder)


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_a_damaged_cache_is_refused_in_one_line(pets, tmp_path, damage):
    path = ensure(pets, [0, 1, 2], tmp_path / "cache").path
    if damage == "truncate":
        with open(path / "images.npy", "r+b") as file:
            file.truncate(os.path.getsize(path / "images.npy") - 100)
    elif damage == "flip":
        data = bytearray((path / "masks.npy").read_bytes())
        data[-1] ^= 0xFF
        (path / "masks.npy").write_bytes(bytes(data))
    else:
        (path / "cache.json").write_text("{not json")
    with pytest.raises(SimsegError, match=r"the data cache .* (is damaged|cannot be read) .*delete .* to rebuild "
                                          r"it, or set data.pipeline=per_image") as err:
        ensure(pets, [0], tmp_path / "cache")
    assert "\n" not in str(err.value)


def test_a_full_disk_leaves_nothing_behind(pets, tmp_path, monkeypatch):
    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_build.os, "posix_fallocate", full, raising=False)
    monkeypatch.setattr(cache_build.os, "replace", full)
    root = tmp_path / "cache"
    with pytest.raises(SimsegError, match=r"disk full while writing the data cache .*nothing was left behind"):
        ensure(pets, [0, 1], root)
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []


def test_the_description_names_the_spec_and_the_source(pets, tmp_path):
    cache = ensure(pets, [0], tmp_path / "cache")
    meta = json.loads((cache.path / "cache.json").read_text())
    assert meta["spec"] == {"train_size": 40, "eval_size": 32, "eval_op": "resize", "masks": True, "labels": False}
    assert meta["source"] == pets.name and meta["count"] == 1 and meta["fingerprint"] == pets.fingerprint()


def test_an_unreadable_image_stops_the_build_naming_the_file_and_leaves_nothing(pets, tmp_path):
    pets.image_files[3].write_bytes(b"not a jpeg")
    root = tmp_path / "cache"
    for workers in (0, 1):
        with pytest.raises(SimsegError, match=r"breed_3\.jpg") as err:
            ensure_cache(OxfordPetsSource(pets.root), range(6), SPEC, root, workers, progress=False, say=quiet)
        assert "\n" not in str(err.value)
        assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []


def test_a_cache_dir_that_is_a_file_is_one_line(pets, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SimsegError, match="cannot create the data cache folder .*set data.cache_dir to a writable"):
        ensure(pets, [0], tmp_path / "file" / "cache")


# --- simseg data cache: a whole source in a folder of its own ---------------------------------------------------------


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    root.mkdir()
    for i, (w, h) in enumerate([(40, 40), (50, 30), (17, 45), (12, 20)]):  # square, wide, tall, small
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (33, 28), dtype=np.uint8)).save(root / "grey.png")
    return open_image_source(PretrainDataConfig(source=str(root)), stream="pretrain")


def test_a_whole_source_cache_keeps_every_image_whole_with_its_size(folder, tmp_path):
    out = build_cache(folder, tmp_path / "cache", CacheSpec(24), progress=False)
    assert is_cache(out) and not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files
    cache = open_cache(out)
    assert len(cache) == 5 and cache.items.tolist() == list(range(5)) and cache.fingerprint()
    for i, path in enumerate(folder.files):
        original = read_rgb(path)
        assert cache.arrays["sizes"][i].tolist() == [original.height, original.width]
        assert cache.image(i).size == original.size and cache.image(i).mode == "RGB"  # a cache is a source too
    assert not cache.arrays["images"].flags.writeable


@pytest.mark.slow  # starts decoding processes: seconds, left to the full suite
def test_workers_decode_the_same_pixels_and_a_cache_pickles_by_path(folder, tmp_path):
    one = open_cache(build_cache(folder, tmp_path / "a", CacheSpec(24), progress=False))
    two = open_cache(build_cache(folder, tmp_path / "b", CacheSpec(24), workers=2, progress=False))
    np.testing.assert_array_equal(one.arrays["images"], two.arrays["images"])
    assert len(pickle.dumps(one)) < 1000 and pickle.loads(pickle.dumps(one)).path == one.path


def test_an_existing_cache_is_replaced_only_with_overwrite(folder, tmp_path):
    out = build_cache(folder, tmp_path / "cache", CacheSpec(24), progress=False)
    with pytest.raises(SimsegError, match="already holds an image cache: pass --overwrite") as err:
        build_cache(folder, out, CacheSpec(24), progress=False)
    assert "\n" not in str(err.value)
    build_cache(folder, out, CacheSpec(26), progress=False, overwrite=True)
    assert open_cache(out).spec.train_size == 26
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(SimsegError, match="a folder holding other files: choose a new or empty folder"):
        build_cache(folder, tmp_path / "other", CacheSpec(24), progress=False)


def test_a_full_disk_while_caching_a_source_leaves_nothing(folder, tmp_path, monkeypatch):
    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache_build.os, "posix_fallocate", full, raising=False)
    with pytest.raises(SimsegError, match=r"disk full while writing the data cache .*choose another --out"):
        build_cache(folder, tmp_path / "cache", CacheSpec(24), progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["images"]
