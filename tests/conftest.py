"""Shared fixtures, and the rule that every test which trains a stage is marked ``slow`` (so that
``pytest -m "not slow"`` stays a loop of seconds); the helpers tests share are in :mod:`tests.helpers`.

The suite runs on pytest-xdist workers (``-n auto`` in pyproject.toml; ``-n 0`` runs it in one process). The
controller only hands out test files, so nothing here imports torch or simseg until a process runs tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Each worker imports torch, timm and the rest once (about 13 s of one core and 1 GiB): beyond a few workers that
# start-up outweighs what they share out.
MAX_WORKERS = 4

# Every stage script calls stage_steps.begin_or_resume, imported by name, once its data and model are built and its
# loop is about to start: wrapping it in pytest_configure, before any test module imports a stage, lets the fixture
# below see which tests train a stage in this process (a refusal before the loop does not count).
_stage_runs_started: list[str] = []


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # not on macOS


def pytest_xdist_auto_num_workers(config) -> int:
    """One process when the command names test files or tests (workers would each import everything first); else
    a worker per core, at most MAX_WORKERS."""
    if config.args and all("::" in arg or arg.endswith(".py") for arg in config.args):
        return 0
    return min(MAX_WORKERS, _cores())


def pytest_configure(config):
    workers = config.getoption("tx", None) if config.getoption("dist", "no") != "no" else None
    if workers and not hasattr(config, "workerinput"):
        # The controller runs no tests. Its workers (started after this hook) split the cores: torch's and the BLAS
        # libraries' threads read this when first imported, and idle threads left spinning would slow the others.
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _cores() // len(workers))))
        return
    from simseg.training import stage_steps

    begin_or_resume = stage_steps.begin_or_resume

    def counted_begin_or_resume(accelerator, run_dir, cfg, *args, **kwargs):
        _stage_runs_started.append(str(run_dir))
        return begin_or_resume(accelerator, run_dir, cfg, *args, **kwargs)

    stage_steps.begin_or_resume = counted_begin_or_resume


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
    from simseg.config.loader import load_config
    from simseg.config.pretrain import PretrainConfig
    from tests.helpers import TINY

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
