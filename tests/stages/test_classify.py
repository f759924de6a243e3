"""Stage 2 on tiny data (seconds each): MixUp targets, the classifier, the handoff to segmentation, files, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import stages.classify as classify_stage
import stages.segment as segment_stage
from simseg.config.classify import ClassifyConfig, MixupConfig
from simseg.config.loader import load_config
from simseg.config.sections import ModelConfig
from simseg.config.segment import SegmentConfig
from simseg.errors import SimsegError
from simseg.models.classifier import Classifier, build_mixup, mix_batch
from simseg.models.segmentation import SegmentationModel
from simseg.models.vit import build_encoder
from simseg.training.handoff import load_encoder_weights
from simseg.training.weight_files import read_weights
from tests.helpers import interrupted_then_resumed

# A 2-block encoder on 48-px images (the model's 64 with 8-px patches), a few batches per epoch.
CLS_TINY = ["model.depth=2", "model.img_size=64", "model.patch_size=8", "data.subset=32", "data.test_size=12",
            "data.synthetic_image_size=48", "data.num_workers=0", "train.epochs=2", "train.batch_size=8",
            "train.lr=1e-3", "log.progress=false", "eval.every=1"]
COLOURS = {"red": (200, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 200), "yellow": (200, 200, 40),
           "cyan": (40, 200, 200), "magenta": (200, 40, 200)}


@pytest.fixture
def cls_config(tmp_path):
    def make(*overrides: str, output_dir: Path | None = None) -> ClassifyConfig:
        out = output_dir or tmp_path / "cls"
        return load_config(ClassifyConfig, None, [*CLS_TINY, f"output_dir={out}", *overrides])
    return make


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_defaults_are_the_study_intermediate_recipe():
    cfg = load_config(ClassifyConfig)
    assert (cfg.train.lr, cfg.train.epochs, cfg.train.milestones, cfg.train.lr_decay) == (8e-4, 200, [180, 190], 0.1)
    assert cfg.model.drop_rate == 0.1 and cfg.aug.crop_scale == (0.5, 1.0) and cfg.pool == "token"
    assert (cfg.mixup.alpha, cfg.mixup.cutmix_alpha, cfg.mixup.prob, cfg.mixup.switch_prob) == (0.8, 0, 1, 0.5)
    assert cfg.train.label_smoothing == 0.1
    cfg = load_config(ClassifyConfig, None, ["model.depth=2", "aug.hflip=0.3", "train.epochs=3"])
    assert cfg.model.drop_rate == 0.1 and cfg.aug.crop_scale == (0.5, 1.0) and cfg.train.lr == 8e-4


@pytest.mark.parametrize("override,message", [
    ("train.batch_size=7", "train.batch_size=7 must be even with MixUp/CutMix on"),
    ("mixup.prob=2", "mixup.prob and mixup.switch_prob are probabilities"),
    ("train.label_smoothing=1", "train.label_smoothing must be in [0, 1)"),
    ("pool=avg", "pool='avg' is not allowed; choose one of token, mean"),
    ("head=avg", "pool='avg' is not allowed; choose one of token, mean"),  # pool's name in configs before
    ("data.test_size=some", "data.test_size='some' is not a size"),
])
def test_bad_values_fail_in_one_line_naming_them(override, message):
    with pytest.raises(SimsegError) as err:
        load_config(ClassifyConfig, None, [override])
    assert message in str(err.value) and "\n" not in str(err.value)
    load_config(ClassifyConfig, None, ["train.batch_size=7", "mixup.prob=0"])  # odd batches are fine unmixed


def mixed(seed: int, images, labels, **mixup) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    np.random.seed(seed)
    return mix_batch(build_mixup(MixupConfig(**mixup), 0.1, 6), images.clone(), labels, 6, 0.1)


@pytest.mark.parametrize("mixup", [dict(), dict(cutmix_alpha=1.0), dict(cutmix_alpha=1.0, switch_prob=1.0)])
def test_mixup_targets_sum_to_one_and_are_reproducible(mixup):
    images, labels = torch.randn(8, 3, 16, 16), torch.tensor([0, 1, 2, 3, 4, 5, 0, 1])
    mixed_images, targets = mixed(3, images, labels, **mixup)
    assert targets.shape == (8, 6) and torch.allclose(targets.sum(1), torch.ones(8))
    assert (targets > 0.1 / 6 + 1e-6).sum(1).min() == 2  # two classes each: the image's and its mirror's
    assert not torch.equal(mixed_images, images)
    again_images, again = mixed(3, images, labels, **mixup)
    assert torch.equal(again, targets) and torch.equal(again_images, mixed_images)
    _, other = mixed(4, images, labels, **mixup)
    assert not torch.equal(other, targets)


@pytest.mark.parametrize("mixup", [dict(alpha=0.0), dict(prob=0.0)])
def test_mixing_off_leaves_smoothed_one_hot_targets(mixup):
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 5, 2, 2])
    out_images, targets = mixed(0, images, labels, **mixup)
    expected = torch.full((4, 6), 0.1 / 6)
    expected[torch.arange(4), labels] = 0.9 + 0.1 / 6
    assert torch.equal(out_images, images) and torch.allclose(targets, expected)


@pytest.mark.parametrize("pool", ["token", "mean"])
def test_classifier_shapes_losses_and_gradients(pool):
    model = Classifier(build_encoder(ModelConfig(depth=2, img_size=32)), 6, pool, label_smoothing=0.1)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    out = model(images=images)
    assert out["logits"].shape == (4, 6) and "loss" not in out
    hard = model(images=images, targets=labels)["loss"]
    _, soft_targets = mix_batch(None, images, labels, 6, 0.1)
    soft = model(images=images, targets=soft_targets)["loss"]
    assert torch.isfinite(hard) and torch.allclose(hard, soft, atol=1e-5)  # smoothing == smoothed one-hot rows
    soft.backward()
    assert all(p.grad is not None for p in model.parameters())  # every parameter is trained
    assert model.head_keys() == {"head.weight", "head.bias"}
    assert "encoder.pos_embed" in model.no_weight_decay()


@pytest.mark.slow
def test_classify_export_loads_into_segmentation_with_only_the_seg_head_missing(cls_config, tmp_path):
    run_dir = classify_stage.main(cls_config("train.epochs=1"))
    seg_cfg = load_config(SegmentConfig, None, ["model.depth=2", "model.img_size=64", "model.patch_size=8",
                                                f"init={run_dir}"])
    model, lineage = segment_stage.build_model(seg_cfg, 3)
    export, _ = read_weights(run_dir / "encoder.safetensors")
    assert all(torch.equal(model.encoder.state_dict()[k], export[k]) for k in export)
    assert lineage["export_stage"] == "classify"
    # the MAE-style check itself: exactly the segmentation head is left missing
    fresh = SegmentationModel(build_encoder(seg_cfg.model))
    missing, unexpected = fresh.load_state_dict({f"encoder.{k}": v for k, v in export.items()}, strict=False)
    assert set(missing) == fresh.head_keys() == {"head.weight", "head.bias"} and not unexpected
    load_encoder_weights(fresh, export, "export")
    classifier_weights, _ = read_weights(run_dir / "model.safetensors")  # encoder + classifier head: refused
    with pytest.raises(SimsegError, match="does not fit"):
        load_encoder_weights(fresh, classifier_weights, "model.safetensors")


@pytest.mark.slow
def test_classify_starts_from_a_pretraining_export(cls_config, tmp_path):
    import stages.pretrain as pretrain_stage
    from simseg.config.pretrain import PretrainConfig

    pretrained = pretrain_stage.main(load_config(PretrainConfig, None, [
        "model.depth=2", "model.img_size=64", "model.patch_size=8", "mask.unit=8", "data.synthetic_size=24",
        "data.val_size=2", "data.num_workers=0", "train.epochs=1", "train.batch_size=8", "log.progress=false",
        "log.grid_every=0", f"output_dir={tmp_path / 'pretrain'}"]))
    run_dir = classify_stage.main(cls_config("train.epochs=1", f"init={pretrained}"))
    lineage = json.loads((run_dir / "lineage.json").read_text())
    assert lineage["export_stage"] == "pretrain" and lineage["export"].endswith("encoder.safetensors")
    assert lineage["export_config_sha256"] and (run_dir / "encoder.safetensors").is_file()


@pytest.mark.slow
def test_synthetic_run_writes_every_file_of_the_run_folder(cls_config):
    run_dir = classify_stage.main(cls_config("pool=mean", "mixup.cutmix_alpha=1.0"))
    for name in ("config.yaml", "lineage.json", "classes.json", "metrics.jsonl", "metrics.json", "confusion.json",
                 "confusion.png", "test_images.txt", "train_images.txt", "encoder.safetensors", "model.safetensors",
                 "state/progress.json"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "classes.json").read_text()) == ["ellipse", "rectangle", "triangle", "star", "ring",
                                                                  "blob"]
    lines = jsonl(run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in lines] == [0, 1] and all("test_top1" in r for r in lines)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    matrix = torch.tensor(json.loads((run_dir / "confusion.json").read_text())["matrix"])
    assert matrix.sum() == 12 and metrics["top1"] == matrix.trace().item() / 12 == lines[-1]["test_top1"]
    assert metrics["peak_memory_mib"] > 0
    per_class = {c: (matrix[i, i] / matrix[i].sum()).item() for i, c in enumerate(metrics["classes"])
                 if matrix[i].sum()}
    assert {c: v for c, v in metrics["class_accuracy"].items() if v is not None} == pytest.approx(per_class)
    assert (metrics["train_images"], metrics["test_images"], metrics["chance"]) == (32, 12, 1 / 6)
    assert not list(run_dir.glob("**/*.tmp"))


def colour_folder(root: Path, train: int, test: int) -> Path:
    """A train/test ImageFolder of 6 classes that a tiny model learns in seconds: noisy images of one colour each."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("test", test)):
        for name, colour in COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(np.array(colour) + rng.normal(0, 40, (40, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


@pytest.mark.slow
def test_short_synthetic_run_beats_chance(cls_config):
    # 12 steps of a 2-block encoder; the synthetic label shows in the shape's form and in its hue
    run_dir = classify_stage.main(cls_config("data.subset=192", "data.test_size=60", "train.epochs=4",
                                             "train.batch_size=16", "aug.color_jitter_prob=0", "eval.every=4"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_images"] == 60 and metrics["chance"] == 1 / 6
    assert metrics["top1"] > 2 * metrics["chance"], metrics["top1"]


@pytest.mark.slow
def test_image_folder_run_learns_the_classes_its_folders_name(cls_config, tmp_path):
    source = colour_folder(tmp_path / "colours", train=16, test=4)
    run_dir = classify_stage.main(cls_config(f"data.source={source}", "data.subset=null", "data.test_size=null",
                                             "train.epochs=4", "train.batch_size=16", "aug.color_jitter_prob=0"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["classes"] == sorted(COLOURS) and metrics["test_images"] == 24
    assert metrics["top1"] > 2 * metrics["chance"], metrics["top1"]


@pytest.mark.slow
def test_resume_ends_with_the_weights_of_an_uninterrupted_run(cls_config, tmp_path, monkeypatch):
    overrides = ("train.epochs=3", "train.milestones=[2]", "data.num_workers=1", "mixup.cutmix_alpha=1.0",
                 "model.drop_path_rate=0.1")
    whole = classify_stage.main(cls_config(*overrides, output_dir=tmp_path / "whole"))

    split = interrupted_then_resumed(classify_stage, cls_config, overrides, tmp_path / "split", monkeypatch)

    for name in ("model.safetensors", "encoder.safetensors"):
        a, _ = read_weights(whole / name)
        b, _ = read_weights(split / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    timing = ("seconds", "images_per_s", "loader_wait")
    strip = [{k: v for k, v in r.items() if k not in timing} for r in jsonl(whole / "metrics.jsonl")]
    assert strip == [{k: v for k, v in r.items() if k not in timing} for r in jsonl(split / "metrics.jsonl")]
    assert json.loads((whole / "confusion.json").read_text()) == json.loads((split / "confusion.json").read_text())


def test_resume_refuses_changed_classes(tmp_path):
    classify_stage.check_or_save_classes(tmp_path, ["a", "b"], write=True)
    classify_stage.check_or_save_classes(tmp_path, ["a", "b"], write=True)
    with pytest.raises(SimsegError, match="classes.json lists other classes"):
        classify_stage.check_or_save_classes(tmp_path, ["a", "c"], write=True)


@pytest.mark.slow
def test_classify_command_and_its_help(capsys, tmp_path):
    from simseg.cli import main as cli_main

    with pytest.raises(SystemExit):
        cli_main(["classify", "--help"])
    out = capsys.readouterr().out
    assert "\n  mixup.alpha = 0.8\n" in out and "\n  train.label_smoothing = 0.1\n" in out
    cli_main(["classify", *CLS_TINY, "train.epochs=1", "data.subset=8", f"output_dir={tmp_path / 'cli'}"])
    assert (tmp_path / "cli" / "metrics.json").is_file()
