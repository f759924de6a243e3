"""End-to-end runs of stage 1 on tiny synthetic data (seconds each), including interruption and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

import stages.pretrain as pretrain_stage
from simseg.errors import SimsegError
from simseg.training.handoff import load_encoder
from simseg.training.rundir import read_metrics
from simseg.training.weight_files import read_weights
from tests.helpers import TINY, interrupted_then_resumed, write_images

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_run_writes_every_file_of_the_run_folder(tiny_config):
    cfg = tiny_config()
    run_dir = pretrain_stage.main(cfg)
    for name in ("config.yaml", "metrics.jsonl", "metrics.json", "encoder.safetensors", "model.safetensors",
                 "grids/epoch_000.png", "grids/epoch_001.png", "state/progress.json"):
        assert (run_dir / name).is_file(), name
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [0, 1]
    assert {"train_loss", "val_loss", "lr", "images_per_s", "seconds", "loader_wait"} <= set(lines[0])
    final = json.loads((run_dir / "metrics.json").read_text())
    assert final["final_val_loss"] == lines[-1]["val_loss"] and final["train_images"] == 44
    encoder, model_cfg = load_encoder(run_dir, expected=cfg.model)
    model_weights, _ = read_weights(run_dir / "model.safetensors")
    assert torch.equal(encoder.pos_embed, model_weights["encoder.pos_embed"])
    assert {"mask_token", "decoder.weight"} <= set(model_weights)
    assert not list(run_dir.glob("**/*.tmp")) and not (run_dir / "state.tmp").exists()


@pytest.mark.slow
def test_training_reduces_the_reconstruction_loss(tiny_config):
    run_dir = pretrain_stage.main(tiny_config("train.epochs=4", "log.grid_every=0", "train.lr=2e-3"))
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["train_loss"] < lines[0]["train_loss"] and lines[-1]["val_loss"] < lines[0]["val_loss"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["simmim", "mae"])
def test_resume_ends_with_the_weights_of_an_uninterrupted_run(tiny_config, tmp_path, monkeypatch, method):
    overrides = ("train.epochs=3", "train.warmup_epochs=1", "train.milestones=[2]", "model.drop_path_rate=0.1",
                 "data.num_workers=1", "log.grid_every=0", f"method={method}", "norm_pix=true")
    whole = pretrain_stage.main(tiny_config(*overrides, output_dir=tmp_path / "whole"))

    split = interrupted_then_resumed(pretrain_stage, tiny_config, overrides, tmp_path / "split", monkeypatch)

    a, _ = read_weights(whole / "model.safetensors")
    b, _ = read_weights(split / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    epochs = [json.loads(line)["epoch"] for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2]


@pytest.mark.slow
def test_mae_run_keeps_its_intermediate_exports_and_each_one_starts_a_segmentation(tiny_config, tmp_path):
    from simseg.models.registry import build_segmentation_model
    from simseg.models.vit import build_encoder
    from simseg.training.handoff import load_init

    cfg = tiny_config("method=mae", "norm_pix=true", "train.epochs=3", "log.export_every=2", "log.grid_every=0")
    run_dir = pretrain_stage.main(cfg)
    assert cfg.mask.ratio == 0.75  # MAE's own default when mask.ratio is left null
    assert sorted(p.name for p in (run_dir / "exports").iterdir()) == ["epoch_001"]
    _, metadata = read_weights(run_dir / "exports" / "epoch_001" / "encoder.safetensors", tensors=False)
    assert metadata["method"] == "mae" and metadata["epoch"] == "1"
    model = build_segmentation_model("vit_linear", 3, "ce", build_encoder(cfg.model, dynamic_img_size=True))
    lineage = load_init(model, str(run_dir / "exports" / "epoch_001"), cfg.model)
    assert lineage["export_epoch"] == 1 and lineage["export_config"] == str((run_dir / "config.yaml").resolve())
    grid = run_dir / "grids" / "epoch_002.png"
    assert grid.is_file()


@pytest.mark.slow
def test_excluded_images_never_reach_pretraining(tiny_config, tmp_path, monkeypatch):
    from simseg.data.sources import FolderSource

    folder = tmp_path / "images"
    write_images(folder, [f"img_{i:02d}.png" for i in range(24)], size=(40, 40))
    excluded = {f"img_{i:02d}" for i in range(0, 24, 3)}
    (tmp_path / "test_images.txt").write_text("\n".join(sorted(excluded)) + "\n")
    read = []
    original = FolderSource.image
    monkeypatch.setattr(FolderSource, "image", lambda self, i: read.append(self.files[i].stem) or original(self, i))
    cfg = tiny_config(f"data.source={folder}", f"data.exclude={tmp_path / 'test_images.txt'}", "data.val_size=2",
                      "train.epochs=1", "data.pipeline=per_image")
    run_dir = pretrain_stage.main(cfg)
    assert read and not excluded & set(read)
    assert len(set(read)) == 24 - len(excluded)
    record = yaml.safe_load((run_dir / "config.yaml").read_text())["resolved"]["data"]["exclusion"]
    assert record["excluded"] == len(excluded) and set(record["excluded_names"]) == excluded


@pytest.mark.slow
def test_existing_run_folder_is_never_overwritten(tiny_config):
    run_dir = pretrain_stage.main(tiny_config("train.epochs=1"))
    before = (run_dir / "encoder.safetensors").read_bytes()
    with pytest.raises(SimsegError, match="is not empty: pass resume=true"):
        pretrain_stage.main(tiny_config("train.epochs=1"))
    assert (run_dir / "encoder.safetensors").read_bytes() == before


@pytest.mark.slow
def test_resuming_a_finished_run_changes_nothing(tiny_config, capsys):
    run_dir = pretrain_stage.main(tiny_config("train.epochs=1"))
    before = (run_dir / "model.safetensors").read_bytes()
    pretrain_stage.main(tiny_config("train.epochs=1", "resume=true"))
    assert "already finished" in capsys.readouterr().out
    assert (run_dir / "model.safetensors").read_bytes() == before


@pytest.mark.slow
def test_bf16_autocast_runs_on_cpu(tiny_config):
    run_dir = pretrain_stage.main(tiny_config("train.epochs=1", "train.mixed_precision=bf16", "log.grid_every=0"))
    assert json.loads((run_dir / "metrics.json").read_text())["final_train_loss"] > 0


@pytest.mark.slow
def test_folder_source_and_subset(tiny_config, tmp_path):
    write_images(tmp_path / "imgs", [f"class{i % 3}/{i}.jpg" for i in range(30)], size=(72, 60))
    run_dir = pretrain_stage.main(tiny_config(f"data.source={tmp_path / 'imgs'}", "data.subset=20", "data.val_size=2",
                                              "train.epochs=1"))
    assert json.loads((run_dir / "metrics.json").read_text())["train_images"] == 20
    with pytest.raises(SimsegError, match="data.subset=40 asks for 40 training images but .* has 30"):
        pretrain_stage.main(tiny_config(f"data.source={tmp_path / 'imgs'}", "data.subset=40",
                                        output_dir=tmp_path / "other"))


def run_cli(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.slow
def test_user_errors_are_one_line_without_traceback(tmp_path, capsys):
    from simseg.config.pretrain import PretrainConfig
    from simseg.experiments.stage_entry import run_main, stage_config

    with pytest.raises(SystemExit) as exit_:  # the stage script's entry, in this process (a process start is ~5 s)
        run_main(lambda argv: pretrain_stage.main(stage_config(PretrainConfig, argv, "pretrain")), ["train.lrr=1"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == "simseg: error: unknown config key 'train.lrr' (did you mean 'train.lr'?)"
    write_images(tmp_path / "imgs", [f"{i}.png" for i in range(12)])
    (tmp_path / "imgs" / "5_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    # the corrupt image is decoded in a DataLoader worker: its error still arrives as one line naming the file
    result = run_cli("stages/pretrain.py", *TINY, "data.num_workers=1", "data.val_size=1", "train.epochs=1",
                     f"data.source={tmp_path / 'imgs'}", f"output_dir={tmp_path / 'run'}")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("simseg: error: image ")
    assert "5_broken.png cannot be read" in result.stderr and "Traceback" not in result.stderr


# stages/pretrain.py as `python stages/pretrain.py ARGS` runs it, except that the third training step of epoch 1
# first writes the file named by the first argument and then waits to be killed: the test kills the run inside
# epoch 1, two optimiser steps after the last saved state, however fast or slow the machine is.
PAUSE_IN_EPOCH_1 = """
import sys, time
from pathlib import Path

