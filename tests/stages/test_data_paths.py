"""Every stage on both data paths: ``data.pipeline=auto`` picks the batched path (an automatic cache) for data that
fits in memory and records the choice beside the config, which stays as given; a resumed run keeps its path; a
sweep's cells share one cache, decoding each item once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import stages.classify as classify_stage
import stages.pretrain as pretrain_stage
import stages.segment as segment_stage
from simseg.config.classify import ClassifyConfig
from simseg.config.loader import load_config
from simseg.config.segment import SegmentConfig
from simseg.data import cache_build
from simseg.errors import SimsegError
from simseg.experiments.sweep.command import sweep
from tests.helpers import write_images

pytestmark = pytest.mark.slow

SEG = ["model.depth=2", "data.test_size=8", "data.subset=16", "data.synthetic_image_size=48", "data.num_workers=0",
       "train.epochs=1", "train.batch_size=8", "log.progress=false", "log.examples=2"]
CLS = ["model.depth=2", "model.img_size=64", "model.patch_size=8", "data.subset=32", "data.test_size=12",
       "data.synthetic_image_size=48", "data.num_workers=0", "train.epochs=1", "train.batch_size=8",
       "log.progress=false"]


def recorded(run_dir: Path, given: str = "auto") -> tuple[str, str]:
    """(the data path config.yaml records as resolved, metrics.json's pipeline); config.yaml's data.pipeline stays
    what was ``given``."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["data"]["pipeline"] == given, "the config is written as given, never changed"
    return config["resolved"]["data"]["pipeline"], json.loads((run_dir / "metrics.json").read_text())["pipeline"]


@pytest.fixture
def decoded(monkeypatch) -> list[int]:
    """The source items the automatic caches decode, in order."""
    items: list[int] = []
    real = cache_build._Decoded.__getitem__

    def counted(self, i):
        items.append(self.items[i])
        return real(self, i)

    monkeypatch.setattr(cache_build._Decoded, "__getitem__", counted)
    return items


def seg(*overrides: str) -> SegmentConfig:
    return load_config(SegmentConfig, None, [*SEG, *overrides])


def killed_after_epoch_0(run, monkeypatch) -> None:
    """``run()`` stopped right after epoch 0's state is saved, as a killed process."""
    from simseg.training import stage_steps

    real_save = stage_steps.save_state

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(stage_steps, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(stage_steps, "save_state", real_save)


def test_segmentation_takes_the_batched_path_for_small_data_and_a_resume_keeps_its_path(tmp_path, decoded,
                                                                                         monkeypatch):
    auto = segment_stage.main(seg(f"output_dir={tmp_path / 'auto'}"))
    assert recorded(auto) == ("batched", "batched")
    assert len(decoded) == 24 and (auto / "data_cache").is_dir()  # 16 training + 8 test pairs, decoded once
    # a run started on the per-image path and resumed with the default (auto) continues per image
    out = tmp_path / "per_image"
    killed_after_epoch_0(lambda: segment_stage.main(seg("train.epochs=2", "data.pipeline=per_image",
                                                        f"output_dir={out}")), monkeypatch)
    resumed = segment_stage.main(seg("train.epochs=2", "resume=true", f"output_dir={out}"))
    # no image cache (data_cache/ holds only the mask check's counts on this path)
    assert recorded(resumed, "per_image") == ("per_image", "per_image")
    assert not any((out / "data_cache").glob("*/cache.json"))
    with pytest.raises(SimsegError, match="resume=true but data.pipeline differ"):
        segment_stage.main(seg("train.epochs=2", "resume=true", "data.pipeline=batched", f"output_dir={out}"))


def test_the_cells_of_a_sweep_share_one_cache_and_decode_each_pair_once(tmp_path, decoded):
    out = tmp_path / "sweep"
    sweep(["--subsets", "8,16", "--seeds", "0", "--output-dir", str(out),
           *[o for o in SEG if not o.startswith("data.subset")]])
    caches = [p for p in (out / "data_cache").iterdir() if p.is_dir()]
    assert len(caches) == 1, "one cache for the pairs of every cell"
    assert len(decoded) == len(set(decoded)) == 8 + 16 + 16, \
        "nested subsets: the 8 are among the 16; the test set and the (automatic, 16-image) validation set shared"
    for cell in ("subset-8", "subset-16"):
        assert recorded(out / "cells" / "scratch" / cell / "seed-0") == ("batched", "batched")


def test_classification_takes_the_batched_path(tmp_path, decoded):
    run_dir = classify_stage.main(load_config(ClassifyConfig, None, [*CLS, f"output_dir={tmp_path / 'cls'}"]))
    assert recorded(run_dir) == ("batched", "batched")
    assert len(decoded) == 32 + 12
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["top1"] <= 1 and metrics["train_images"] == 32


def test_pretraining_on_a_small_folder_takes_the_batched_path(tiny_config, tmp_path, decoded):
    folder = tmp_path / "images"
    write_images(folder, [f"img_{i:02d}.png" for i in range(24)], size=(60, 44))
    run_dir = pretrain_stage.main(tiny_config(f"data.source={folder}", output_dir=tmp_path / "pre"))
    assert recorded(run_dir) == ("batched", "batched")
    assert len(decoded) == 20, "the 20 training images; the 4 held out are read per image"
    per_image = pretrain_stage.main(tiny_config(f"data.source={folder}", "data.pipeline=per_image",
                                                output_dir=tmp_path / "pre-per-image"))
    assert recorded(per_image, "per_image") == ("per_image", "per_image")
