"""The axes table: today's axes keep the folders, cell.json, results columns and sweep.json of earlier sweeps, and an
axis defined here (a segmentation axis over ``loss``, a pretraining axis over ``mask.ratio``) flows through the
parser, the grid, the cell folders, cell.json, the results and the report without editing any other module."""

from __future__ import annotations

import json

import pytest

from simseg.config.loader import load_config
from simseg.config.segment import SegmentConfig
from simseg.errors import SimsegError
from simseg.experiments.report.build import build_report
from simseg.experiments.run_folders import cell_records
from simseg.experiments.sweep import axes
from simseg.experiments.sweep.arguments import plan_pretraining, variant_values
from simseg.experiments.sweep.axes import Axis, config_variant, runs_with, variant_overrides
from simseg.experiments.sweep.command import build_parser, parse_arguments
from simseg.experiments.sweep.inits import resolve_init
from simseg.experiments.sweep.plan import Cell, Init, cell_of_record, expand_grid, write_cell_record
from simseg.experiments.sweep.results import read_results, result_columns, result_row, write_results
from tests.experiments.test_sweep import CELL, PRETRAIN, rows

LOSS = Axis("loss", "--losses", "variant", "loss", "loss", reference="ce", choices=("ce", "ce+dice"),
            grid_key="losses", help="loss values to compare, e.g. ce,ce+dice")
MASK_RATIO = Axis("pretrain_mask_ratio", "--pretrain-mask-ratios", "pretraining", "mask.ratio",
                  "pretraining mask ratio", noun="mask ratio", choices=("0.4", "0.6"), grid_key="pretrain_mask_ratios",
                  help="also pretrain with these mask ratios")
SCRATCH, PRETRAINED = Init("scratch", "scratch"), Init("p", "/runs/p", (("pretrain_images", 45_000),))


@pytest.fixture
def with_axis(monkeypatch):
    """Add an axis to the table for one test: one entry, nothing else edited."""
    def add(axis: Axis) -> None:
        monkeypatch.setattr(axes, "AXES", (*axes.AXES, axis))
    return add


def test_the_table_names_each_axis_once_and_every_value_loads():
    from simseg.config.pretrain import PretrainConfig

    table = axes.every_axis()
    for field in ("column", "flag", "grid_key"):
        assert len({getattr(axis, field) for axis in table}) == len(table), f"two axes share a {field}"
    assert [axis.kind for axis in table].count("init") == 1
    for axis in axes.variant_axes():
        for value in axis.choices or ():
            assert axes.config_value(load_config(SegmentConfig, None, [f"{axis.config_key}={value}"]),
                                     axis.config_key) == value
    for axis in axes.pretraining_axes():
        axes.config_value(PretrainConfig(), axis.config_key)  # the key exists


def test_cell_json_and_results_columns_are_those_of_earlier_sweeps(tmp_path):
    cell = Cell(PRETRAINED, 250, 1, (("arch", "unet_resnet18"),))
    write_cell_record(cell, tmp_path)
    text = (tmp_path / "cells/unet_resnet18/p/subset-250/seed-1/cell.json").read_text()
    assert text == json.dumps({"init": {"label": "p", "path": "/runs/p", "pretrain_method": None,
                                        "pretrain_images": 45000, "intermediate": False, "base_init": None},
                               "subset": 250, "seed": 1, "arch": "unet_resnet18", "aug": None, "recipe": None,
                               "img_size": None},
                              indent=2)
    record = tmp_path / "cells/unet_resnet18/p/subset-250/seed-1/cell.json"
    assert cell_of_record(json.loads(record.read_text())) == cell
    before_recipes = tmp_path / "old.json"  # written before --recipes existed: no recipe key
    before_recipes.write_text(json.dumps({"init": {"label": "scratch", "path": "scratch", "pretrain_images": None,
                                                   "intermediate": False, "base_init": None},
                                          "subset": 1000, "seed": 0, "arch": None, "aug": "heavy"}))
    assert cell_of_record(json.loads(before_recipes.read_text())).name == "heavy/scratch/subset-1k/seed-0"
    assert result_columns()[:13] == ("cell", "arch", "aug", "recipe", "img_size", "init", "init_path",
                                     "pretrain_method", "pretrain_images", "intermediate", "base_init", "subset",
                                     "seed")
    old_run = result_row(Cell(SCRATCH, 250, 0), {"head": "linear", "miou": 0.5}, tmp_path)  # before model.arch
    assert old_run["arch"] == "vit_linear" and old_run["pretrain_images"] is None


