"""``grid_of_run``, what ``simseg grid`` draws: a pretraining run's reconstruction grid on any images, one row per
image and one column per view, the same picture for the same seed, and one-line refusals of what is not a run.

The run folder is written as the stage leaves it (config.yaml, and the stage's own exports of an untrained
pretrainer) in a moment, so these tests need not train: the grid does not care whether the weights learnt."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from simseg.config.loader import load_config
from simseg.config.pretrain import PretrainConfig
from simseg.errors import SimsegError
from simseg.models.pretraining import pretrainer_for_config
from simseg.training.plots import GRID_COLUMNS
from simseg.training.run_grid import grid_of_run
from simseg.training.rundir import write_config
from stages.pretrain import write_exports
from tests.helpers import TINY, write_images


def finished_pretraining(cfg) -> Path:
    """The files a finished pretraining run leaves for its grid: config.yaml and model.safetensors (with
    encoder.safetensors beside it), as the stage writes them after its last epoch."""
    run_dir = Path(cfg.output_dir)
    run_dir.mkdir(parents=True)
    write_config(run_dir, cfg, command=["test"])
    torch.manual_seed(cfg.seed)
    write_exports(pretrainer_for_config(cfg), cfg, run_dir, cfg.train.epochs - 1)
    return run_dir


@pytest.fixture(scope="module")
def pristine_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrain") / "run"
    return finished_pretraining(load_config(PretrainConfig, None, [*TINY, "model.img_size=64", f"output_dir={out}"]))


@pytest.fixture
def run_dir(pristine_run, tmp_path) -> Path:
    """This test's own copy of the run (grid_of_run writes into it by default)."""
    return Path(shutil.copytree(pristine_run, tmp_path / "run"))


def test_the_grid_has_a_row_per_image_and_a_column_per_view(run_dir, tmp_path):
    write_images(tmp_path / "photos", [f"{i}.jpg" for i in range(5)], size=(150, 130))
    two = grid_of_run(run_dir, str(tmp_path / "photos"), rows=2, out=tmp_path / "two.png")
    one = grid_of_run(run_dir, str(tmp_path / "photos"), rows=1, out=tmp_path / "one.png")
    assert (two, one) == (tmp_path / "two.png", tmp_path / "one.png")
    (width, height), (width_one, height_one) = Image.open(two).size, Image.open(one).size
    # every cell is a square of one side: the width holds one per view, and a second row adds one cell's height
    assert width == width_one and height - height_one == width // len(GRID_COLUMNS)


def test_the_same_seed_draws_the_same_images_and_masks_into_the_runs_grids_folder(run_dir, tmp_path):
    default = grid_of_run(run_dir / "model.safetensors", "synthetic", rows=1, seed=3)  # a weights file names its run
    assert default == run_dir / "grids" / "grid.png"
    again = grid_of_run(run_dir, "synthetic", rows=1, seed=3, out=tmp_path / "again.png")
    other = grid_of_run(run_dir, "synthetic", rows=1, seed=4, out=tmp_path / "other.png")
    assert default.read_bytes() == again.read_bytes() != other.read_bytes()


def test_what_is_not_a_pretraining_run_is_refused_in_one_line(run_dir, tmp_path, pristine_run):
    cases = [(tmp_path / "missing", r"--checkpoint .*missing does not exist: give a pretraining run folder"),
             (tmp_path, r"has no config.yaml: give a simseg run folder")]
    deeper = finished_pretraining(load_config(PretrainConfig, None, [*TINY, "model.img_size=64", "model.depth=3",
                                                                     f"output_dir={tmp_path / 'deeper'}"]))
    shutil.copy(deeper / "model.safetensors", run_dir / "model.safetensors")  # weights of another architecture
    cases.append((run_dir, r"model.safetensors does not fit the run's config.yaml"))
    for checkpoint, message in cases:
        with pytest.raises(SimsegError, match=message) as err:
            grid_of_run(checkpoint, "synthetic", rows=2, out=tmp_path / "never.png")
        assert "\n" not in str(err.value)
    with pytest.raises(SimsegError, match="--n must be at least 1"):
        grid_of_run(pristine_run, "synthetic", rows=0, out=tmp_path / "never.png")
    assert not (tmp_path / "never.png").exists()


def test_simseg_grid_draws_any_images_and_refuses_in_one_line(run_dir, tmp_path, capsys):
    """The command's wiring (was a slow test that trained a run first): its flags reach grid_of_run."""
    from simseg.cli import main

    write_images(tmp_path / "other", [f"{i}.jpg" for i in range(5)], size=(150, 130))
    main(["grid", "--checkpoint", str(run_dir), "--data", str(tmp_path / "other"), "--n", "3",
          "--out", str(tmp_path / "g.png")])
    assert f"wrote {tmp_path / 'g.png'}" in capsys.readouterr().out
    width, height = Image.open(tmp_path / "g.png").size
    assert height > width * 0.5  # three rows of the three views
    with pytest.raises(SystemExit) as exit_info:
        main(["grid", "--checkpoint", str(tmp_path / "missing"), "--data", "synthetic"])
    assert exit_info.value.code == 2 and capsys.readouterr().err.count("\n") == 1
