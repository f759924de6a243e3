"""``simseg sweep --pretrain-methods``: one pretraining per method (and size), named apart only when it must be, and
its gain over scratch in the report; ``--pretrain-data`` as a union; and the labelled test images kept out of every
pretraining when the pretraining data holds them. Plans only: no run trains here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simseg.data.pair_sources import open_segmentation_pairs
from simseg.data.splits import segmentation_splits
from simseg.data.unlabelled import open_pretraining_images
from simseg.errors import SimsegError
from simseg.experiments.report.build import build_report
from simseg.experiments.sweep import command as sweep_module
from simseg.experiments.sweep.arguments import PRETRAIN_EXCLUDE, holds_images_of, plan_pretraining
from simseg.experiments.sweep.command import build_parser
from simseg.experiments.sweep.plan import Init, expand_grid
from simseg.experiments.sweep.results import result_row, write_results
from tests.experiments.test_sweep import CELL, PRETRAIN
from tests.helpers import write_images, write_pair

OVERRIDES = [o.removeprefix("pretrain.") for o in PRETRAIN]
NOTICE = "pretraining data includes the labelled set"


def planned(tmp_path: Path, *flags: str, overrides: list[str] = OVERRIDES) -> list:
    args = build_parser().parse_args(["--subsets", "8", "--pretrain-data", "synthetic", *flags])
    return plan_pretraining(args, tmp_path, overrides)[0]


def test_each_method_gets_its_own_pretraining_per_size_with_method_set(tmp_path):
    args = build_parser().parse_args(["--subsets", "8", "--pretrain-subsets", "16,all", "--pretrain-methods",
                                      "simmim,mae", "--pretrain-data", "synthetic"])
    runs, given = plan_pretraining(args, tmp_path, OVERRIDES)
    assert given == {"pretrain_method": ["simmim", "mae"], "pretrain_images": [16, None]}
    assert [init.label for init, _ in runs] == ["pretrain-simmim-16", "pretrain-simmim-all", "pretrain-mae-16",
                                                "pretrain-mae-all"]
    assert [(cfg.method, cfg.data.subset) for _, cfg in runs] == [("simmim", "16"), ("simmim", None), ("mae", "16"),
                                                                  ("mae", None)]
    assert len({cfg.output_dir for _, cfg in runs}) == 4
    assert all(Path(cfg.output_dir).name == init.label for init, cfg in runs)
    assert runs[3][0].pretraining == (("pretrain_method", "mae"), ("pretrain_images", 36))  # 40 - 4 held out
    assert runs[3][1].mask.ratio == 0.75  # MAE's own mask ratio, as a run made by hand would have


@pytest.mark.parametrize("flags,labels,method", [
    (["--pretrain-subsets", "16"], ["pretrain-16"], "simmim"),  # the folders of sweeps made before the axis
    (["--pretrain-subsets", "16", "--pretrain-methods", "simmim"], ["pretrain-16"], "simmim"),  # resumed as they are
    (["--pretrain-subsets", "16", "--pretrain-methods", "mae"], ["pretrain-mae-16"], "mae"),
    (["--pretrain-methods", "mae"], ["pretrain-mae"], "mae"),
    (["--pretrain-methods", "simmim"], ["pretrain-simmim"], "simmim"),  # nothing else to name the run by
])
def test_the_default_method_alone_keeps_the_old_folder_names(tmp_path, flags, labels, method):
    runs = planned(tmp_path, *flags)
    assert [init.label for init, _ in runs] == labels and [cfg.method for _, cfg in runs] == [method]
    assert dict(runs[0][0].pretraining)["pretrain_method"] == method


@pytest.mark.parametrize("flags,overrides,message", [
    (["--pretrain-methods", "simmim,byol"], [], "--pretrain-methods byol is unknown; choose from simmim, mae"),
    (["--pretrain-methods", "maee"], [], r"did you mean mae\?"),
    (["--pretrain-methods", "mae"], ["method=simmim"], "pretrain.method is set by --pretrain-methods for each"),
])
def test_bad_method_values_fail_in_one_line(tmp_path, flags, overrides, message):
    with pytest.raises(SimsegError, match=message):
        planned(tmp_path, *flags, overrides=[*OVERRIDES, *overrides])


def test_the_report_shows_each_methods_gain_over_scratch(tmp_path):
    args = build_parser().parse_args(["--subsets", "8", "--pretrain-subsets", "16,all", "--pretrain-methods",
                                      "simmim,mae", "--pretrain-data", "synthetic"])
    inits = [Init("scratch", "scratch"), *(init for init, _ in plan_pretraining(args, tmp_path, OVERRIDES)[0])]
    table = []
    for cell in expand_grid(inits, [8], [0, 1]):
        method = cell.init.pretrained_with("pretrain_method")
        miou = (0.25 + 0.125 * (method == "simmim") + 0.25 * (method == "mae")
                + 0.0625 * cell.init.label.endswith("-all") + 0.03125 * cell.seed)  # dyadic: exact means
        table.append(result_row(cell, {"miou": miou}, tmp_path))
    write_results(tmp_path, table)
    text = build_report(tmp_path).read_text()
    assert "| init | pretraining method | pretraining images | 8 |" in text
    assert "| pretrain-mae-all | mae | 36 | **0.578 ± 0.022 (n=2)** |" in text
    assert "5 inits (2 pretraining methods, 2 pretraining sizes)" in text
    assert "| pretrain-mae-16 | +0.250 |" in text and "| pretrain-simmim-all | +0.188 |" in text  # per init
    assert "| pretraining method (vs scratch) | mae | +0.281 | 2 |" in text  # (0.25 + 0.3125) / 2
    assert "| pretraining method (vs scratch) | simmim | +0.156 | 2 |" in text  # (0.125 + 0.1875) / 2


def test_one_size_two_methods_each_gain_is_its_init_row(tmp_path):
    args = build_parser().parse_args(["--subsets", "8", "--pretrain-subsets", "all", "--pretrain-methods",
                                      "simmim,mae", "--pretrain-data", "synthetic"])
    inits = [Init("scratch", "scratch"), *(init for init, _ in plan_pretraining(args, tmp_path, OVERRIDES)[0])]
    gains = {"scratch": 0.0, "pretrain-simmim-all": 0.125, "pretrain-mae-all": 0.25}
    write_results(tmp_path, [result_row(cell, {"miou": 0.25 + gains[cell.init.label]}, tmp_path)
                             for cell in expand_grid(inits, [8], [0])])
    text = build_report(tmp_path).read_text()
    assert "| pretraining (init vs scratch) | pretrain-mae-all | +0.250 | 1 |" in text
    assert "| pretraining (init vs scratch) | pretrain-simmim-all | +0.125 | 1 |" in text
    assert "| pretrain-mae-all | mae | 36 | **0.500** |" in text


# --- the labelled test images kept out of pretraining ----------------------------------------------------------------

@pytest.fixture
def pets(tmp_path) -> Path:
    """A 20-pair Oxford-layout folder (two breeds), so an 8-image test split is drawn stratified."""
    root = tmp_path / "pets"
    for breed in ("Abyssinian", "beagle"):
        for i in range(1, 11):
            write_pair(root, f"{breed}_{i}")
    return root


@pytest.fixture
def unlabelled(tmp_path) -> Path:
    folder = tmp_path / "unlabelled"
    write_images(folder, [f"other_{i}.jpg" for i in range(6)])
    return folder


def planned_sweep(monkeypatch, out: Path, pets: Path, pretrain_data: str, *extra: str) -> tuple[list, dict]:
    """Run ``simseg sweep`` up to where it would train: (the pretraining configs, cell -> config) it would run."""
    pretraining, cells = [], {}
    monkeypatch.setattr(sweep_module, "run_unless_finished", lambda stage, cfg, message: pretraining.append(cfg))
    monkeypatch.setattr(sweep_module, "run_cells", lambda todo, configs, *rest: cells.update(configs))
    sweep_module.sweep(["--subsets", "4", "--seeds", "0,1", "--data", str(pets), "--pretrain-subsets", "all",
                        "--pretrain-methods", "simmim,mae", "--pretrain-data", pretrain_data, "--output-dir", str(out),
                        *CELL, *PRETRAIN, *extra])
    return pretraining, cells


def stage_test_names(cfg) -> list[str]:
    """The test split exactly as stages/segment.py draws it for a cell's config."""
    test_size, subset, val_size = cfg.data.sizes()
    source = open_segmentation_pairs(cfg.data)
    splits = segmentation_splits(len(source), test_size, subset, cfg.seed, source.groups, val_size, source.name,
                                 test_seed=cfg.data.test_seed, given=source.given_split)
    return [source.names[i] for i in splits["test"]]


