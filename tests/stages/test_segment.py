"""End-to-end runs of stage 3 on tiny synthetic data (seconds each): files, splits, pretrained init, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import stages.pretrain as pretrain_stage
import stages.segment as segment_stage
from simseg.config.loader import load_config
from simseg.config.segment import SegmentConfig
from simseg.data.label_set import IGNORE_INDEX
from simseg.data.splits import load_split, save_split
from simseg.data.synthetic_pairs import SYNTHETIC_TRIMAP
from simseg.errors import SimsegError
from simseg.inference.own_test_set import own_test_pairs
from simseg.inference.segmenter import Segmenter
from simseg.training.handoff import load_encoder
from simseg.training.image_scores import read_test_scores
from simseg.training.metrics import confusion_matrix, segmentation_metrics
from simseg.training.rundir import check_or_save_splits
from simseg.training.weight_files import read_weights
from tests.helpers import interrupted_then_resumed

# A 2-block encoder, 8 test and 16 training images of 48 px (resized to the model's 128): a run takes seconds.
SEG_TINY = ["model.depth=2", "data.test_size=8", "data.subset=16", "data.synthetic_image_size=48",
            "data.num_workers=0", "train.epochs=2", "train.batch_size=8", "log.progress=false", "log.examples=2",
            "eval.every=1"]


@pytest.fixture
def seg_config(tmp_path):
    def make(*overrides: str, output_dir: Path | None = None) -> SegmentConfig:
        out = output_dir or tmp_path / "seg"
        return load_config(SegmentConfig, None, [*SEG_TINY, f"output_dir={out}", *overrides])
    return make


@pytest.fixture
def pretrained(tiny_config, tmp_path) -> Path:
    """A 1-epoch pretraining run folder with the segmentation tests' encoder architecture."""
    return pretrain_stage.main(tiny_config("train.epochs=1", "log.grid_every=0", output_dir=tmp_path / "pretrain"))


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_defaults_are_the_study_fine_tuning_recipe():
    cfg = load_config(SegmentConfig)
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.epochs) == (2e-3, 1e-4, 100)
    assert cfg.train.milestones == [70, 90, 95] and cfg.train.lr_decay == 0.5 and cfg.train.warmup_epochs == 0
    assert cfg.model.drop_rate == 0.1 and cfg.aug.crop_scale == (0.5, 1.0)
    assert (cfg.init, cfg.model.arch, cfg.loss, cfg.data.test_size, cfg.data.val_size) == (
        "scratch", "vit_linear", "ce", "1k", "0")
    assert (cfg.train.ema, cfg.train.layer_decay, cfg.train.freeze_encoder_epochs) == (0, 1, 0)
    # a section's other defaults survive overriding one of its keys
    cfg = load_config(SegmentConfig, None, ["model.depth=2", "aug.hflip=0.3", "train.epochs=3"])
    assert cfg.model.drop_rate == 0.1 and cfg.aug.crop_scale == (0.5, 1.0) and cfg.train.lr == 2e-3


@pytest.mark.slow
def test_run_writes_every_file_of_the_run_folder(seg_config):
    run_dir = segment_stage.main(seg_config())
    for name in ("config.yaml", "lineage.json", "metrics.jsonl", "metrics.json", "confusion.json", "examples.png",
                 "test_images.txt", "train_images.txt", "encoder.safetensors", "model.safetensors",
                 "state/progress.json", "test_scores.npz"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "val_images.txt").exists() and not (run_dir / "best.safetensors").exists()
    lines = jsonl(run_dir / "metrics.jsonl")
    # the test set is scored once, after training: no per-epoch test curve unless eval.test_curve asks for one
    assert [r["epoch"] for r in lines] == [0, 1] and not any("test_miou" in r or "val_miou" in r for r in lines)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    confusion = json.loads((run_dir / "confusion.json").read_text())
    # scored at the masks' own 48 px, not the model's 128: every pixel of the 8 test masks once
    assert confusion["classes"] == list(SYNTHETIC_TRIMAP.names) and sum(map(sum, confusion["matrix"])) == 8 * 48 * 48
    assert (confusion["scored_at"], confusion["view"], metrics["scored_at"]) == ("native", "plain", "native")
    recomputed = segmentation_metrics(torch.tensor(confusion["matrix"]), list(SYNTHETIC_TRIMAP.names))
    assert metrics["miou"] == recomputed["miou"] == metrics["scores"]["native"]["plain"]["miou"]
    assert set(metrics["scores"]["native"]) == {"plain"} and "confusion" not in metrics["scores"]["input"]["plain"]
    check_native_scores(run_dir, metrics)
    for key in ("iou", "pixel_accuracy", "mean_pixel_accuracy", "dice", "fwiou", "parameters", "train_seconds",
                "images_per_s", "peak_memory_mib"):
        assert metrics[key] is not None, key
    assert set(metrics["iou"]) == set(SYNTHETIC_TRIMAP.names) and metrics["selected_on"] == "last epoch"
    assert metrics["time_to_target"] == {}  # without validation or a test curve there is no per-epoch score
    assert (metrics["train_images"], metrics["test_images"], metrics["reported_epoch"]) == (16, 8, 1)
    assert json.loads((run_dir / "lineage.json").read_text()) == {"init": "scratch"}
    encoder, _ = load_encoder(run_dir)
    weights, meta = read_weights(run_dir / "model.safetensors")
    assert torch.equal(encoder.pos_embed, weights["encoder.pos_embed"]) and meta["arch"] == "vit_linear"
    assert not list(run_dir.glob("**/*.tmp"))


