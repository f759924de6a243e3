import json

import pytest

import simseg.cli as cli


def test_demo_runs_every_stage_and_reports_where_the_results_are(tmp_path, monkeypatch, capsys):
    tiny = ["model.depth=2", "train.epochs=2", "train.batch_size=8", "data.num_workers=0", "log.progress=false"]
    monkeypatch.setattr(cli, "DEMO_PRETRAIN", [*cli.DEMO_PRETRAIN, *tiny, "data.synthetic_size=40", "data.val_size=4",
                                               "log.grid_every=1"])
    monkeypatch.setattr(cli, "DEMO_CLASSIFY", [*cli.DEMO_CLASSIFY, *tiny, "data.subset=16", "data.test_size=8"])
    monkeypatch.setattr(cli, "DEMO_SEGMENT", [*cli.DEMO_SEGMENT, *tiny, "data.subset=24", "data.test_size=8"])
    root = cli.demo(["--output-dir", str(tmp_path / "demo")])
    out = capsys.readouterr().out
    assert str(root / "pretrain" / "grids") in out and str(root / "classify" / "confusion.png") in out
    for name in ("segment-scratch", "segment-pretrained", "segment"):
        assert f"{root / name / 'examples.png'}" in out
    for name in ("scratch", "pretrained", "pretrained + classify"):
        assert f"    {name} " in out
    assert json.loads((root / "segment-pretrained" / "lineage.json").read_text())["export_stage"] == "pretrain"
    assert json.loads((root / "segment" / "lineage.json").read_text())["export_stage"] == "classify"
    cli.demo(["--output-dir", str(tmp_path / "demo")])  # a second demo run only reports
    out = capsys.readouterr().out
    assert out.count("skipped") == 3 and out.count("already finished") == 2


def test_unknown_command_and_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["pretrian"])
    assert exit_info.value.code == 2 and "unknown command 'pretrian'" in capsys.readouterr().err
    cli.main(["--help"])
    assert "simseg pretrain" in capsys.readouterr().out


def test_pretrain_help_lists_every_config_key(capsys):
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--help"])
    out = capsys.readouterr().out
    assert "mask.ratio (default 0.5)" in out and "data.subset (default None)" in out