def listed(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]


@pytest.mark.parametrize("inside", ["", "images"])
def test_pretraining_on_the_labelled_folder_excludes_its_test_split(tmp_path, monkeypatch, capsys, pets, inside):
    out = tmp_path / "sweep"
    pretraining, cells = planned_sweep(monkeypatch, out, pets, str(pets / inside))
    exclude = out / PRETRAIN_EXCLUDE
    test_names = {tuple(stage_test_names(cfg)) for cfg in cells.values()}
    assert {(cell.init.label, cell.seed) for cell in cells} == {
        (init, seed) for init in ("scratch", "pretrain-simmim-all", "pretrain-mae-all") for seed in (0, 1)}
    assert len(test_names) == 1  # one test split for every cell
    names = listed(exclude)
    assert names == sorted(next(iter(test_names))) and len(names) == 8

    notices = [line for line in capsys.readouterr().out.splitlines() if NOTICE in line]
    assert notices == [f"sweep: {NOTICE}: its 8 test images are excluded ({exclude})"]
    assert len(pretraining) == 2 and {cfg.method for cfg in pretraining} == {"simmim", "mae"}
    for cfg in pretraining:
        assert cfg.data.exclude == str(exclude)
        source, record = open_pretraining_images(cfg.data, stream="pretrain")
        seen = {source.item_name(i) for i in range(len(source))}
        assert not seen & set(names)  # no test image reaches pretraining
        assert record["excluded_names"] == names
        assert {"Abyssinian", "beagle"} <= {name.rsplit("_", 1)[0] for name in seen}  # the rest is still there
    assert json.loads((out / "sweep.json").read_text())["pretrain_config"]["data"]["exclude"] == str(exclude)

    stamp = exclude.stat().st_mtime_ns  # the same command again: the same file, untouched (runs resume against it)
    again, _ = planned_sweep(monkeypatch, out, pets, str(pets / inside))
    assert exclude.stat().st_mtime_ns == stamp and [cfg.data.exclude for cfg in again] == [str(exclude)] * 2


