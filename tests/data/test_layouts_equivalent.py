"""The same synthetic 7-class images written in every layout (``simseg data synthetic``) reach training as the same
data: the automatic image cache holds byte-identical arrays for the mask folder, palette and colour PNGs and the
datasets dataset, equal to the cache of the in-memory synthetic source they were written from; the segment stage's
batched path draws identical training batches from any two of them for one seed; binary 0/255 masks read through
``data.label_map=0:0,255:1`` give the same images with the 7 classes collapsed to shape against background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from simseg.config.loader import load_config
from simseg.config.segment import SegmentConfig
from simseg.data.cache_build import ensure_cache
from simseg.data.image_cache import CacheSpec, cache_side
from simseg.data.mask_survey import survey_masks
from simseg.data.pair_sources import open_segmentation_pairs
from simseg.data.splits import segmentation_splits
from simseg.data.synthetic_export import write_synthetic
from simseg.data.synthetic_pairs import SyntheticPairsSource
from simseg.training.data_path import DataPath
from simseg.training.stage_steps import epochs

COUNT, SIZE, SEED, IMG = 12, 48, 3, 32
SPEC = CacheSpec(cache_side(IMG), IMG, "resize", masks=True)  # what the segment stage asks of its cache
ARRAYS = ("images", "masks", "eval_images", "eval_masks", "sizes")
SEVEN = ("mask-folder", "palette", "colour", "hf")
BINARY = "data.label_map=0:0,255:1"


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layouts")
    return {layout: write_synthetic(root / layout, layout, COUNT, SIZE, SEED) for layout in (*SEVEN, "binary")}


@pytest.fixture(scope="module")
def truth(tmp_path_factory) -> dict[str, np.ndarray]:
    """The cache's arrays for the source the layouts were written from."""
    source = SyntheticPairsSource(COUNT, SEED, SIZE, "shapes")
    cache = ensure_cache(source, range(COUNT), SPEC, tmp_path_factory.mktemp("truth"), progress=False,
                         say=lambda line: None)
    return {name: np.array(cache.arrays[name]) for name in ARRAYS}


def config(data: Path, out: Path, *overrides: str) -> SegmentConfig:
    return load_config(SegmentConfig, None, [f"data.source={data}", f"output_dir={out}", "model.depth=2",
                                             f"model.img_size={IMG}", "model.patch_size=16", "data.test_size=3",
                                             "data.num_workers=0", "train.batch_size=4", "log.progress=false",
                                             *overrides])


def cached(data: Path, out: Path, *overrides: str) -> dict[str, np.ndarray]:
    source = open_segmentation_pairs(config(data, out, *overrides).data)
    cache = ensure_cache(source, range(COUNT), SPEC, out, progress=False, say=lambda line: None)
    assert cache.spec == SPEC and cache.items.tolist() == list(range(COUNT))
    return {name: np.array(cache.arrays[name]) for name in ARRAYS}


@pytest.mark.parametrize("layout", SEVEN)
def test_every_layout_caches_the_bytes_of_the_source_it_was_written_from(written, truth, layout, tmp_path):
    arrays = cached(written[layout], tmp_path)
    for name in ARRAYS:
        assert arrays[name].dtype == truth[name].dtype and np.array_equal(arrays[name], truth[name]), name
    assert truth["masks"].shape == (COUNT, cache_side(IMG), cache_side(IMG))
    assert set(np.unique(truth["masks"]).tolist()) == set(range(7)), "every class reaches the cache"


def test_binary_masks_cache_the_seven_classes_collapsed_to_shape_and_background(written, truth, tmp_path):
    arrays = cached(written["binary"], tmp_path, BINARY)
    for name in ("images", "eval_images", "sizes"):
        assert np.array_equal(arrays[name], truth[name]), name
    for name in ("masks", "eval_masks"):
        assert np.array_equal(arrays[name], (truth[name] > 0).astype(np.uint8)), name


def first_batches(data: Path, out: Path, *overrides: str) -> tuple[list[str], list[tuple[torch.Tensor, ...]]]:
    """(the training items' names, the first two training batches (images, masks)) that ``stages/segment.py`` draws
    on ``data``: its survey, split, data path and epoch seeding, stopped before the model."""
    cfg = config(data, out, *overrides)
    accelerator = Accelerator(cpu=True)
    source = open_segmentation_pairs(cfg.data)
    test_size, subset, val_size = cfg.data.sizes()
    survey = survey_masks(source, range(len(source)), out / "data_cache", False, lambda line: None)
    splits = segmentation_splits(len(source), test_size, subset, cfg.seed, survey.dominant_groups(range(len(source))),
                                 val_size, source.name, test_seed=cfg.data.test_seed, given=source.given_split)
    data_path = DataPath(cfg, out, accelerator, SPEC, len(source))
    assert data_path.batched
    train = data_path.training(source, splits["train"], data_path.cache(source, range(len(source))), "masks")
    for _ in epochs(accelerator, cfg, 0, train):  # epoch 0's seeds: the loader's shuffle and the augmentation
        batches = [train(batch) for batch, _ in zip(train.loader, range(2))]
        return [source.names[i] for i in splits["train"]], batches
    raise AssertionError("no epoch")


@pytest.mark.parametrize("layouts", [("palette", "hf"), ("mask-folder", "colour")])
def test_two_layouts_give_the_same_training_batches(written, layouts, tmp_path):
    (names, batches), (other_names, other_batches) = (first_batches(written[layout], tmp_path / layout)
                                                      for layout in layouts)
    assert names == other_names and len(names) == COUNT - 3
    for (images, masks), (other_images, other_masks) in zip(batches, other_batches, strict=True):
        assert images.shape == (4, 3, IMG, IMG) and masks.shape == (4, IMG, IMG) and masks.dtype == torch.int64
        assert torch.equal(images, other_images) and torch.equal(masks, other_masks)
    assert not torch.equal(batches[0][0], batches[1][0])
    assert len(torch.cat([m for _, m in batches]).unique()) >= 3, "the batches hold several of the 7 classes"


def test_binary_masks_give_the_collapsed_batches_on_the_same_split(written, tmp_path):
    names, batches = first_batches(written["palette"], tmp_path / "palette")
    # the strata of a split are each image's main class, which the binary masks no longer tell: give the same split
    (tmp_path / "train.txt").write_text("".join(f"{n}\n" for n in names))
    (tmp_path / "test.txt").write_text("".join(f"synthetic_{i:05d}\n" for i in range(COUNT) if
                                               f"synthetic_{i:05d}" not in names))
    binary_names, binary = first_batches(written["binary"], tmp_path / "binary", BINARY,
                                         f"data.train_list={tmp_path / 'train.txt'}",
                                         f"data.test_list={tmp_path / 'test.txt'}")
    assert binary_names == names
    for (images, masks), (binary_images, binary_masks) in zip(batches, binary, strict=True):
        assert torch.equal(images, binary_images)
        assert torch.equal((masks > 0).long(), binary_masks) and binary_masks.max() == 1