import stages.pretrain as stage
from simseg.config.pretrain import PretrainConfig
from simseg.experiments.stage_entry import run_main, stage_config

signal_file = Path(sys.argv.pop(1))
real_train_one_epoch = stage.train_one_epoch


def train_one_epoch(*args, epoch, make_inputs, **kwargs):
    steps = []

    def inputs(batch):
        steps.append(batch)
        if epoch == 1 and len(steps) == 3:
            signal_file.write_text("in epoch 1")
            time.sleep(3600)
        return make_inputs(batch)
    return real_train_one_epoch(*args, epoch=epoch, make_inputs=inputs, **kwargs)


stage.train_one_epoch = train_one_epoch
run_main(lambda argv: stage.main(stage_config(PretrainConfig, argv, "pretrain")), sys.argv[1:])
"""


@pytest.mark.slow
def test_kill_9_mid_epoch_resumes_with_each_epoch_logged_once(tmp_path):
    run_dir, in_epoch_1, log = tmp_path / "run", tmp_path / "in_epoch_1", tmp_path / "stderr.txt"
    args = [*TINY, "train.epochs=3", "log.grid_every=0", f"output_dir={run_dir}"]
    with open(log, "w") as stderr:
        process = subprocess.Popen([sys.executable, "-c", PAUSE_IN_EPOCH_1, str(in_epoch_1), *args], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 240
        while not in_epoch_1.exists():
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the run did not reach epoch 1 in 4 minutes"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert json.loads((run_dir / "state" / "progress.json").read_text())["epoch"] == 1  # epoch 0's state, no later
    assert [r["epoch"] for r in read_metrics(run_dir)] == [0]
    result = run_cli("stages/pretrain.py", *args, "resume=true")
    assert result.returncode == 0, result.stderr
    epochs = [json.loads(line)["epoch"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2]
    assert (run_dir / "metrics.json").exists()


@pytest.mark.slow
def test_out_of_memory_mid_run_is_one_line_and_keeps_the_last_complete_state(tiny_config, monkeypatch):
    from simseg.models.simmim import SimMIM

    real_forward, calls = SimMIM.forward, []

    def forward_until_the_gpu_is_full(self, *args, **kwargs):
        if self.training:
            calls.append(1)
            if len(calls) > 6:  # epoch 0 has 6 training batches: the first step of epoch 1 runs out of memory
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(SimMIM, "forward", forward_until_the_gpu_is_full)
    cfg = tiny_config()
    with pytest.raises(SimsegError, match=r"ran out of memory in epoch 1 at step 6 with 8 images per process: lower "
                                          r"train.batch_size \(e.g. train.batch_size=4\)"):
        pretrain_stage.main(cfg)
    run_dir = Path(cfg.output_dir)
    assert json.loads((run_dir / "state" / "progress.json").read_text()) == {"epoch": 1, "step": 6}
    assert [r["epoch"] for r in read_metrics(run_dir)] == [0]
    monkeypatch.setattr(SimMIM, "forward", real_forward)
    pretrain_stage.main(replace(cfg, resume=True))  # and the run continues from there
    assert [r["epoch"] for r in read_metrics(run_dir)] == [0, 1]


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_non_finite_loss_under_mixed_precision_stops_naming_the_epoch_and_step(tiny_config, monkeypatch, precision):
    from simseg.models.simmim import SimMIM

    real_forward = SimMIM.forward

    def forward_that_overflows(self, *args, **kwargs):
        out = real_forward(self, *args, **kwargs)
        return {**out, "loss": out["loss"] * float("inf")} if self.training else out

    monkeypatch.setattr(SimMIM, "forward", forward_that_overflows)
    with pytest.raises(SimsegError, match=r"training loss became (inf|nan) in epoch 0 at step 0: lower train.lr"):
        pretrain_stage.main(tiny_config(f"train.mixed_precision={precision}"))


@pytest.mark.slow
def test_the_probe_scores_the_frozen_encoder_during_pretraining_into_metrics_and_probe_png(tiny_config, tmp_path):
    from tests.helpers import write_pair

    pets = tmp_path / "pets"
    for i in range(14):
        write_pair(pets, f"breed_{i}", size=(40, 36))
    (tmp_path / "test_images.txt").write_text("breed_0\nbreed_1\n")
    cfg = tiny_config("train.epochs=2", "probe.every=1", f"probe.data={pets}", "probe.subset=8",
                      "probe.score_images=4", "probe.steps=20", f"data.exclude={tmp_path / 'test_images.txt'}",
                      "log.grid_every=0")
    run_dir = pretrain_stage.main(cfg)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(0.0 <= r["probe_miou"] <= 1.0 and r["probe_seconds"] > 0 for r in lines)
    assert (run_dir / "probe.png").is_file()
    assert json.loads((run_dir / "metrics.json").read_text())["final_probe_miou"] == lines[-1]["probe_miou"]
