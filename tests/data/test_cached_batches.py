"""The batched path: batches gathered from a cache and augmented give what the per-image torchvision path gives for
the same parameters (and the same SimMIM loss); seeds reproduce batches; targets come along; the path choice;
pretraining runs on a cache both ways; ``simseg data cache`` builds what the stage reads."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader

import simseg.cli as cli
from simseg.config.sections import AugConfig, ModelConfig
from simseg.data.batch_augment import BatchAugment
from simseg.data.cache_build import build_cache, ensure_cache
from simseg.data.cached_batches import CachedBatches, IndexDataset, choose_pipeline
from simseg.data.image_cache import CacheSpec, open_cache
from simseg.data.sources import SyntheticSource
from simseg.data.synthetic_pairs import SyntheticPairsSource
from simseg.errors import SimsegError
from simseg.models.masking import random_unit_mask
from simseg.models.simmim import SimMIM
from simseg.models.vit import build_encoder
from tests.data.reference_augment import reference_apply

TINY_RUN = ["model.depth=2", "train.epochs=1", "train.batch_size=8", "data.subset=16", "data.val_size=4",
            "log.progress=false", "data.num_workers=0"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    out = tmp_path_factory.mktemp("cache")
    # originals of the squares' size: the stored pixels are the originals, which the per-image path crops
    return open_cache(build_cache(SyntheticSource(24, seed=3, size=144), out / "c", CacheSpec(144), progress=False))


def test_the_batched_path_gives_the_per_image_loss_for_the_same_masks_and_transforms(cache):
    torch.manual_seed(0)
    model = SimMIM(build_encoder(ModelConfig(depth=2))).eval()
    aug = AugConfig()  # the study's crops, flips and colour jitter with hue
    augment = BatchAugment.from_aug_config(aug, 128)
    batches = CachedBatches(cache, augment, torch.device("cpu"))
    indices = torch.tensor([5, 0, 17, 3, 3, 11])
    batches.manual_seed(7)
    fast, none = batches(indices)
    sizes = torch.full((6,), 144)
    params = augment.sample(sizes, sizes, torch.Generator().manual_seed(7))  # what the seed drew
    pixels = torch.from_numpy(cache.arrays["images"][indices.numpy()]).permute(0, 3, 1, 2)
    plain = reference_apply(pixels, params, 128, aug.mean, aug.std)[0]  # torchvision, one image at a time
    mask = random_unit_mask(len(indices), 128, 16, 16, 0.5, torch.Generator().manual_seed(1))
    with torch.no_grad():
        fast_loss = model(images=fast, mask=mask)["loss_per_image"]
        plain_loss = model(images=plain, mask=mask)["loss_per_image"]
    assert none is None and fast.shape == (6, 3, 128, 128) and (fast[3] - fast[4]).abs().max() > 0.01  # own crops
    assert torch.allclose(fast_loss, plain_loss, rtol=1e-4, atol=1e-5)
    batches.manual_seed(7)
    assert torch.equal(batches(indices)[0], fast)  # the seed reproduces the batch


def test_masks_and_labels_come_with_their_images(tmp_path):
    pairs = SyntheticPairsSource(12, seed=1, size=48)
    spec = CacheSpec(40, masks=True)
    cache = ensure_cache(pairs, range(12), spec, tmp_path / "pairs", progress=False, say=lambda line: None)
    augment = BatchAugment(24, (0.5, 1.0), (3 / 4, 4 / 3), 0.5, (0.4, 0.4, 0.4, 0.1), 0.8, AugConfig.mean,
                           AugConfig.std)
    batches = CachedBatches(cache, augment, torch.device("cpu"))
    batches.manual_seed(3)
    images, masks = batches(torch.tensor([4, 1, 5]))
    assert images.shape == (3, 3, 24, 24) and images.dtype == torch.float32
    assert masks.shape == (3, 24, 24) and masks.dtype == torch.int64 and set(masks.unique().tolist()) <= {0, 1, 2}
    batches.manual_seed(3)
    again, again_masks = batches(torch.tensor([4, 1, 5]))
    assert torch.equal(images, again) and torch.equal(masks, again_masks), "the seed reproduces a batch"


def test_index_batches_in_one_gather_match_item_by_item():
    class ItemByItem(IndexDataset):
        __getitems__ = None  # the DataLoader then fetches and collates each item

    indices = [7, 3, 11, 5, 2, 13, 8]
    loaders = [DataLoader(cls(indices), batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(1))
               for cls in (IndexDataset, ItemByItem)]
    fast, slow = (list(loader) for loader in loaders)
    assert all(a.dtype == torch.int64 and torch.equal(a, b) for a, b in zip(fast, slow, strict=True))
    assert sorted(torch.cat(fast).tolist()) == sorted(indices)


def test_the_pipeline_choice():
    assert choose_pipeline("per_image", None, 0) == "per_image"
    assert choose_pipeline("batched", "per_image", 10**15) == "batched"
    assert choose_pipeline("auto", None, 10**6) == "batched"
    assert choose_pipeline("auto", None, 10**15) == "per_image", "a source that does not fit memory stays per image"
    assert choose_pipeline("auto", "batched", 10**15) == "batched", "a resumed run keeps what it started with"
    assert choose_pipeline("auto", "per_image", 10**6) == "per_image"
    # an image cache given as the source is batched under auto
    assert choose_pipeline("auto", None, 10**15, source_is_cache=True) == "batched"
    assert choose_pipeline("per_image", None, 0, source_is_cache=True) == "per_image"


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
    out = cli.data(["cache", str(tmp_path / "images"), "--out", str(tmp_path / "c"), "--img-size", "48",
                    "--workers", "0"])
    assert len(open_cache(out)) == 3 and open_cache(out).spec == CacheSpec(60)
    assert "data.source=" in capsys.readouterr().out
    with pytest.raises(SimsegError, match="does not exist"):
        cli.data(["cache", str(tmp_path / "nowhere"), "--out", str(tmp_path / "d")])
