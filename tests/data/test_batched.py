"""Pretraining's batched path: same masks and transforms from the same seed give the per-image path's loss; the stage
runs on a cache both ways; ``simseg data cache`` builds what the stage reads."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader

import simseg.cli as cli
from simseg.config.sections import AugConfig, ModelConfig
from simseg.data.batch_augment import BatchAugment, reference_apply
from simseg.data.batched import CachedBatches, IndexDataset
from simseg.data.cache import build_cache, open_cache
from simseg.data.sources import SyntheticSource
from simseg.errors import SimsegError
from simseg.models.masking import random_unit_mask
from simseg.models.simmim import SimMIM
from simseg.models.vit import build_encoder

TINY_RUN = ["model.depth=2", "train.epochs=1", "train.batch_size=8", "data.subset=16", "data.val_size=4",
            "log.progress=false", "data.num_workers=0"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    out = tmp_path_factory.mktemp("cache")
    return open_cache(build_cache(SyntheticSource(24, seed=3, size=96), out, size=144, progress=False))


def test_the_batched_path_gives_the_per_image_loss_for_the_same_masks_and_transforms(cache):
    torch.manual_seed(0)
    model = SimMIM(build_encoder(ModelConfig(depth=2))).eval()
    aug = AugConfig()  # the study's crops, flips and colour jitter with hue
    augment = BatchAugment.from_aug_config(aug, 128)
    batches = CachedBatches(cache, augment, torch.device("cpu"))
    indices = torch.tensor([5, 0, 17, 3, 3, 11])
    batches.manual_seed(7)
    fast = batches(indices)
    params = augment.sample(len(indices), 144, 144, torch.Generator().manual_seed(7))  # what the seed drew
    plain = reference_apply(cache.batch(indices), params, 128, aug.mean, aug.std)  # torchvision, one image at a time
    mask = random_unit_mask(len(indices), 128, 16, 16, 0.5, torch.Generator().manual_seed(1))
    with torch.no_grad():
        fast_loss = model(images=fast, mask=mask)["loss_per_image"]
        plain_loss = model(images=plain, mask=mask)["loss_per_image"]
    assert fast.shape == (6, 3, 128, 128) and (fast[3] - fast[4]).abs().max() > 0.01  # same image, own crops
    assert torch.allclose(fast_loss, plain_loss, rtol=1e-4, atol=1e-5)
    batches.manual_seed(7)
    assert torch.equal(batches(indices), fast)  # the seed reproduces the batch


def test_pixels_come_from_the_cache_in_the_order_asked(cache):
    batches = CachedBatches(cache, BatchAugment.from_aug_config(AugConfig(), 128), torch.device("cpu"))
    pixels = batches.pixels(torch.tensor([4, 1]))
    assert pixels.dtype == torch.uint8 and pixels.shape == (2, 3, 144, 144)
    assert torch.equal(pixels[0].permute(1, 2, 0), torch.from_numpy(cache.array[4].copy()))
    assert not batches.on_device and batches.images is None  # on the CPU the memory map is the one copy
    assert IndexDataset([9, 2])[1] == 2


def test_index_batches_in_one_gather_match_item_by_item():
    class ItemByItem(IndexDataset):
        __getitems__ = None  # the DataLoader then fetches and collates each item

    indices = [7, 3, 11, 5, 2, 13, 8]
    loaders = [DataLoader(cls(indices), batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(1))
               for cls in (IndexDataset, ItemByItem)]
    fast, slow = (list(loader) for loader in loaders)
    assert all(a.dtype == torch.int64 and torch.equal(a, b) for a, b in zip(fast, slow, strict=True))
    assert sorted(torch.cat(fast).tolist()) == sorted(indices)


@pytest.mark.slow
def test_pretraining_runs_on_a_cache_batched_and_per_image(cache, tmp_path, capsys):
    for pipeline in ("batched", "per_image"):
        run = cli.stage_command("pretrain")([*TINY_RUN, f"data.source={cache.path}", f"data.pipeline={pipeline}",
                            f"output_dir={tmp_path / pipeline}"])
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["pipeline"] == pipeline and metrics["train_images"] == 16
        assert metrics["peak_memory_mib"] > 0 and metrics["final_train_loss"] > 0
    assert "batched augmentation on cpu" in capsys.readouterr().out


def test_simseg_data_cache_builds_a_cache_and_names_a_missing_source(tmp_path, capsys):
    folder = tmp_path / "images" / "cat"
    folder.mkdir(parents=True)
    for i, image in enumerate(SyntheticSource(3, seed=1, size=80).image(i) for i in range(3)):
        image.save(folder / f"{i}.png")
    out = cli.data(["cache", str(tmp_path / "images"), "--out", str(tmp_path / "c"), "--size", "64",
                    "--workers", "0"])
    assert len(open_cache(out)) == 3 and "data.source=" in capsys.readouterr().out
    with pytest.raises(SimsegError, match="does not exist"):
        cli.data(["cache", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")])
