"""Shared fixtures, and the rule that every test which trains a stage is marked ``slow`` (so that
``pytest -m "not slow"`` stays a loop of seconds); the helpers tests share are in :mod:`tests.helpers`."""

from __future__ import annotations

from pathlib import Path

import pytest

from simseg.config.loader import load_config
from simseg.config.pretrain import PretrainConfig
from simseg.training import stage_steps
from tests.helpers import TINY

# Every stage script calls stage_steps.begin_or_resume, imported by name, once its data and model are built and its
# loop is about to start: wrapping it here, before any test imports a stage, lets the fixture below see which tests
# train a stage in this process (a refusal before the loop does not count).
_stage_runs_started: list[str] = []
_begin_or_resume = stage_steps.begin_or_resume


def _counted_begin_or_resume(accelerator, run_dir, cfg, *args, **kwargs):
    _stage_runs_started.append(str(run_dir))
    return _begin_or_resume(accelerator, run_dir, cfg, *args, **kwargs)


stage_steps.begin_or_resume = _counted_begin_or_resume


@pytest.fixture(autouse=True)
def trains_only_if_slow(request):
    """Fail a test that runs a stage (directly, or through the chain, the sweep or the demo) without the ``slow``
    marker."""
    _stage_runs_started.clear()
    yield
    if _stage_runs_started and request.node.get_closest_marker("slow") is None:
        pytest.fail(f"this test trains a stage ({_stage_runs_started[0]}): mark it @pytest.mark.slow", pytrace=False)


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
