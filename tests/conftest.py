"""Shared fixtures: tiny configs and image folders generated on the spot (tests never download anything)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simseg.config import PretrainConfig, load_config

# A 2-block encoder on 48 synthetic images: a whole stage runs in seconds on 2 cores.
TINY = ["model.depth=2", "data.synthetic_size=48", "data.val_size=4", "data.num_workers=0", "train.epochs=2",
        "train.batch_size=8", "log.progress=false", "log.grid_every=1", "log.grid_rows=2", "train.lr=1e-3"]


@pytest.fixture
def tiny_config(tmp_path):
    def make(*overrides: str, output_dir: Path | None = None) -> PretrainConfig:
        out = output_dir or tmp_path / "run"
        return load_config(PretrainConfig, None, [*TINY, f"output_dir={out}", *overrides])
    return make


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


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """Accelerate keeps one process-wide state; each test's stage run builds its own Accelerator."""
    yield
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state(reset_partial_state=True)


def interrupted_then_resumed(stage, make_config, overrides, output_dir: Path, monkeypatch) -> Path:
    """Run ``stage.main`` until its first state is saved, "kill" it there, then resume it to the end."""
    real_save = stage.save_state

    def save_then_die(*args, **kwargs):  # the process dies right after epoch 0's state is on disk
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(stage, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        stage.main(make_config(*overrides, output_dir=output_dir))
    monkeypatch.setattr(stage, "save_state", real_save)
    return stage.main(make_config(*overrides, "resume=true", output_dir=output_dir))