def check_native_scores(run_dir: Path, metrics: dict, tta: bool = False) -> None:
    """metrics.json's native figures are what the run's Segmenter predicts at each test photo's own size, scored
    against its mask as the source stores it; test_scores.npz's per-image counts add up to its per-class IoU."""
    scores = read_test_scores(run_dir)
    for view in ("plain", "tta") if tta else ("plain",):
        segmenter = Segmenter.from_run(run_dir, device="cpu", tta=view == "tta")
        source, indices = own_test_pairs(segmenter.run)
        pairs = [source.pair(i) for i in indices]  # in test_images.txt order
        names, count = list(segmenter.classes), len(segmenter.classes)
        predicted = segmenter.predict([photo for photo, _ in pairs], probabilities=False, resolution="original")
        confusion = sum(confusion_matrix(torch.from_numpy(p.labels).long(), torch.from_numpy(mask).long(), count,
                                         IGNORE_INDEX) for p, (_, mask) in zip(predicted, pairs))
        figures = metrics["scores"]["native"][view]
        assert segmentation_metrics(confusion, names)["miou"] == pytest.approx(figures["miou"], abs=1e-6), view

        assert scores.names == load_split(run_dir / "test_images.txt") and scores.classes == names
        for kind, per_class in (("iou", "iou"), ("boundary", "boundary_iou_per_class")):
            per_image = scores.counts(view, kind=kind)
            assert per_image.shape == (len(pairs), count, 2)
            intersection, union = per_image.sum(0).T  # (C,) each, summed over the test images
            expected = {n: i / u if u else None for n, i, u in zip(names, intersection, union)}
            assert figures[per_class] == pytest.approx(expected, abs=1e-12), (view, kind)
        assert scores.counts(view, "input").shape == (len(pairs), count, 2)
    assert (scores.counts("tta") is None) == (not tta) and scores.counts(at="input", kind="boundary") is None


@pytest.mark.slow
def test_splits_in_the_run_folder_are_fixed_nested_and_disjoint(seg_config, tmp_path):
    small = segment_stage.main(seg_config("train.epochs=1", "data.subset=6", "data.val_size=3",
                                          output_dir=tmp_path / "small"))
    large = segment_stage.main(seg_config("train.epochs=1", "data.val_size=3", output_dir=tmp_path / "large"))
    test, train, val = (load_split(small / f"{s}_images.txt") for s in ("test", "train", "val"))
    assert (len(test), len(train), len(val)) == (8, 6, 3)
    assert not set(test) & (set(train) | set(val)) and not set(train) & set(val)
    assert load_split(large / "test_images.txt") == test  # the test set does not depend on the subset
    assert load_split(large / "val_images.txt") == val
    assert set(train) <= set(load_split(large / "train_images.txt"))  # nested subsets


