import json
import re

import pytest

import simseg.cli as cli
import simseg.experiments.demo as demo


@pytest.mark.slow
def test_demo_runs_every_stage_and_reports_where_the_results_are(tmp_path, monkeypatch, capsys):
    tiny = ["model.depth=2", "train.epochs=2", "train.batch_size=8", "data.num_workers=0", "log.progress=false"]
    monkeypatch.setattr(demo, "DEMO_PRETRAIN", [*demo.DEMO_PRETRAIN, *tiny, "data.synthetic_size=40",
                                                "data.val_size=4", "log.grid_every=1"])
    monkeypatch.setattr(demo, "DEMO_CLASSIFY", [*demo.DEMO_CLASSIFY, *tiny, "data.subset=16", "data.test_size=8"])
    monkeypatch.setattr(demo, "DEMO_SEGMENT", [*demo.DEMO_SEGMENT, *tiny, "data.test_size=8"])
    monkeypatch.setattr(demo, "DEMO_SUBSETS", "8,16")
    root = cli.demo(["--output-dir", str(tmp_path / "demo")])
    out = capsys.readouterr().out
    assert str(root / "pretrain" / "grids") in out and str(root / "classify" / "confusion.png") in out
    assert f"report: {root / 'sweep' / 'report.md'}" in out and (root / "sweep" / "miou_vs_subset.png").is_file()
    for name in ("scratch", "pretrained", "pretrained+classify"):
        assert re.search(rf"    {re.escape(name)} +0\.\d{{3}} +0\.\d{{3}}\n", out), name
    rows = [json.loads(line) for line in (root / "sweep" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {r["init"] for r in rows if r["intermediate"]} == {"pretrained+classify"}
    best = re.search(r"apply the cell validation chose to any photos: simseg predict (\S+) PHOTOS/", out).group(1)
    largest = [r for r in rows if r["subset"] == max(r["subset"] for r in rows)]
    assert best == str(root / "sweep" / max(largest, key=lambda r: r["val_miou"])["run_dir"])  # never a test score
    cli.main(["predict", best, str(root / "sweep" / "miou_vs_subset.png"), "--out", str(tmp_path / "p"), "--quiet"])
    assert (tmp_path / "p" / "miou_vs_subset.png").is_file()  # the printed command works on the run it names
    capsys.readouterr()
    lineage = json.loads((root / "sweep" / rows[-1]["run_dir"] / "lineage.json").read_text())
    assert lineage["export_stage"] == "classify" and not (root / "segment").exists()
    cli.demo(["--output-dir", str(tmp_path / "demo")])  # a second demo run only reports
    out = capsys.readouterr().out
    assert out.count("skipped") == 2 and "all 6 cells finished earlier" in out


def test_unknown_command_and_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["pretrian"])
    assert exit_info.value.code == 2 and "unknown command 'pretrian'" in capsys.readouterr().err
    cli.main(["--help"])
    assert "simseg pretrain" in capsys.readouterr().out


def stage_help(stage: str, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([stage, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def every_key(cls: type) -> list[str]:
    from simseg.config.loader import flat_dict, to_dict

    return list(flat_dict(to_dict(cls())))


@pytest.mark.parametrize("stage", ["pretrain", "classify", "segment"])
def test_stage_help_lists_every_config_key_with_its_default_and_meaning(stage, capsys):
    from simseg.config.field_docs import field_docs, plain_text
    from simseg.experiments.stage_table import STAGES

    out = stage_help(stage, capsys)
    lines = out.splitlines()
    assert all(len(line) <= 120 for line in lines), "--help must fit a 120-column terminal"
    for key in every_key(STAGES[stage].config):
        assert any(line.startswith(f"  {key} = ") for line in lines), key
    assert "  mask.ratio = 0.5\n" in out if stage == "pretrain" else "  init = scratch\n" in out
    assert "  data.subset = null\n" in out
    text = " ".join(out.split())
    assert plain_text(field_docs(STAGES[stage].config)["seed"]) in text


def test_segment_help_describes_every_model_recipe_and_preset(capsys):
    from simseg.config.field_docs import plain_text
    from simseg.config.help import flat_items, show
    from simseg.config.sections import ENCODERS
    from simseg.config.segment import AUG_PRESETS, RECIPES
    from simseg.models.registry import ARCHS

    text = " ".join(stage_help("segment", capsys).split())
    for table in (ARCHS, ENCODERS, AUG_PRESETS, RECIPES):
        for name, entry in table.items():
            assert f" {name} {plain_text(entry.description)}" in text, name
    for table, prefix in ((RECIPES, ""), (AUG_PRESETS, "aug.")):  # and what each sets
        for name, preset in table.items():
            sets = ", ".join(f"{prefix}{key}={show(value)}" for key, value in flat_items(preset.settings))
            assert f" {name} {plain_text(preset.description)} sets {sets or 'nothing'}" in text, name
    assert "recipe = study" in text and "aug.preset = study" in text and "model.arch = vit_linear" in text