def test_the_parser_has_a_flag_per_axis_and_refuses_in_one_line():
    args = build_parser().parse_args(["--subsets", "250", "--models", "vit_pup", "--aug", "light,heavy"])
    assert variant_values(args, []) == {"arch": ["vit_pup"], "aug": ["light", "heavy"]}
    assert args.init == "scratch" and args.pretrain_images is None
    with pytest.raises(SimsegError, match=r"--models vit_pupp is unknown; choose from .* \(did you mean vit_pup\?\)"):
        variant_values(build_parser().parse_args(["--subsets", "250", "--models", "vit_pupp"]), [])


def test_overrides_may_stand_before_and_after_the_flags():
    args = parse_arguments(["--subsets", "8", "train.epochs=9", "--img-sizes", "128", "train.milestones=[0.8]"])
    assert (args.subsets, args.img_size, args.overrides) == ("8", "128", ["train.epochs=9", "train.milestones=[0.8]"])


def test_a_labelled_scratch_init_is_a_from_scratch_arm_in_its_own_folders(tmp_path):
    init = resolve_init("scratch-9ep=scratch", "--init")
    assert init == Init("scratch-9ep", "scratch") and resolve_init("base=imagenet", "--init").path == "imagenet"
    (cell,) = expand_grid([init], [8], [0])
    assert cell.run_dir(tmp_path) == tmp_path / "cells" / "scratch-9ep" / "subset-8" / "seed-0"
    assert runs_with(init.path, ()) and resolve_init("scratch", "--init").label == "scratch"
    with pytest.raises(SimsegError, match="label 'a b' may hold only"):
        resolve_init("a b=scratch", "--init")


def test_gains_over_scratch_come_from_columns_not_from_labels(tmp_path):
    (tmp_path / "results.csv").write_text("init,subset,seed,miou\nscratch,250,0,0.40\nruns/p45k,250,0,0.45\n")
    assert "| runs/p45k | +0.050 |" in build_report(tmp_path).read_text()  # a "/" in a label is not a variant


def test_a_segmentation_axis_is_one_table_entry(tmp_path, with_axis):
    with_axis(LOSS)
    args = build_parser().parse_args(["--subsets", "250", "--aug", "light,heavy", "--losses", "ce,ce+dice"])
    variants = variant_values(args, [])
    assert variants == {"aug": ["light", "heavy"], "loss": ["ce", "ce+dice"]}
    with pytest.raises(SimsegError, match="loss is set by --losses for each cell: drop loss=... or --losses"):
        variant_values(args, ["loss=ce"])
    with pytest.raises(SimsegError, match="--losses dice is unknown; choose from ce, ce\\+dice"):
        variant_values(build_parser().parse_args(["--subsets", "250", "--losses", "dice"]), [])
    template = load_config(SegmentConfig, None, variant_overrides((("loss", "ce+dice"),)))
    assert template.loss == "ce+dice" and ("loss", "ce+dice") in config_variant(template)

    cells = expand_grid([SCRATCH, PRETRAINED], [250], [0, 1], variants, lambda i, v: runs_with(i.path, v))
    assert len(cells) == 2 * 2 * 2 * 2
    assert cells[0].name == "light/ce/scratch/subset-250/seed-0"  # variant levels in table order, then the init
    assert cells[-1].name == "heavy/ce+dice/p/subset-250/seed-1"
    table = []
    for cell in cells:
        write_cell_record(cell, tmp_path)
        record = json.loads((cell.run_dir(tmp_path) / "cell.json").read_text())
        assert cell_of_record(record) == cell and record["loss"] == dict(cell.variant)["loss"]
        aug, loss = dict(cell.variant)["aug"], dict(cell.variant)["loss"]
        miou = (0.25 + 0.125 * (loss == "ce+dice") + 0.0625 * (aug == "heavy") + 0.25 * (cell.init.label == "p")
                + 0.03125 * cell.seed)  # dyadic: every mean and difference is exact
        table.append(result_row(cell, {"arch": "vit_linear", "aug": aug, "recipe": "study", "miou": miou}, tmp_path))
    write_results(tmp_path, table)
    assert (tmp_path / "results.csv").read_text().splitlines()[0].startswith("cell,arch,aug,recipe,img_size,loss,init,")
    assert {row["loss"] for row in read_results(tmp_path)} == {"ce", "ce+dice"}
    (tmp_path / "sweep.json").write_text(json.dumps({"grid": {
        "subsets": [250], "seeds": [0, 1], "models": [], "aug": ["light", "heavy"], "recipes": [],
        "losses": ["ce", "ce+dice"], "inits": {"scratch": "scratch", "p": "/runs/p"}, "intermediate": {}}}))
    text = build_report(tmp_path).read_text()
    assert "2 augmentation presets, 2 losses, 2 inits" in text and "Grid complete: all 16 cells" in text
    assert "| loss (vs ce) | ce+dice | +0.125 | 4 |" in text  # 2 presets x 2 inits
    assert "| pretraining (init vs scratch) | p | +0.250 | 4 |" in text
    assert "| light/ce+dice/p | +0.250 |" in text  # over light/ce+dice/scratch, found by the columns


