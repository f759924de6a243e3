"""simseg sweep: the grid, its shards, resuming a killed sweep, pretraining sizes, intermediate inits, refusals."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import pytest
from filelock import FileLock

from simseg.data.label_set import read_run_label_set
from simseg.errors import SimsegError
from simseg.experiments.sweep.cells import RESULTS_LOCK, collect_results
from simseg.experiments.sweep.command import sweep
from simseg.experiments.sweep.plan import Cell, Init, expand_grid, parse_seeds, parse_shard, parse_subsets, shard_cells
from simseg.training import stage_steps

# A 2-block encoder on 48-px synthetic images; the same architecture for pretraining and segmentation.
CELL = ["model.depth=2", "data.test_size=8", "data.synthetic_image_size=48", "data.num_workers=0",
        "train.epochs=1", "train.batch_size=8", "log.progress=false", "log.examples=2"]
PRETRAIN = ["pretrain.model.depth=2", "pretrain.data.synthetic_size=40", "pretrain.data.val_size=4",
            "pretrain.data.num_workers=0", "pretrain.train.epochs=1", "pretrain.train.batch_size=8",
            "pretrain.log.progress=false", "pretrain.log.grid_rows=2"]


def rows(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "results.csv") as file:
        return list(csv.DictReader(file))


def test_grid_expands_every_cell_once_smallest_subsets_first():
    inits = [Init("scratch", "scratch"), Init("a", "/runs/a", (("pretrain_images", 45_000),))]
    cells = expand_grid(inits, parse_subsets("1k,250,500"), parse_seeds("0,1"))
    assert len(cells) == len(set(cells)) == 2 * 3 * 2
    assert [c.subset for c in cells] == [250] * 4 + [500] * 4 + [1000] * 4
    assert [(c.init.label, c.seed) for c in cells[:4]] == [("scratch", 0), ("scratch", 1), ("a", 0), ("a", 1)]
    assert cells[5].name == "scratch/subset-500/seed-1" and Cell(inits[1], 1500, 2).name == "a/subset-1.5k/seed-2"


@pytest.mark.parametrize("count", [1, 2, 3, 5, 13])
def test_shards_are_disjoint_and_cover_the_grid(count):
    cells = expand_grid([Init("scratch", "scratch"), Init("a", "/a")], [250, 500, 1000], [0, 1])
    parts = [shard_cells(cells, *parse_shard(f"{i}/{count}")) for i in range(1, count + 1)]
    assert sorted(c.name for part in parts for c in part) == sorted(c.name for c in cells)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


@pytest.mark.parametrize("call,message", [
    (lambda: parse_shard("0/4"), "--shard '0/4' must be i/n with 1 <= i <= n"),
    (lambda: parse_shard("two"), "--shard 'two' must be i/n"),
    (lambda: parse_subsets("250,,1k"), "--subsets '250,,1k' has an empty item"),
    (lambda: parse_subsets("1k,1000"), "names one size twice"),
    (lambda: parse_subsets("250,lots"), "--subsets='lots' is not a size"),
    (lambda: parse_seeds("0,x"), "--seeds '0,x' must be whole numbers"),
])
def test_bad_grid_options_fail_in_one_line(call, message):
    with pytest.raises(SimsegError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


@pytest.mark.slow
def test_sweep_with_pretraining_sizes_then_a_rerun_does_nothing(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["--subsets", "8,16", "--init", "scratch", "--pretrain-subsets", "16,all", "--pretrain-data", "synthetic",
            "--output-dir", str(out), *CELL, *PRETRAIN]
    sweep(argv)
    table = rows(out)
    assert [(r["init"], r["subset"]) for r in table] == [
        ("scratch", "8"), ("pretrain-16", "8"), ("pretrain-all", "8"),
        ("scratch", "16"), ("pretrain-16", "16"), ("pretrain-all", "16")]
    assert [r["pretrain_images"] for r in table[:3]] == ["", "16", "36"]  # all = 40 minus 4 held out
    assert all(0 <= float(r["miou_plain"]) <= 1 and r["test_images"] == "8" for r in table)
    test_sets = {(out / r["run_dir"] / "test_images.txt").read_text() for r in table}
    assert len(test_sets) == 1  # one test set for every cell
    small, large = ((out / r["run_dir"] / "train_images.txt").read_text().split() for r in table[1:5:3])
    assert set(small) < set(large)  # nested subsets
    # one validation set (auto: 16 synthetic images) for every cell, apart from every test and training image
    val_sets = {(out / r["run_dir"] / "val_images.txt").read_text() for r in table}
    assert len(val_sets) == 1 and len(val := set(val_sets.pop().split())) == 16
    assert not val & (set(large) | set(test_sets.pop().split()))
    assert all((r["val_images"], r["labels_used"]) == ("16", str(int(r["subset"]) + 16)) and r["val_miou"] != ""
               for r in table)
    assert "sweep: validation set of 16 images (--val-size auto)" in capsys.readouterr().out
    lineage = json.loads((out / table[1]["run_dir"] / "lineage.json").read_text())
    assert Path(lineage["export"]).parent == out.resolve() / "pretrain-16"
    recorded = json.loads((out / "sweep.json").read_text())
    assert recorded["grid"]["subsets"] == [8, 16] and recorded["grid"]["inits"]["scratch"] == "scratch"
    assert recorded["grid"]["val_size"] == 16

    stamp = (out / "results.csv").stat().st_mtime_ns
    capsys.readouterr()
    sweep(argv)
    assert "all 6 cells finished earlier" in capsys.readouterr().out
    assert (out / "results.csv").stat().st_mtime_ns == stamp
    with pytest.raises(SimsegError, match=f"{out} holds runs made with other settings .changed: train.lr;"):
        sweep([*argv, "train.lr=0.01"])
    with pytest.raises(SimsegError, match="records a validation set of 16 images, and --val-size 0 asks for 0: the "
                                          "cells of a sweep share one validation set; rerun with --val-size 16"):
        sweep([*argv, "--val-size", "0"])


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_losing_or_duplicating_rows(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    argv = ["--subsets", "8,16", "--seeds", "0,1", "--output-dir", str(out), *CELL, "train.epochs=2"]
    real_save, saves = stage_steps.save_state, []

    def die_in_the_third_cell(*args, **kwargs):  # two cells finish; the third dies after its first epoch
        real_save(*args, **kwargs)
        saves.append(1)
        if len(saves) == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(stage_steps, "save_state", die_in_the_third_cell)
    with pytest.raises(KeyboardInterrupt):
        sweep(argv)
    assert [r["cell"] for r in rows(out)] == ["scratch/subset-8/seed-0", "scratch/subset-8/seed-1"]
    first = (out / "cells/scratch/subset-8/seed-0/metrics.json").stat().st_mtime_ns

    monkeypatch.setattr(stage_steps, "save_state", real_save)
    sweep(argv)
    table = rows(out)
    assert [r["cell"] for r in table] == [f"scratch/subset-{n}/seed-{s}" for n in (8, 16) for s in (0, 1)]
    assert (out / "cells/scratch/subset-8/seed-0/metrics.json").stat().st_mtime_ns == first  # not rerun
    resumed = [json.loads(line) for line in (out / "cells/scratch/subset-16/seed-0/metrics.jsonl").open()]
    assert [r["epoch"] for r in resumed] == [0, 1]  # the killed cell went on from its state
    jsonl = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["cell"] for r in jsonl] == [r["cell"] for r in table]


@pytest.mark.slow
def test_shards_sharing_a_folder_write_every_cell_once(tmp_path, capsys):
    out = tmp_path / "sweep"
    argv = ["--subsets", "8,16", "--seeds", "0,1", "--output-dir", str(out), *CELL]
    sweep([*argv, "--shard", "2/2"])
    assert sorted(r["cell"] for r in rows(out)) == ["scratch/subset-16/seed-1", "scratch/subset-8/seed-1"]
    sweep([*argv, "--shard", "1/2"])
    assert len(rows(out)) == 4 and len({r["cell"] for r in rows(out)}) == 4
    assert "[2/2] (shard 1/2)" in capsys.readouterr().out

    # A shard rebuilding the results waits while another holds the lock, so rewrites never interleave.
    for name in ("results.csv", "results.jsonl"):
        (out / name).unlink()
    with FileLock(out / RESULTS_LOCK):
        rebuild = threading.Thread(target=collect_results, args=(out, ["scratch"]))
        rebuild.start()
        rebuild.join(timeout=0.5)
        assert rebuild.is_alive() and not (out / "results.csv").exists()
    rebuild.join(timeout=30)
    assert not rebuild.is_alive() and len(rows(out)) == 4


@pytest.mark.slow
def test_intermediate_init_is_tied_to_its_pretraining(tmp_path):
    import stages.classify as classify_stage
    from simseg.config.classify import ClassifyConfig
    from simseg.config.loader import load_config

    out = tmp_path / "sweep"
    sweep(["--subsets", "8", "--pretrain-subsets", "16", "--pretrain-data", "synthetic", "--output-dir", str(out),
           *CELL, *PRETRAIN])
    classify_stage.main(load_config(ClassifyConfig, None, [
        "model.depth=2", "data.subset=16", "data.test_size=8", "data.synthetic_image_size=48", "data.num_workers=0",
        "train.epochs=1", "train.batch_size=8", "log.progress=false", f"init={out / 'pretrain-16'}",
        f"output_dir={tmp_path / 'intel'}"]))
    sweep(["--subsets", "8", "--pretrain-subsets", "16", "--pretrain-data", "synthetic", "--output-dir", str(out),
           "--intermediate", f"pretrain-16+intel={tmp_path / 'intel'}", *CELL, *PRETRAIN])
    table = {r["init"]: r for r in rows(out)}
    assert table["pretrain-16+intel"]["intermediate"] == "true"
    assert table["pretrain-16+intel"]["base_init"] == "pretrain-16"
    assert table["pretrain-16+intel"]["pretrain_images"] == "16" and table["pretrain-16"]["intermediate"] == "false"


def test_refusals_come_before_anything_runs(tmp_path):
    from tests.helpers import write_pair

    pets = tmp_path / "pets"
    for i in range(12):
        write_pair(pets, f"Abyssinian_{i}")
    out = tmp_path / "sweep"
    base = ["--output-dir", str(out), "--data", str(pets), *CELL]
    with pytest.raises(SimsegError, match="--subsets 5 asks for 5 labelled images but .* has 4 after the 8-image"):
        sweep(["--subsets", "2,5", *base])
    with pytest.raises(SimsegError, match="data.subset is set by the sweep"):
        sweep(["--subsets", "2", *base, "data.subset=4"])
    with pytest.raises(SimsegError, match="--init .*missing has no encoder.safetensors"):
        sweep(["--subsets", "2", "--init", f"scratch,{tmp_path / 'missing'}", *base])
    with pytest.raises(SimsegError, match="--pretrain-subsets needs --pretrain-data"):
        sweep(["--subsets", "2", "--pretrain-subsets", "1k", *base])
    with pytest.raises(SimsegError, match="unknown config key"):
        sweep(["--subsets", "2", *base, "train.epochz=3"])
    assert not out.exists()


def test_a_mask_folders_own_test_split_sets_how_many_labelled_images_a_sweep_may_ask_for(tmp_path):
    from simseg.data.synthetic_export import write_synthetic

    shapes = write_synthetic(tmp_path / "shapes", "mask-folder", count=20, size=32, split=True)  # 15 train, 5 test
    out = tmp_path / "sweep"
    with pytest.raises(SimsegError, match="--subsets 15 asks for 15 labelled images but .* has 14 after the 5-image "
                                          "test set and 1 validation images"):  # auto: a tenth of the 15
        sweep(["--subsets", "4,15", "--output-dir", str(out), "--data", str(shapes), *CELL])  # data.test_size=8 unused
    with pytest.raises(SimsegError, match="--subsets 16 asks for 16 labelled images but .* has 15 after the 5-image "
                                          "test set: use sizes up to 15"):
        sweep(["--subsets", "4,16", "--val-size", "0", "--output-dir", str(out), "--data", str(shapes), *CELL])
    assert not out.exists()


def test_model_and_aug_axes_expand_the_grid_and_inits_run_only_with_models_they_fit():
    from simseg.experiments.sweep.axes import runs_with

    inits = [Init("scratch", "scratch"), Init("imagenet", "imagenet"),
             Init("p", "/runs/pretrain-all", (("pretrain_images", 9900),))]
    cells = expand_grid(inits, [250], [0, 1], {"arch": ["vit_linear", "unet_resnet18"], "aug": ["light", "heavy"]},
                        lambda init, variant: runs_with(init.path, variant))
    variants = {(c.variant, c.init.label) for c in cells}
    assert variants == {((("arch", arch), ("aug", aug)), init) for aug in ("light", "heavy") for arch, init in
                        (("vit_linear", "scratch"), ("vit_linear", "p"), ("unet_resnet18", "scratch"),
                         ("unet_resnet18", "imagenet"))}
    assert len(cells) == len(variants) * 2
    assert cells[0].name == "vit_linear/light/scratch/subset-250/seed-0"
    assert Cell(inits[0], 250, 0, (("aug", "heavy"),)).name == "heavy/scratch/subset-250/seed-0"
    assert Cell(inits[0], 250, 0).name == "scratch/subset-250/seed-0"  # no axis: the folders of earlier sweeps
    with_recipes = expand_grid(inits[:1], [250], [0], {"recipe": ["study", "mild", "medium"]})
    assert [c.name for c in with_recipes] == [f"{r}/scratch/subset-250/seed-0" for r in ("study", "mild", "medium")]


@pytest.mark.parametrize("argv,message", [
    (["--models", "vit_linear,resnet"], "--models resnet is unknown; choose from vit_linear"),
    (["--aug", "light,wild"], "--aug wild is unknown; choose from study, light, heavy"),
    (["--models", "vit_linear", "model.arch=vit_pup"], "model.arch is set by --models for each cell"),
    (["--aug", "light", "aug.preset=heavy"], "aug.preset is set by --aug for each cell"),
    (["--recipes", "study,spicy"], "--recipes spicy is unknown; choose from study, mild, medium, hot"),
    (["--models", "vit_linear", "--init", "imagenet"], "no init fits any of the models"),
])
def test_bad_model_axes_fail_in_one_line_before_anything_runs(tmp_path, argv, message):
    out = tmp_path / "sweep"
    with pytest.raises(SimsegError, match=message):
        sweep(["--subsets", "4", "--output-dir", str(out), *argv, *CELL])
    assert not out.exists()


@pytest.mark.slow
def test_a_sweep_over_models_and_presets_writes_rows_with_their_model_preset_and_cost(tmp_path, capsys,
                                                                                      monkeypatch):
    import segmentation_models_pytorch.encoders as smp_encoders

    real = smp_encoders.get_encoder  # "ImageNet" weights without a download: a seeded random encoder
    monkeypatch.setattr(smp_encoders, "get_encoder", lambda name, weights=None, **kw: real(name, weights=None, **kw))
    out = tmp_path / "sweep"
    sweep(["--subsets", "4", "--models", "vit_linear,unet_resnet18", "--aug", "light,heavy", "--init",
           "scratch,imagenet", "--output-dir", str(out), *CELL, "model.img_size=64", "train.epochs=2", "eval.every=1"])
    assert "skipping vit_linear x imagenet" in capsys.readouterr().out
    table = rows(out)
    assert sorted((r["arch"], r["aug"], r["init"]) for r in table) == sorted(
        (arch, aug, init) for aug in ("light", "heavy")
        for arch, init in (("vit_linear", "scratch"), ("unet_resnet18", "scratch"), ("unet_resnet18", "imagenet")))
    for row in table:
        assert float(row["gflops"]) > 0 and int(row["parameters"]) > int(row["encoder_parameters"]) > 0
        _, shape, boundary = read_run_label_set(out / row["run_dir"]).names  # the synthetic trimap's classes
        assert row[f"precision_{shape}_plain"] != "" and row[f"recall_{boundary}_plain"] != ""
        assert row["boundary_iou_plain"] != "" and row["miou_tta"] == ""
        assert row["cell"].startswith(row["arch"])
    unet = next(r for r in table if r["arch"] == "unet_resnet18")
    assert int(unet["parameters"]) == 14_328_499 and not (out / unet["run_dir"] / "encoder.safetensors").exists()
    assert json.loads((out / "sweep.json").read_text())["grid"]["models"] == ["vit_linear", "unet_resnet18"]
    from simseg.experiments.report.build import build_report

    text = build_report(out).read_text()
    assert (out / "training_curves.png").is_file() and (out / "miou_vs_cost.png").is_file()
    assert "## Models and their cost" in text and "## Per-axis averages" in text
