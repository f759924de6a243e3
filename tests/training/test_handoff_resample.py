"""The handoff at another image size (the position embedding resampled) and from a pretraining's intermediate
exports (``RUN/exports/epoch_NNN``): loading, lineage, and every check of an ``init`` path."""

from __future__ import annotations

import json

import pytest
import torch
from timm.layers import resample_abs_pos_embed

from simseg.config.classify import ClassifyConfig
from simseg.config.loader import load_config
from simseg.config.sections import ModelConfig
from simseg.config.segment import SegmentConfig
from simseg.errors import SimsegError
from simseg.experiments.sweep.axes import arch_fits
from simseg.experiments.sweep.cells import init_ready
from simseg.experiments.sweep.inits import resolve_init
from simseg.models.registry import model_for_config
from simseg.models.vit import build_encoder
from simseg.training.handoff import export_encoder, exporting_run, load_encoder, load_init

# 2 blocks, patch 8: 64 px -> an 8x8 grid, 96 px -> 12x12
SMALL = dict(depth=2, patch_size=8, embed_dim=32, num_heads=2, mlp_dim=64)


def exported(folder, img_size=64, **metadata):
    """An encoder exported at ``img_size`` into ``folder``, and the encoder itself."""
    cfg = ModelConfig(img_size=img_size, **SMALL)
    torch.manual_seed(0)
    encoder = build_encoder(cfg)
    export_encoder(folder / "encoder.safetensors", encoder, cfg, {"stage": "pretrain", **metadata})
    return encoder


def segment_config(*overrides):
    return load_config(SegmentConfig, None, [*(f"model.{k}={v}" for k, v in SMALL.items()), *overrides])


def test_an_export_loads_at_another_size_with_its_pos_embed_resampled(tmp_path):
    original = exported(tmp_path, img_size=64)
    loaded, cfg = load_encoder(tmp_path, expected=ModelConfig(img_size=96, **SMALL))
    assert cfg.img_size == 96 and tuple(loaded.patch_embed.grid_size) == (12, 12)
    assert loaded.pos_embed.shape == (1, 1 + 12 * 12, 32)
    assert torch.equal(loaded.pos_embed[:, :1], original.pos_embed[:, :1])  # the cls row is kept
    assert torch.equal(loaded.pos_embed, resample_abs_pos_embed(original.pos_embed.detach(), [12, 12], [8, 8]))
    kept = {k: v for k, v in original.state_dict().items() if k != "pos_embed"}
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in kept.items())
    assert loaded.eval()(torch.randn(1, 3, 96, 96)).isfinite().all()


def test_at_the_export_size_the_load_is_bit_identical(tmp_path):
    original = exported(tmp_path, img_size=64)
    loaded, cfg = load_encoder(tmp_path, expected=ModelConfig(img_size=64, **SMALL))
    assert cfg.img_size == 64
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in original.state_dict().items())


def test_another_depth_is_still_refused_in_one_line(tmp_path):
    exported(tmp_path, img_size=64)
    with pytest.raises(SimsegError, match=r"another architecture \(depth: export 2, config 3\): set those") as err:
        load_encoder(tmp_path, expected=ModelConfig(img_size=96, **{**SMALL, "depth": 3}))
    assert "\n" not in str(err.value) and "img_size" not in str(err.value)  # img_size alone is no longer refused


def test_segmentation_lineage_records_the_resampling(tmp_path):
    original = exported(tmp_path, img_size=64)
    cfg = segment_config("model.img_size=96", f"init={tmp_path}")
    model = model_for_config(cfg.model, 3, cfg.loss)  # its encoder built with dynamic_img_size
    lineage = load_init(model, cfg.init, cfg.model)
    assert lineage["pos_embed_resampled"] == {"from_grid": [8, 8], "to_grid": [12, 12]}
    assert torch.equal(model.encoder.pos_embed[:, :1], original.pos_embed[:, :1])
    json.dumps(lineage)  # written to lineage.json as it is
    same_size = segment_config("model.img_size=64", f"init={tmp_path}")
    model = model_for_config(same_size.model, 3, same_size.loss)
    assert "pos_embed_resampled" not in load_init(model, same_size.init, same_size.model)


def intermediate_export(tmp_path):
    """A pretraining run folder with its config and an intermediate export of epoch 3."""
    run = tmp_path / "p45k"
    folder = run / "exports" / "epoch_003"
    folder.mkdir(parents=True)
    (run / "config.yaml").write_text("model:\n  depth: 2\n")
    (run / "metrics.json").write_text(json.dumps({"train_images": 45000}))
    exported(folder, img_size=64)
    return run, folder


@pytest.mark.parametrize("as_file", [False, True], ids=["folder", "file"])
def test_an_intermediate_export_is_an_init_naming_its_run_and_epoch(tmp_path, as_file):
    run, folder = intermediate_export(tmp_path)
    init = str(folder / "encoder.safetensors" if as_file else folder)
    cfg = segment_config("model.img_size=64", f"init={init}")
    lineage = load_init(model_for_config(cfg.model, 3, cfg.loss), cfg.init, cfg.model)
    assert lineage["export"] == str((folder / "encoder.safetensors").resolve())
    assert lineage["export_config"] == str((run / "config.yaml").resolve()) and lineage["export_epoch"] == 3


def test_exporting_run_reads_only_the_exports_layout(tmp_path):
    run, folder = intermediate_export(tmp_path)
    assert exporting_run(folder) == (run, 3) and exporting_run(run) == (run, None)
    assert exporting_run(tmp_path / "epoch_003") == (tmp_path / "epoch_003", None)  # not under exports/
    (folder / "config.yaml").write_text("model: {}\n")  # a folder with a config of its own is a run of its own
    assert exporting_run(folder) == (folder, None)


def test_every_init_check_accepts_an_intermediate_export(tmp_path):
    run, folder = intermediate_export(tmp_path)
    for init in (folder, folder / "encoder.safetensors"):
        assert segment_config(f"init={init}").init == str(init)
        assert load_config(ClassifyConfig, None, [f"init={init}"]).init == str(init)
        resolved = resolve_init(str(init), "--init")
        assert resolved.label == "p45k-epoch_003" and resolved.path == str(folder.resolve())
        assert resolved.pretrained_with("pretrain_images") == 45000  # read from the pretraining run
        assert init_ready(resolved) and arch_fits(resolved.path, "vit_linear")
        assert not arch_fits(resolved.path, "unet_resnet18")
    assert resolve_init(f"early={folder}", "--init").label == "early"