def test_a_pretraining_axis_is_one_table_entry(tmp_path, with_axis):
    with_axis(MASK_RATIO)
    argv = ["--subsets", "8", "--pretrain-subsets", "16,all", "--pretrain-mask-ratios", "0.4,0.6",
            "--pretrain-data", "synthetic"]
    overrides = [o.removeprefix("pretrain.") for o in PRETRAIN]
    with pytest.raises(SimsegError, match="pretrain.mask.ratio is set by --pretrain-mask-ratios for each pretraining"):
        plan_pretraining(build_parser().parse_args(argv), tmp_path, [*overrides, "mask.ratio=0.5"])
    planned, given = plan_pretraining(build_parser().parse_args(argv), tmp_path, overrides)
    assert given == {"pretrain_images": [16, None], "pretrain_mask_ratio": ["0.4", "0.6"]}
    assert [init.label for init, _ in planned] == ["pretrain-16-0.4", "pretrain-16-0.6", "pretrain-all-0.4",
                                                  "pretrain-all-0.6"]
    assert [(cfg.data.subset, cfg.mask.ratio) for _, cfg in planned] == [("16", 0.4), ("16", 0.6), (None, 0.4),
                                                                         (None, 0.6)]
    assert planned[3][0].pretraining == (("pretrain_method", "simmim"), ("pretrain_images", 36),
                                         ("pretrain_mask_ratio", 0.6))  # 40 - 4 held out

    outside = tmp_path / "elsewhere"  # a pretraining run given as --init: its values are read from its folder
    outside.mkdir()
    (outside / "encoder.safetensors").write_bytes(b"")
    (outside / "metrics.json").write_text(json.dumps({"train_images": 500}))
    (outside / "config.yaml").write_text("mask:\n  ratio: 0.6\n")
    assert resolve_init(f"mine={outside}", "--init").pretraining == (  # a config.yaml without method: SimMIM's
        ("pretrain_method", "simmim"), ("pretrain_images", 500), ("pretrain_mask_ratio", 0.6))

    inits = [SCRATCH, *(init for init, _ in planned)]
    table = []
    for cell in expand_grid(inits, [8], [0]):
        write_cell_record(cell, tmp_path)
        record = json.loads((cell.run_dir(tmp_path) / "cell.json").read_text())
        assert dict(cell_records(tmp_path))[cell.run_dir(tmp_path)] == record and cell_of_record(record) == cell
        ratio = cell.init.pretrained_with("pretrain_mask_ratio")
        miou = 0.25 + 0.125 * (ratio == 0.6) + 0.0625 * (cell.init.label.startswith("pretrain-all")) \
            + 0.25 * (ratio is not None)
        table.append(result_row(cell, {"miou": miou}, tmp_path))
    write_results(tmp_path, table)
    assert [row["pretrain_mask_ratio"] for row in rows(tmp_path)] == ["", "0.4", "0.6", "0.4", "0.6"]
    text = build_report(tmp_path).read_text()
    assert "| init | pretraining method | pretraining images | pretraining mask ratio | 8 |" in text
    assert "| pretrain-16-0.6 | simmim | 16 | 0.6 | 0.625 |" in text
    assert "5 inits (2 pretraining sizes, 2 mask ratios)" in text
    # each value's gain over scratch, averaged over the inits pretrained with it
    assert "| pretraining mask ratio (vs scratch) | 0.4 | +0.281 | 2 |" in text  # (0.25 + 0.3125) / 2
    assert "| pretraining mask ratio (vs scratch) | 0.6 | +0.406 | 2 |" in text
    assert "| pretraining images (vs scratch) | 36 | +0.375 | 2 |" in text


