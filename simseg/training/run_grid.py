"""``simseg grid``: a finished pretraining run's reconstruction grid (original | masked | reconstructed) on any
images, with seeded picks and masks, so two runs can be compared on the same images and the same masks."""

from __future__ import annotations

from pathlib import Path

import torch

from simseg.config.pretrain import PretrainConfig, PretrainDataConfig
from simseg.data.transforms import eval_transform
from simseg.data.unlabelled import open_image_source
from simseg.errors import SimsegError
from simseg.models.masking import random_unit_mask
from simseg.models.pretraining import pretrainer_for_config
from simseg.training.plots import save_reconstruction_grid
from simseg.training.rundir import load_run_config
from simseg.training.weight_files import read_weights


def load_pretraining_run(checkpoint: str | Path) -> tuple[Path, PretrainConfig, torch.nn.Module]:
    """(run folder, its config, its pretrainer with the run's ``model.safetensors``) of a pretraining run folder or
    its weights file; a folder that is missing, or weights that do not fit its config, are one-line errors."""
    run_dir = Path(checkpoint).expanduser()
    run_dir = run_dir.parent if run_dir.is_file() else run_dir
    if not run_dir.is_dir():
        raise SimsegError(f"--checkpoint {checkpoint} does not exist: give a pretraining run folder")
    cfg = load_run_config(run_dir, PretrainConfig)
    model = pretrainer_for_config(cfg)
    tensors, _ = read_weights(run_dir / "model.safetensors")
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise SimsegError(f"{run_dir}/model.safetensors does not fit the run's config.yaml: "
                          f"was it copied from another run?")
    return run_dir, cfg, model


def grid_of_run(checkpoint: str | Path, data: str, rows: int = 8, seed: int = 0, out: str | Path | None = None) -> Path:
    """Write the reconstruction grid of ``rows`` images of ``data`` (a folder, a datasets dataset or 'synthetic'),
    picked and masked with ``seed``, to ``out`` (default ``RUN_DIR/grids/grid.png``); returns its path."""
    if rows < 1:
        raise SimsegError("--n must be at least 1")
    run_dir, cfg, model = load_pretraining_run(checkpoint)
    source = open_image_source(PretrainDataConfig(source=data), stream="grid")
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(source), generator=generator)[:rows].tolist()
    transform = eval_transform(cfg.model.img_size, cfg.aug.mean, cfg.aug.std)
    images = torch.stack([transform(source.image(i)) for i in picks])  # (rows, 3, H, W)
    masks = random_unit_mask(len(picks), cfg.model.img_size, cfg.model.patch_size, cfg.mask.unit, cfg.mask.ratio,
                             generator)
    out = Path(out) if out else run_dir / "grids" / "grid.png"
    save_reconstruction_grid(out, model, images, masks, cfg.aug.mean, cfg.aug.std, f"{run_dir.name} on {source.name}")
    return out
