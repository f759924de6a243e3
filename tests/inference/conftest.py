"""Run folders for the inference tests. ``finished_run`` writes the files a finished segmentation run leaves
(config.yaml, model.safetensors with the stage's metadata, metrics.json, test_images.txt) around an untrained model
in seconds, so these tests need not train; the tests that check scores against a trained run are marked slow."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from simseg.config.loader import load_config
from simseg.config.segment import SegmentConfig
from simseg.data.pets import open_segmentation_pairs
from simseg.data.splits import segmentation_splits
from simseg.files import atomic_write_json
from simseg.models.registry import model_for_config
from simseg.training.rundir import write_config
from simseg.training.stage_steps import write_labelled_exports

SMALL = ["model.depth=2", "model.img_size=64", "data.test_size=8", "data.subset=16", "data.synthetic_image_size=48",
         "data.num_workers=0", "train.epochs=2", "train.batch_size=8", "log.progress=false", "eval.every=1"]


def make_finished_run(folder: Path, *overrides: str, seed: int = 0) -> Path:
    cfg = load_config(SegmentConfig, None, [*SMALL, f"output_dir={folder}", *overrides])
    torch.manual_seed(seed)
    model = model_for_config(cfg.model, 3, cfg.loss).eval()
    folder.mkdir(parents=True)
    write_config(folder, cfg, command=["test"])
    atomic_write_json(folder / "metrics.json", {"miou": 0.5, "arch": cfg.model.arch})
    source = open_segmentation_pairs(cfg.data)
    test_size, subset, val_size = cfg.data.sizes()
    splits = segmentation_splits(len(source), test_size, subset, cfg.seed, source.groups, val_size, source.name,
                                 test_seed=cfg.data.test_seed)
    (folder / "test_images.txt").write_text("".join(f"{source.names[i]}\n" for i in splits["test"]))
    write_labelled_exports(folder, model, cfg, "segment", arch=cfg.model.arch, num_classes="3")
    return folder


@pytest.fixture(scope="session")
def pristine_runs(tmp_path_factory) -> dict:
    """Finished runs made once per session, by their overrides (drawing the synthetic splits is most of the cost)."""
    made = {}

    def get(overrides: tuple[str, ...]) -> Path:
        if overrides not in made:
            made[overrides] = make_finished_run(tmp_path_factory.mktemp("pristine") / "run", *overrides)
        return made[overrides]
    return get


@pytest.fixture
def finished_run(tmp_path, pristine_runs):
    """A finished run folder of this test's own (a copy: tests may damage it)."""
    def make(*overrides: str, name: str = "run") -> Path:
        return Path(shutil.copytree(pristine_runs(overrides), tmp_path / name))
    return make