@pytest.mark.slow
def test_val_split_picks_the_reported_epoch_and_the_recipe_options_take_effect(seg_config, monkeypatch):
    epochs_seen = []  # per epoch: the raw weights before and after, the EMA's after, and each group's (scale, LR)
    real_train_one_epoch = segment_stage.train_one_epoch

    def recorded(model, loader, optimizer, accelerator, **kwargs):
        def weights(module):
            return {k: v.detach().clone() for k, v in module.state_dict().items()}

        raw = accelerator.unwrap_model(model)
        before = weights(raw)
        result = real_train_one_epoch(model, loader, optimizer, accelerator, **kwargs)
        names = {id(p): n for n, p in raw.named_parameters()}
        epochs_seen.append({"before": before, "after": weights(raw), "ema": weights(kwargs["ema"].module),
                            "groups": [(g["lr_scale"], g["lr"], [names[id(p)] for p in g["params"]])
                                       for g in optimizer.param_groups]})
        return result

    monkeypatch.setattr(segment_stage, "train_one_epoch", recorded)
    run_dir = segment_stage.main(seg_config("train.epochs=3", "data.val_size=4", "eval.test_curve=true",
                                            "head=linear_upsample", "loss=ce+dice", "train.ema=0.9",
                                            "train.layer_decay=0.75", "train.freeze_encoder_epochs=1"))
    lines = jsonl(run_dir / "metrics.jsonl")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    best = max(lines, key=lambda r: r["val_miou"])
    assert metrics["selected_on"] == "val_miou" and metrics["reported_epoch"] == best["epoch"]
    assert metrics["best_val_miou"] == best["val_miou"]
    assert metrics["scores"]["input"]["plain"]["miou"] == best["test_miou"]
    best_weights, _ = read_weights(run_dir / "best.safetensors")
    model_weights, meta = read_weights(run_dir / "model.safetensors")
    assert all(torch.equal(best_weights[k], model_weights[k]) for k in best_weights)

    # head=linear_upsample (the old name of model.arch=vit_linear_upsample): one output per class, upsampled, where
    # vit_linear predicts every pixel of a patch
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["arch"] == metrics["arch"] == meta["arch"] == "vit_linear_upsample" and "head" not in config
    assert model_weights["head.weight"].shape[0] == len(SYNTHETIC_TRIMAP.names)
    assert config["loss"] == metrics["loss"] == "ce+dice"
    # train.freeze_encoder_epochs=1: epoch 0 trains only the head, epoch 1 the encoder too
    first, second = epochs_seen[0], epochs_seen[1]
    for epoch, encoder_moves in ((first, False), (second, True)):
        moved = {k for k in epoch["before"] if not torch.equal(epoch["before"][k], epoch["after"][k])}
        assert {k.split(".")[0] for k in moved} == ({"encoder", "head"} if encoder_moves else {"head"})
    # train.ema=0.9: the reported and exported weights are the average's at the reported epoch, not the raw ones
    reported = epochs_seen[metrics["reported_epoch"]]
    assert all(torch.equal(model_weights[k], reported["ema"][k]) for k in model_weights)
    assert not all(torch.equal(model_weights[k], reported["after"][k]) for k in model_weights)
    # train.layer_decay=0.75: the head at the full LR, block i of 2 at 0.75^(2 - i) (the final norm with the last
    # block), the embeddings at 0.75^3
    def scale_of(name: str) -> float:
        if name.startswith("head."):
            return 1.0
        if name.startswith("encoder.blocks."):
            return 0.75 ** (2 - int(name.split(".")[2]))
        return 0.75 if name.startswith("encoder.norm.") else 0.75 ** 3

    head_lr = next(lr for scale, lr, _ in second["groups"] if scale == 1.0)
    for scale, lr, names in second["groups"]:
        assert all(scale_of(name) == pytest.approx(scale) for name in names), names
        assert lr == pytest.approx(scale * head_lr)


@pytest.mark.slow
def test_pretrained_init_changes_the_encoder_and_leaves_the_head_as_from_scratch(seg_config, pretrained):
    torch.manual_seed(0)
    scratch, lineage = segment_stage.build_model(seg_config(), 3)
    assert lineage == {"init": "scratch"}
    torch.manual_seed(0)
    model, lineage = segment_stage.build_model(seg_config(f"init={pretrained}"), 3)
    export, _ = read_weights(pretrained / "encoder.safetensors")
    assert all(torch.equal(model.encoder.state_dict()[k], export[k]) for k in export)
    assert not torch.equal(model.encoder.pos_embed, scratch.encoder.pos_embed)
    assert torch.equal(model.head.weight, scratch.head.weight) and torch.equal(model.head.bias, scratch.head.bias)
    assert model.encoder.blocks[0].mlp.drop1.p == 0.1  # the segmentation config's dropout, not the export's 0
    assert lineage["export"] == str((pretrained / "encoder.safetensors").resolve())
    assert lineage["export_stage"] == "pretrain" and len(lineage["export_sha256"]) == 64
    assert lineage["export_config"] == str((pretrained / "config.yaml").resolve())

    run_dir = segment_stage.main(seg_config(f"init={pretrained / 'encoder.safetensors'}", "train.epochs=1"))
    assert json.loads((run_dir / "lineage.json").read_text())["export_sha256"] == lineage["export_sha256"]
    assert json.loads((run_dir / "metrics.json").read_text())["init"].endswith("encoder.safetensors")