def test_a_finished_pretraining_made_without_the_exclusion_is_not_reused(tmp_path, monkeypatch, pets):
    from simseg.training.rundir import write_config

    out = tmp_path / "sweep"
    with monkeypatch.context() as before:  # the sweep as simseg made it before it kept the test images out
        before.setattr(sweep_module, "exclude_labelled_test_set", lambda *args: ([], None))
        old, _ = planned_sweep(before, out, pets, str(pets / "images"))
    for cfg in old:
        write_config(Path(cfg.output_dir), cfg)
    monkeypatch.setattr(sweep_module, "run_is_finished", lambda run_dir, epochs: True)  # every run and cell done
    with pytest.raises(SimsegError, match=r"holds runs made with other settings \(changed: data.exclude;"):
        planned_sweep(monkeypatch, out, pets, str(pets / "images"))


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("inside", ["", "images"])
def test_a_mask_folder_as_labelled_and_pretraining_data_keeps_its_test_images_out(tmp_path, monkeypatch, capsys,
                                                                                   split, inside):
    from simseg.data.synthetic_export import write_synthetic

    shapes = write_synthetic(tmp_path / "shapes", "mask-folder", count=20, size=32, split=split)
    out = tmp_path / "sweep"
    pretraining, cells = planned_sweep(monkeypatch, out, shapes, str(shapes / inside))
    names = listed(out / PRETRAIN_EXCLUDE)
    test = {tuple(stage_test_names(cfg)) for cfg in cells.values()}
    assert len(test) == 1 and names == sorted(next(iter(test)))
    if split:  # the data's own test folder, whatever data.test_size says
        assert names == sorted(path.stem for path in (shapes / "images" / "test").iterdir()) and len(names) == 5
    assert f"its {len(names)} test images are excluded" in capsys.readouterr().out
    source, record = open_pretraining_images(pretraining[0].data, stream="pretrain")
    files = [source.item_file_name(i) for i in range(len(source))]
    assert len(files) == 20 - len(names) and record["excluded_names"] == names  # images only: no mask read as one
    assert not {source.item_name(i) for i in range(len(source))} & set(names)


def test_an_unrelated_folder_excludes_nothing(tmp_path, monkeypatch, capsys, pets, unlabelled):
    out = tmp_path / "sweep"
    pretraining, _ = planned_sweep(monkeypatch, out, pets, str(unlabelled))
    assert NOTICE not in capsys.readouterr().out and not (out / PRETRAIN_EXCLUDE).exists()
    assert [cfg.data.exclude for cfg in pretraining] == ["", ""]


def test_a_union_with_the_labelled_set_and_the_users_own_list(tmp_path, monkeypatch, capsys, pets, unlabelled):
    mine = tmp_path / "mine.txt"
    mine.write_text("other_0\nother_1.jpg\n")
    out = tmp_path / "sweep"
    pretraining, cells = planned_sweep(monkeypatch, out, pets, f"{unlabelled},{pets / 'images'}",
                                       f"pretrain.data.exclude={mine}")
    test = stage_test_names(next(iter(cells.values())))
    assert listed(out / PRETRAIN_EXCLUDE) == sorted({*test, "other_0", "other_1.jpg"})
    notice = next(line for line in capsys.readouterr().out.splitlines() if NOTICE in line)
    assert f"its 8 test images are excluded, with the 2 further names of data.exclude={mine}" in notice
    cfg = pretraining[0]
    assert cfg.data.source == [str(unlabelled), str(pets / "images")]
    source, _ = open_pretraining_images(cfg.data, stream="pretrain")
    seen = {source.item_name(i) for i in range(len(source))}
    assert len(source) == 6 + 20 - 2 - 8 and not seen & {*test, "other_0", "other_1"}


def test_which_sources_hold_the_labelled_images(tmp_path, pets, unlabelled):
    (tmp_path / "link").symlink_to(pets / "images")
    for source in (pets, pets / "images", tmp_path, tmp_path / "link", pets / "images" / ".." / "images"):
        assert holds_images_of(str(source), str(pets)), source
    for source in (unlabelled, "synthetic", "some/hub-dataset"):
        assert not holds_images_of(str(source), str(pets)), source
    assert not holds_images_of("synthetic", "synthetic")
