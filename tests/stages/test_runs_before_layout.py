"""Run folders written before the layered layout (tests/fixtures/runs_before_layout, made at commit a672870) still
resume to the end, still load as an init, and the new code computes exactly what the old code did."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from simseg.config.pretrain import PretrainConfig
from simseg.config.segment import SegmentConfig
from simseg.experiments.stage_table import run_stage
from simseg.training.resume_state import run_is_finished
from simseg.training.rundir import load_run_config, read_metrics

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "runs_before_layout"

pytestmark = pytest.mark.slow


@pytest.fixture
def old_runs(tmp_path, monkeypatch) -> Path:
    """A copy of the fixture; the saved configs name their folders relative to the working directory."""
    shutil.copytree(FIXTURE, tmp_path / "old_runs", ignore=shutil.ignore_patterns("README.md"))
    monkeypatch.chdir(tmp_path)
    return Path("old_runs")


def losses(run_dir: Path) -> list[float]:
    return [r["train_loss"] for r in read_metrics(run_dir)]


def resume_and_compare(stage: str, cls: type, run_dir: Path) -> tuple[Path, Path]:
    """Resume the old run to the end, and run the same config uninterrupted with today's code."""
    cfg = load_run_config(run_dir, cls)
    old_epoch0 = losses(run_dir)
    run_stage(stage, replace(cfg, resume=True))
    # the old runs decoded and augmented image by image: the uninterrupted run takes that path too
    fresh = run_stage(stage, replace(cfg, output_dir=str(run_dir.parent / f"{stage}-fresh"),
                                     data=replace(cfg.data, pipeline="per_image")))
    assert run_is_finished(run_dir, cfg.train.epochs)
    resumed, uninterrupted = losses(run_dir), losses(fresh)
    assert len(resumed) == cfg.train.epochs and resumed[:1] == old_epoch0
    # epoch 0 computed by the old code equals today's, and the resumed epoch 1 equals an uninterrupted one
    assert all(math.isclose(a, b, rel_tol=1e-5) for a, b in zip(resumed, uninterrupted, strict=True))
    return run_dir, fresh


def test_an_old_segmentation_run_resumes_and_an_old_export_loads_as_init(old_runs):
    resumed, fresh = resume_and_compare("segment", SegmentConfig, old_runs / "segment")
    old, new = (json.loads((d / "metrics.json").read_text()) for d in (resumed, fresh))
    assert math.isclose(old["miou"], new["miou"], rel_tol=1e-5)
    # the fresh run loaded the old pretraining export as its init and recorded where it came from
    lineage = json.loads((fresh / "lineage.json").read_text())
    assert lineage["export_stage"] == "pretrain" and lineage["export"].endswith("old_runs/pretrain/encoder.safetensors")


def test_an_old_pretraining_run_resumes_to_the_end(old_runs):
    resumed, fresh = resume_and_compare("pretrain", PretrainConfig, old_runs / "pretrain")
    old, new = (json.loads((d / "metrics.json").read_text()) for d in (resumed, fresh))
    assert math.isclose(old["final_val_loss"], new["final_val_loss"], rel_tol=1e-5)
