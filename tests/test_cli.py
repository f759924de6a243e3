import pytest

import simseg.cli as cli


def test_demo_runs_and_reports_where_the_results_are(tmp_path, monkeypatch, capsys):
    tiny = [*cli.DEMO_PRETRAIN, "data.synthetic_size=40", "data.val_size=4", "train.epochs=2", "train.batch_size=8",
            "data.num_workers=0", "log.progress=false", "log.grid_every=1"]
    monkeypatch.setattr(cli, "DEMO_PRETRAIN", tiny)
    run_dir = cli.demo(["--output-dir", str(tmp_path / "demo")])
    out = capsys.readouterr().out
    assert "reconstruction grids" in out and str(run_dir / "grids" / "epoch_001.png") in out
    cli.demo(["--output-dir", str(tmp_path / "demo")])  # a second demo run only reports
    assert "already finished" in capsys.readouterr().out


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
