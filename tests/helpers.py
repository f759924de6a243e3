"""Helpers the tests share: tiny configs and image folders generated on the spot (tests never download anything)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# A 2-block encoder on 48 synthetic images: a whole stage runs in seconds on 2 cores.
TINY = ["model.depth=2", "data.synthetic_size=48", "data.val_size=4", "data.num_workers=0", "train.epochs=2",
        "train.batch_size=8", "log.progress=false", "log.grid_every=1", "log.grid_rows=2", "train.lr=1e-3"]


def write_images(folder: Path, names: list[str], size: tuple[int, int] = (40, 32), seed: int = 0) -> list[Path]:
    """Random RGB images at ``folder/name`` (format from the extension)."""
    rng = np.random.default_rng(seed)
    paths = []
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}[path.suffix.lower().lstrip(".")]
        Image.fromarray(pixels).save(path, format=fmt)
        paths.append(path)
    return paths


def interrupted_then_resumed(stage, make_config, overrides, output_dir: Path, monkeypatch) -> Path:
    """Run ``stage.main`` until its first state is saved, "kill" it there, then resume it to the end."""
    from simseg.training import stage_steps

    real_save = stage_steps.save_state

    def save_then_die(*args, **kwargs):  # the process dies right after epoch 0's state is on disk
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(stage_steps, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        stage.main(make_config(*overrides, output_dir=output_dir))
    monkeypatch.setattr(stage_steps, "save_state", real_save)
    return stage.main(make_config(*overrides, "resume=true", output_dir=output_dir))


def trimap(height, width, seed=0):
    """(H, W) uint8 with Oxford values: background 2 everywhere, a pet (1) rectangle ringed by boundary (3)."""
    values = np.full((height, width), 2, dtype=np.uint8)
    values[2:-2, 3:-3] = 3
    values[3:-3, 4:-4] = 1
    values[0, seed % width] = 3
    return values


def write_pair(root, stem, size=(20, 16), image_ext=".jpg", trimap_size=None, values=None):
    """An Oxford-layout image/trimap pair under ``root`` (either may be left out or given another size)."""
    rng = np.random.default_rng(len(stem))
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "trimaps").mkdir(parents=True, exist_ok=True)
    if image_ext:
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(root / "images" /
                                                                                         f"{stem}{image_ext}")
    if trimap_size is not False:
        width, height = trimap_size or size
        Image.fromarray(trimap(height, width) if values is None else values).save(
            root / "annotations" / "trimaps" / f"{stem}.png")
