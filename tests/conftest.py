"""Shared fixtures; the helpers they use are in :mod:`tests.helpers`."""

from __future__ import annotations

from pathlib import Path

import pytest

from simseg.config.loader import load_config
from simseg.config.pretrain import PretrainConfig
from tests.helpers import TINY


@pytest.fixture
def tiny_config(tmp_path):
    def make(*overrides: str, output_dir: Path | None = None) -> PretrainConfig:
        out = output_dir or tmp_path / "run"
        return load_config(PretrainConfig, None, [*TINY, f"output_dir={out}", *overrides])
    return make


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """Accelerate keeps one process-wide state; each test's stage run builds its own Accelerator."""
    yield
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state(reset_partial_state=True)
