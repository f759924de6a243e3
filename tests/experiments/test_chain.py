"""simseg chain: three tiny stages on synthetic data, skipping finished stages and resuming an interrupted one."""

from __future__ import annotations

import json

import pytest

import simseg.cli as cli
from simseg.errors import SimsegError
from simseg.experiments.chain import load_chain, run_chain
from simseg.training import stage_steps

SHARED = ["model.depth=2", "train.epochs=2", "train.batch_size=8", "data.num_workers=0", "log.progress=false"]
TINY_CHAIN = [f"pretrain.{o}" for o in [*SHARED, "data.synthetic_size=24", "data.val_size=2", "log.grid_every=0"]] + \
             [f"classify.{o}" for o in [*SHARED, "data.subset=16", "data.test_size=8"]] + \
             [f"segment.{o}" for o in [*SHARED, "data.subset=16", "data.test_size=8"]]


def lineage(run_dir) -> dict:
    return json.loads((run_dir / "lineage.json").read_text())


@pytest.mark.slow
def test_chain_hands_each_export_to_the_next_stage_and_skips_finished_stages(tmp_path, capsys):
    runs = run_chain(None, [*TINY_CHAIN, f"output_dir={tmp_path}"])
    assert list(runs) == ["pretrain", "classify", "segment"]
    assert lineage(runs["classify"])["export"] == str((tmp_path / "pretrain" / "encoder.safetensors").resolve())
    assert lineage(runs["segment"])["export"] == str((tmp_path / "classify" / "encoder.safetensors").resolve())
    assert lineage(runs["segment"])["export_stage"] == "classify"
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    capsys.readouterr()
    run_chain(None, [*TINY_CHAIN, f"output_dir={tmp_path}"])  # the same command again does nothing
    assert capsys.readouterr().out.count("skipped") == 3
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_chain_without_classify_segments_from_the_pretraining(tmp_path, capsys):
    chain_file = tmp_path / "chain.yaml"
    chain_file.write_text(f"output_dir: {tmp_path / 'runs'}\nclassify: null\n")
    runs = cli.chain(["-c", str(chain_file), *[o for o in TINY_CHAIN if not o.startswith("classify.")]])
    assert list(runs) == ["pretrain", "segment"] and "chain: done" in capsys.readouterr().out
    assert lineage(runs["segment"])["export_stage"] == "pretrain"


def test_segment_null_stops_the_chain_after_classify_and_absent_means_defaults(tmp_path):
    _, stages = load_chain(None, ["segment=null", f"output_dir={tmp_path}"])
    assert stages["segment"] is None and stages["pretrain"] == {}
    _, stages = load_chain(None, ["classify=null", f"output_dir={tmp_path}"])
    assert stages["segment"] == {} and stages["classify"] is None


@pytest.mark.slow
def test_an_interrupted_stage_resumes_and_earlier_stages_are_skipped(tmp_path, monkeypatch, capsys):
    real_save = stage_steps.save_state

    def save_then_die(accelerator, run_dir, progress):  # the classify stage dies after its first epoch
        real_save(accelerator, run_dir, progress)
        if run_dir.name == "classify":
            raise KeyboardInterrupt

    monkeypatch.setattr(stage_steps, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_chain(None, [*TINY_CHAIN, f"output_dir={tmp_path}"])
    monkeypatch.setattr(stage_steps, "save_state", real_save)
    capsys.readouterr()
    runs = run_chain(None, [*TINY_CHAIN, f"output_dir={tmp_path}"])
    out = capsys.readouterr().out
    assert "pretrain finished earlier" in out and "classify -> " in out and "(resuming)" in out
    epochs = [json.loads(line)["epoch"] for line in (runs["classify"] / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1] and (runs["segment"] / "metrics.json").exists()


def test_chain_errors_are_one_line(tmp_path):
    with pytest.raises(SimsegError, match="unknown chain key 'pretrian'"):
        run_chain(None, ["pretrian.train.epochs=1"])
    with pytest.raises(SimsegError, match="segment.init is set by the chain itself"):
        run_chain(None, ["segment.init=scratch"])
    with pytest.raises(SimsegError, match="unknown config key 'classify.train.lrr'"):
        run_chain(None, [*TINY_CHAIN, "classify.train.lrr=1", f"output_dir={tmp_path}"])


@pytest.mark.slow
def test_a_finished_stage_with_a_changed_config_is_refused(tmp_path):
    run_chain(None, [o for o in TINY_CHAIN if o.startswith("pretrain.")] + ["classify=null", "segment.data.subset=16",
              "segment.data.test_size=8", *[f"segment.{o}" for o in SHARED], f"output_dir={tmp_path}"])
    with pytest.raises(SimsegError, match="resume=true but train.lr differ"):
        run_chain(None, [*TINY_CHAIN, "pretrain.train.lr=0.5", f"output_dir={tmp_path}"])
