"""Run folders for the inference tests. ``finished_run`` writes the files a finished segmentation run leaves
(config.yaml, model.safetensors with the stage's metadata, metrics.json, test_images.txt) around an untrained model
in seconds, so these tests need not train; the tests that check scores against a trained run are marked slow.

By default the folder has no classes.json, as runs written before runs recorded their classes (read as the pet
trimaps); ``classes=`` writes one and gives the model one output per class."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from simseg.cli import main
from simseg.config.loader import load_config
from simseg.config.segment import SegmentConfig
from simseg.data.label_set import LabelSet, write_run_label_set
from simseg.data.pair_sources import open_segmentation_pairs
from simseg.data.splits import segmentation_splits
from simseg.files import atomic_write_json
from simseg.models.registry import model_for_config
from simseg.training.rundir import write_config
from simseg.training.stage_steps import write_labelled_exports

SMALL = ["model.depth=2", "model.img_size=64", "data.test_size=8", "data.subset=16", "data.synthetic_image_size=48",
         "data.num_workers=0", "train.epochs=2", "train.batch_size=8", "log.progress=false", "eval.every=1"]


def make_finished_run(folder: Path, *overrides: str, seed: int = 0, classes: LabelSet | None = None) -> Path:
    cfg = load_config(SegmentConfig, None, [*SMALL, f"output_dir={folder}", *overrides])
    torch.manual_seed(seed + cfg.seed)  # seed=1 (or the override seed=1) gives other weights than the default
    count = classes.num_classes if classes else 3
    model = model_for_config(cfg.model, count, cfg.loss).eval()
    folder.mkdir(parents=True)
    write_config(folder, cfg, command=["test"])
    if classes is not None:
        write_run_label_set(folder, classes)
    atomic_write_json(folder / "metrics.json", {"miou": 0.5, "arch": cfg.model.arch})
    source = open_segmentation_pairs(cfg.data)
    test_size, subset, val_size = cfg.data.sizes()
    splits = segmentation_splits(len(source), test_size, subset, cfg.seed, source.groups, val_size, source.name,
                                 test_seed=cfg.data.test_seed)
    (folder / "test_images.txt").write_text("".join(f"{source.names[i]}\n" for i in splits["test"]))
    write_labelled_exports(folder, model, cfg, "segment", arch=cfg.model.arch, num_classes=str(count))
    return folder


def predict(*args: str) -> int:
    """Run ``simseg predict ARGS``; its exit status (0 when it returned)."""
    try:
        main(["predict", *args, "--quiet"])
    except SystemExit as exit_:
        return exit_.code
    return 0


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


@pytest.fixture(scope="session")
def pristine_runs(tmp_path_factory) -> dict:
    """Finished runs made once per session, by their overrides and classes (drawing the synthetic splits is most of
    the cost)."""
    made = {}

    def get(overrides: tuple[str, ...], classes: LabelSet | None = None) -> Path:
        if (overrides, classes) not in made:
            made[overrides, classes] = make_finished_run(tmp_path_factory.mktemp("pristine") / "run", *overrides,
                                                         classes=classes)
        return made[overrides, classes]
    return get


@pytest.fixture
def finished_run(tmp_path, pristine_runs):
    """A finished run folder of this test's own (a copy: tests may damage it)."""
    def make(*overrides: str, name: str = "run", classes: LabelSet | None = None) -> Path:
        return Path(shutil.copytree(pristine_runs(overrides, classes), tmp_path / name))
    return make


# A dataset of two classes whose masks store 0 and 255 (a binary mask read through data.label_map=0:0,255:1), and one
# of seven whose values are neither the ids nor in order: what predict's --label-values source must write back.
TWO = LabelSet(("sky", "road"), ((10, 20, 30), (200, 100, 0)), (0, 255), "roads from above")
SEVEN = LabelSet(tuple(f"shape_{i}" for i in range(7)), tuple((30 * i, 255 - 30 * i, (70 * i) % 256) for i in range(7)),
                 (7, 3, 40, 41, 100, 200, 1), "seven shapes")
