"""The labelled stages' decoded-once cache: exact evaluation pixels, reuse, extension, rebuild when the source
changes, refusal when damaged, nothing left behind on a full disk; and the pipeline choice."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from simseg.data import labelled_cache
from simseg.data.labelled_batches import CachedEvalSet, CachedLabelledBatches, choose_pipeline, keep_batch
from simseg.data.labelled_cache import CacheSpec, cache_folder, ensure_labelled_cache, open_labelled_cache
from simseg.data.loaders import TransformedPairs
from simseg.data.pair_batch_augment import PairBatchAugment
from simseg.data.pair_transforms import seg_eval_transform
from simseg.data.pets import OxfordPetsSource
from simseg.data.scenes import LabelledDataset, folder_images
from simseg.data.transforms import eval_transform
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


def test_evaluation_pixels_equal_the_per_image_path(pets, tmp_path):
    cache = ensure_labelled_cache(pets, [0, 2, 3, 5], SPEC, tmp_path / "cache", progress=False, say=quiet)
    items = [5, 0, 3]
    cached = CachedEvalSet(cache, items, MEAN, STD)
    per_image = TransformedPairs(pets, items, seg_eval_transform(32, MEAN, STD))
    images, masks = next(iter(DataLoader(cached, batch_size=3, collate_fn=keep_batch)))
    for i in range(3):
        image, mask = per_image[i]
        torch.testing.assert_close(images[i], image, rtol=0, atol=1e-6)
        assert torch.equal(masks[i], mask)
        torch.testing.assert_close(cached[i][0], image, rtol=0, atol=1e-6)
    assert cache.arrays["sizes"][cache.rows([5])[0]].tolist() == [24 + 15, 30 + 35]  # original (height, width)


def test_classification_evaluation_pixels_equal_the_per_image_path(tmp_path):
    write_images(tmp_path / "train" / "a", ["x.jpg", "y.png"], size=(50, 30))
    write_images(tmp_path / "train" / "b", ["z.jpg"], size=(20, 44), seed=1)
    source = folder_images(tmp_path / "train")
    spec = CacheSpec(40, 32, "shorter_crop", masks=False)
    cache = ensure_labelled_cache(source, [0, 1, 2], spec, tmp_path / "cache", progress=False, say=quiet)
    cached = CachedEvalSet(cache, [2, 0], MEAN, STD, labels=source.labels)
    per_image = LabelledDataset(source, [2, 0], eval_transform(32, MEAN, STD))
    for i in range(2):
        torch.testing.assert_close(cached[i][0], per_image[i][0], rtol=0, atol=1e-6)
        assert int(cached[i][1]) == int(per_image[i][1])


def test_reused_extended_and_rebuilt_when_the_source_changes(pets, tmp_path, monkeypatch):
    root, lines = tmp_path / "cache", []
    first = ensure_labelled_cache(pets, [1, 2], SPEC, root, progress=False, say=lines.append)
    decoded = []
    real = labelled_cache._Decoded.__getitem__
    monkeypatch.setattr(labelled_cache._Decoded, "__getitem__", lambda self, i: decoded.append(self.items[i])
                        or real(self, i))
    again = ensure_labelled_cache(pets, [2], SPEC, root, progress=False, say=lines.append)
    assert "reused" in lines[-1] and decoded == [] and len(again) == 2
    bigger = ensure_labelled_cache(pets, [0, 2, 4], SPEC, root, progress=False, say=lines.append)
    assert decoded == [0, 4], "only the items it lacked are decoded; the others are copied"
    assert bigger.items.tolist() == [0, 1, 2, 4]
    np.testing.assert_array_equal(bigger.arrays["images"][bigger.rows([1, 2])], first.arrays["images"])

    # a replaced photo changes the fingerprint (size and modification time): the cache is rebuilt, not reused
    photo = pets.image_files[2]
    write_pair(pets.root, "breed_2", size=(33, 33))
    os.utime(photo, ns=(1, 1))
    changed = OxfordPetsSource(pets.root)
    rebuilt = ensure_labelled_cache(changed, [2], SPEC, root, progress=False, say=lines.append)
    assert "changed since it was built; rebuilding" in lines[-2]
    assert rebuilt.items.tolist() == [2] and rebuilt.arrays["sizes"][0].tolist() == [33, 33]
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) == [cache_folder(root, pets,
                                                                                                   SPEC).name]


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_a_damaged_cache_is_refused_in_one_line(pets, tmp_path, damage):
    cache = ensure_labelled_cache(pets, [0, 1, 2], SPEC, tmp_path / "cache", progress=False, say=quiet)
    path = cache.path
    del cache
    if damage == "truncate":
        with open(path / "images.npy", "r+b") as file:
            file.truncate(os.path.getsize(path / "images.npy") - 100)
    elif damage == "flip":
        data = bytearray((path / "masks.npy").read_bytes())
        data[-1] ^= 0xFF
        (path / "masks.npy").write_bytes(bytes(data))
    else:
        (path / "labelled.json").write_text("{not json")
    with pytest.raises(SimsegError, match=r"the data cache .* is damaged .*delete .* to rebuild it, or set "
                                          r"data.pipeline=per_image") as err:
        ensure_labelled_cache(pets, [0], SPEC, tmp_path / "cache", progress=False, say=quiet)
    assert "\n" not in str(err.value)
    with pytest.raises(SimsegError, match="damaged"):
        open_labelled_cache(path)


def test_a_full_disk_leaves_nothing_behind(pets, tmp_path, monkeypatch):
    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(labelled_cache.os, "posix_fallocate", full, raising=False)
    monkeypatch.setattr(labelled_cache.os, "replace", full)
    root = tmp_path / "cache"
    with pytest.raises(SimsegError, match=r"disk full while writing the data cache .*nothing was left behind"):
        ensure_labelled_cache(pets, [0, 1], SPEC, root, progress=False, say=quiet)
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []


def test_training_batches_come_from_the_cache(pets, tmp_path):
    cache = ensure_labelled_cache(pets, range(6), SPEC, tmp_path / "cache", progress=False, say=quiet)
    augment = PairBatchAugment(24, (0.5, 1.0), (3 / 4, 4 / 3), 0.5, (0.4, 0.4, 0.4, 0.1), 0.8, MEAN, STD)
    batches = CachedLabelledBatches(cache, augment, torch.device("cpu"))
    batches.manual_seed(3)
    images, masks = batches(torch.tensor([4, 1, 5]))
    assert images.shape == (3, 3, 24, 24) and images.dtype == torch.float32
    assert masks.shape == (3, 24, 24) and masks.dtype == torch.int64 and set(masks.unique().tolist()) <= {0, 1, 2}
    batches.manual_seed(3)
    again, again_masks = batches(torch.tensor([4, 1, 5]))
    assert torch.equal(images, again) and torch.equal(masks, again_masks), "the seed reproduces a batch"


def test_the_pipeline_choice():
    assert choose_pipeline("per_image", None, 0) == "per_image"
    assert choose_pipeline("batched", "per_image", 10**15) == "batched"
    assert choose_pipeline("auto", None, 10**6) == "batched"
    assert choose_pipeline("auto", None, 10**15) == "per_image", "a source that does not fit memory stays per image"
    assert choose_pipeline("auto", "batched", 10**15) == "batched", "a resumed run keeps what it started with"
    assert choose_pipeline("auto", "auto", 10**6) == "per_image", "a run folder from before the batched path"
    # a cache made by `simseg data cache` is batched under auto, also for a run folder from before
    assert choose_pipeline("auto", None, 10**15, source_is_cache=True) == "batched"
    assert choose_pipeline("auto", "auto", 10**15, source_is_cache=True) == "batched"
    assert choose_pipeline("per_image", None, 0, source_is_cache=True) == "per_image"


def test_the_description_names_the_spec(pets, tmp_path):
    cache = ensure_labelled_cache(pets, [0], SPEC, tmp_path / "cache", progress=False, say=quiet)
    meta = json.loads((cache.path / "labelled.json").read_text())
    assert meta["spec"] == {"train_size": 40, "eval_size": 32, "eval_op": "resize", "masks": True}
    assert meta["source"] == pets.name and meta["count"] == 1


def test_an_unreadable_image_stops_the_build_naming_the_file_and_leaves_nothing(pets, tmp_path):
    pets.image_files[3].write_bytes(b"not a jpeg")
    root = tmp_path / "cache"
    with pytest.raises(SimsegError, match=r"breed_3\.jpg") as err:
        ensure_labelled_cache(OxfordPetsSource(pets.root), range(6), SPEC, root, progress=False, say=quiet)
    assert "\n" not in str(err.value)
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []


def test_a_cache_dir_that_is_a_file_is_one_line(pets, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SimsegError, match="cannot create the data cache folder .*set data.cache_dir to a writable"):
        ensure_labelled_cache(pets, [0], SPEC, tmp_path / "file" / "cache", progress=False, say=quiet)