@pytest.mark.slow
def test_wrong_exports_are_refused_in_one_line(seg_config, pretrained, tmp_path):
    with pytest.raises(SimsegError, match="trained with another architecture .*depth: export 2, config 3"):
        segment_stage.build_model(seg_config(f"init={pretrained}", "model.depth=3"), 3)
    with pytest.raises(SimsegError, match="is not a simseg encoder export"):
        segment_stage.build_model(seg_config(f"init={pretrained / 'model.safetensors'}"), 3)
    with pytest.raises(SimsegError, match="does not exist"):
        segment_stage.build_model(seg_config(f"init={tmp_path / 'nowhere'}"), 3)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [
    ("train.ema=0.9", "train.layer_decay=0.75", "train.freeze_encoder_epochs=1", "model.drop_path_rate=0.1"),
    ("train.sam_rho=0.05", "train.sam_interval=2", "train.ema_half_life=8", "train.ema_interval=3",
     "train.schedule=cosine", "model.arch=vit_pup", "mixup.alpha=0.2", "mixup.cutmix_alpha=1.0"),
], ids=["ema-layer-decay-freeze", "sam-ema-half-life-cosine-mixup"])
def test_resume_ends_with_the_weights_of_an_uninterrupted_run(seg_config, tmp_path, monkeypatch, recipe):
    overrides = ("train.epochs=3", "train.milestones=[2]", "data.val_size=4", "data.num_workers=1", *recipe)
    whole = segment_stage.main(seg_config(*overrides, output_dir=tmp_path / "whole"))

    split = interrupted_then_resumed(segment_stage, seg_config, overrides, tmp_path / "split", monkeypatch)

    for name in ("model.safetensors", "best.safetensors", "encoder.safetensors"):
        a, _ = read_weights(whole / name)
        b, _ = read_weights(split / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    timing = ("seconds", "images_per_s", "loader_wait")
    strip = [{k: v for k, v in r.items() if k not in timing} for r in jsonl(whole / "metrics.jsonl")]
    assert strip == [{k: v for k, v in r.items() if k not in timing} for r in jsonl(split / "metrics.jsonl")]
    assert [r["epoch"] for r in jsonl(split / "metrics.jsonl")] == [0, 1, 2]
    assert (json.loads((whole / "confusion.json").read_text()) == json.loads((split / "confusion.json").read_text()))


def test_resume_refuses_a_changed_test_set(tmp_path):
    save_split(tmp_path / "test_images.txt", ["a", "b"])
    check_or_save_splits(tmp_path, {"test": ["a", "b"], "train": ["c"], "val": []}, write=True)
    assert load_split(tmp_path / "train_images.txt") == ["c"] and not (tmp_path / "val_images.txt").exists()
    with pytest.raises(SimsegError, match="test_images.txt lists other images than this run's test split"):
        check_or_save_splits(tmp_path, {"test": ["a", "x"], "train": ["c"], "val": []}, write=True)


@pytest.mark.parametrize("override,message", [
    ("head=conv", "head='conv' is not allowed; set model.arch instead"),
    ("model.arch=unet", "model.arch 'unet' is unknown; choose one of vit_linear"),
    ("loss=dice", "loss='dice' is not allowed; choose one of ce, ce+dice"),
    ("train.ema=1.5", "train.ema must be 0 (off) or a decay in (0, 1)"),
    ("train.layer_decay=0", "train.layer_decay must be in (0, 1]"),
    ("train.freeze_encoder_epochs=2", "train.freeze_encoder_epochs must be in [0, train.epochs)"),
    ("data.test_size=lots", "data.test_size='lots' is not a size"),
    ("data.val_size=-3", "data.val_size='-3' is not a size"),
    ("eval.every=-1", "eval.every must be >= 0"),
    ("eval.tta_scales=[]", "eval.tta_scales must be a non-empty list"),
    ("train.schedule=linear", "train.schedule='linear' is not allowed; choose one of multistep, cosine"),
    ("train.ema_half_life=-1", "train.ema_half_life must be >= 0"),
    ("log.examples=0", "log.examples must be >= 1"),
    ("init=", "init must be 'scratch' or the path"),
    ("data.mask_colum=x", "unknown config key 'data.mask_colum' (did you mean 'data.mask_column'?)"),
])
def test_bad_keys_and_values_fail_in_one_line_naming_them(override, message):
    with pytest.raises(SimsegError) as err:
        load_config(SegmentConfig, None, [*SEG_TINY, override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_stage_refuses_impossible_splits(seg_config, tmp_path):
    with pytest.raises(SimsegError, match="data.source=synthetic needs data.subset"):
        segment_stage.main(seg_config("data.subset=null"))
    with pytest.raises(SimsegError, match="data.test_size=30 asks for 30 test images but .* has 20"):
        segment_stage.main(seg_config("data.source=" + str(_pets_folder(tmp_path, 20)), "data.test_size=30",
                                      "data.subset=null", output_dir=tmp_path / "other"))


def _pets_folder(tmp_path: Path, count: int) -> Path:
    """An Oxford-IIIT Pet layout of ``count`` small pairs."""
    import numpy as np
    from PIL import Image

    root = tmp_path / "oxford-iiit-pet"
    (root / "images").mkdir(parents=True)
    (root / "annotations" / "trimaps").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "images" / f"cat_{i}.jpg")
        trimap = np.full((40, 48), 2, dtype=np.uint8)
        trimap[8:32, 10:38], trimap[10:30, 12:36] = 3, 1
        Image.fromarray(trimap).save(root / "annotations" / "trimaps" / f"cat_{i}.png")
    return tmp_path


@pytest.mark.slow
def test_oxford_folder_run(seg_config, tmp_path):
    source = _pets_folder(tmp_path, 14)
    run_dir = segment_stage.main(seg_config(f"data.source={source}", "data.test_size=4", "data.subset=null",
                                            "train.epochs=1"))
    assert len(load_split(run_dir / "train_images.txt")) == 10
    assert all(name.startswith("cat_") for name in load_split(run_dir / "test_images.txt"))


@pytest.mark.slow
def test_a_mask_folder_of_other_sizes_is_scored_at_each_masks_own_size(seg_config, tmp_path):
    """Photos larger and smaller than the model's 64 px input, of other aspects, some pixels ignored, TTA on, read
    image by image: metrics.json's native figures are what predict gives at each photo's own size."""
    import numpy as np
    from PIL import Image

    from simseg.data.synthetic_export import write_synthetic

    data = write_synthetic(tmp_path / "data", "mask-folder", count=20, size=96)
    for i, image_file in enumerate(sorted((data / "images").glob("*.png"))):
        mask_file = data / "masks" / image_file.name
        size = [(96, 96), (72, 112), (50, 40), (64, 64)][i % 4]  # (width, height)
        mask = np.array(Image.open(mask_file).resize(size, Image.NEAREST))
        mask[: 3 + i % 3] = IGNORE_INDEX  # a strip without labels
        Image.fromarray(mask).save(mask_file)
        Image.open(image_file).resize(size, Image.BILINEAR).save(image_file)
    run_dir = segment_stage.main(seg_config(f"data.source={data}", "data.test_size=8", "data.subset=null",
                                            "model.img_size=64", "train.epochs=1", "eval.tta=true",
                                            "eval.tta_scales=[1.0,1.5]", "data.pipeline=per_image"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["scored_at"], metrics["test_scores"], metrics["pipeline"]) == ("native", "test_scores.npz",
                                                                                   "per_image")
    assert metrics["miou"] == metrics["scores"]["native"]["tta"]["miou"]
    assert metrics["plain_miou"] == metrics["scores"]["native"]["plain"]["miou"]
    assert isinstance(metrics["scores"]["input"]["plain"]["miou"], float)
    confusion = json.loads((run_dir / "confusion.json").read_text())
    assert (confusion["scored_at"], confusion["view"]) == ("native", "tta")
    masks = [np.array(Image.open(data / "masks" / f"{n}.png")) for n in load_split(run_dir / "test_images.txt")]
    assert sum(map(sum, confusion["matrix"])) == sum(int((m != IGNORE_INDEX).sum()) for m in masks)
    check_native_scores(run_dir, metrics, tta=True)


@pytest.mark.slow
def test_segment_command_and_its_help(capsys, seg_config, tmp_path):
    from simseg.cli import main as cli_main

    with pytest.raises(SystemExit):
        cli_main(["segment", "--help"])
    out = capsys.readouterr().out
    assert "\n  init = scratch\n" in out and "\n  data.test_size = 1k\n" in out and "\n  train.ema = 0\n" in out
    cli_main(["segment", *SEG_TINY, "train.epochs=1", f"output_dir={tmp_path / 'cli'}"])
    assert (tmp_path / "cli" / "metrics.json").is_file()


@pytest.mark.slow
def test_a_cnn_model_runs_resumes_and_writes_its_cost_without_a_vit_export(seg_config, tmp_path, monkeypatch):
    cnn = ["model.arch=unet_resnet18", "model.img_size=64", "aug.preset=heavy"]
    run_dir = interrupted_then_resumed(segment_stage, seg_config, cnn, tmp_path / "unet", monkeypatch)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["arch"], metrics["aug"], metrics["parameters"]) == ("unet_resnet18", "heavy", 14_328_499)
    assert metrics["encoder_parameters"] == 11_176_512 and metrics["gflops"] > 0
    assert metrics["inference_images_per_s"] > 0 and set(metrics["precision"]) == set(SYNTHETIC_TRIMAP.names)
    assert not (run_dir / "encoder.safetensors").exists()  # the handoff format is the ViT's
    weights, meta = read_weights(run_dir / "model.safetensors")
    assert meta["arch"] == "unet_resnet18" and any(k.startswith("net.decoder.") for k in weights)
    uninterrupted = segment_stage.main(seg_config(*cnn, output_dir=tmp_path / "straight"))
    straight, _ = read_weights(uninterrupted / "model.safetensors")
    assert all(torch.allclose(weights[k].float(), straight[k].float(), atol=1e-5) for k in weights)


@pytest.mark.slow
def test_a_vit_decoder_starts_from_a_simmim_export_and_a_cnn_refuses_it(seg_config, pretrained):
    torch.manual_seed(0)
    model, lineage = segment_stage.build_model(seg_config(f"init={pretrained}", "model.arch=vit_fused_skip"), 3)
    export, _ = read_weights(pretrained / "encoder.safetensors")
    assert all(torch.equal(model.encoder.state_dict()[k], export[k]) for k in export)
    assert lineage["export_stage"] == "pretrain"
    run_dir = segment_stage.main(seg_config(f"init={pretrained}", "model.arch=vit_pup", "train.epochs=1"))
    assert json.loads((run_dir / "metrics.json").read_text())["arch"] == "vit_pup"
    load_encoder(run_dir)  # its export hands on like any ViT stage's
    with pytest.raises(SimsegError, match="is a simseg ViT encoder export; unet_resnet18 has a CNN encoder"):
        segment_stage.build_model(seg_config(f"init={pretrained / 'encoder.safetensors'}",
                                             "model.arch=unet_resnet18", "model.img_size=64"), 3)


@pytest.mark.slow
def test_tta_reports_both_figures_and_says_it_was_used(seg_config):
    run_dir = segment_stage.main(seg_config("eval.tta=true", "eval.test_curve=true", "train.epochs=1",
                                            "model.arch=vit_pup"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["tta"] == {"scales": [0.75, 1.0, 1.25], "flip": True}
    plain = jsonl(run_dir / "metrics.jsonl")[-1]["test_miou"]  # the per-epoch scores stay one plain view at input size
    assert metrics["scores"]["input"]["plain"]["miou"] == plain and 0 <= metrics["plain_miou"] <= 1
    assert metrics["plain_miou"] == metrics["scores"]["native"]["plain"]["miou"]
    assert metrics["miou"] == metrics["scores"]["native"]["tta"]["miou"]
    assert isinstance(metrics["scores"]["input"]["tta"]["miou"], float)
    confusion = json.loads((run_dir / "confusion.json").read_text())["matrix"]
    assert metrics["miou"] == segmentation_metrics(torch.tensor(confusion), list(SYNTHETIC_TRIMAP.names))["miou"]


@pytest.mark.slow
def test_a_non_finite_loss_under_fp16_stops_naming_the_epoch_and_step(seg_config, monkeypatch):
    from simseg.models.segmentation import SegmentationModel

    real_forward = SegmentationModel.forward

    def forward_that_overflows(self, *args, **kwargs):
        out = real_forward(self, *args, **kwargs)
        return {**out, "loss": out["loss"] * float("inf")} if self.training else out

    monkeypatch.setattr(SegmentationModel, "forward", forward_that_overflows)
    with pytest.raises(SimsegError, match=r"training loss became (inf|nan) in epoch 0 at step 0: lower train.lr"):
        segment_stage.main(seg_config("train.mixed_precision=fp16"))