@pytest.mark.slow
def test_a_sweep_over_an_axis_defined_in_the_table_runs_records_and_reports_it(tmp_path, with_axis, capsys):
    from simseg.experiments.sweep.command import sweep

    with_axis(LOSS)
    out = tmp_path / "sweep"  # --img-sizes with one value: its folder level and column, no more cells
    argv = ["--subsets", "8", "--losses", "ce,ce+dice", "--img-sizes", "32", "--output-dir", str(out), *CELL]
    sweep(argv)
    table = rows(out)
    assert [(r["cell"], r["loss"], r["img_size"]) for r in table] == [
        ("32px/ce/scratch/subset-8/seed-0", "ce", "32"), ("32px/ce+dice/scratch/subset-8/seed-0", "ce+dice", "32")]
    grid = json.loads((out / "sweep.json").read_text())["grid"]
    assert grid["losses"] == ["ce", "ce+dice"] and grid["img_sizes"] == ["32"]
    config = (out / table[1]["run_dir"] / "config.yaml").read_text()
    assert "loss: ce+dice" in config and "img_size: 32" in config
    capsys.readouterr()
    sweep(argv)
    assert "all 2 cells finished earlier" in capsys.readouterr().out
    text = build_report(out).read_text()
    assert "| loss (vs ce) | ce+dice |" in text and "| ce+dice/scratch | 8 |" in text


def test_the_input_size_is_one_variant_axis(tmp_path):
    args = build_parser().parse_args(["--subsets", "250", "--img-sizes", "128,160", "--models", "vit_linear"])
    variants = variant_values(args, [])
    assert variants == {"arch": ["vit_linear"], "img_size": ["128", "160"]}
    for bad in ("100", "0", "-16", "big"):
        with pytest.raises(SimsegError, match=f"--img-sizes {bad} is not a positive multiple of the patch size 16"):
            variant_values(build_parser().parse_args(["--subsets", "250", f"--img-sizes={bad}"]), [])
    with pytest.raises(SimsegError, match="model.img_size is set by --img-sizes for each cell"):
        variant_values(args, ["model.img_size=192"])
    template = load_config(SegmentConfig, None, variant_overrides((("img_size", "160"),)))
    assert template.model.img_size == 160 and ("img_size", "160") in config_variant(template)
    cells = expand_grid([SCRATCH], [250], [0], variants)
    assert [c.name for c in cells] == ["vit_linear/128px/scratch/subset-250/seed-0",
                                       "vit_linear/160px/scratch/subset-250/seed-0"]
    write_cell_record(cells[1], tmp_path)
    record = json.loads((cells[1].run_dir(tmp_path) / "cell.json").read_text())
    assert record["img_size"] == "160" and cell_of_record(record) == cells[1]
    assert result_row(cells[1], {"miou": 0.5}, tmp_path)["img_size"] == "160"
    unswept = result_row(Cell(SCRATCH, 250, 0), {"miou": 0.5}, tmp_path, template)  # the run's config says
    assert unswept["img_size"] == "160" and unswept["cell"] == "scratch/subset-250/seed-0"
    write_results(tmp_path, [unswept])
    assert read_results(tmp_path)[0]["img_size"] == 160  # read back as a number
    axis = axes.axis_of("img_size")
    assert axes.reference_value(axis, ["128", "160"], 160) == "160"  # the template's size when swept
    assert axes.reference_value(axis, ["128", "160"], 224) == "128"  # else the first value
