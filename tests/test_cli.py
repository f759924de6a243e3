import json
import re

import pytest

import simseg.cli as cli


@pytest.mark.slow
def test_demo_runs_every_stage_and_reports_where_the_results_are(tmp_path, monkeypatch, capsys):
    tiny = ["model.depth=2", "train.epochs=2", "train.batch_size=8", "data.num_workers=0", "log.progress=false"]
    monkeypatch.setattr(cli, "DEMO_PRETRAIN", [*cli.DEMO_PRETRAIN, *tiny, "data.synthetic_size=40", "data.val_size=4",
                                               "log.grid_every=1"])
    monkeypatch.setattr(cli, "DEMO_CLASSIFY", [*cli.DEMO_CLASSIFY, *tiny, "data.subset=16", "data.test_size=8"])
    monkeypatch.setattr(cli, "DEMO_SEGMENT", [*cli.DEMO_SEGMENT, *tiny, "data.test_size=8"])
    monkeypatch.setattr(cli, "DEMO_SUBSETS", "8,16")
    root = cli.demo(["--output-dir", str(tmp_path / "demo")])
    out = capsys.readouterr().out
    assert str(root / "pretrain" / "grids") in out and str(root / "classify" / "confusion.png") in out
    assert f"report: {root / 'sweep' / 'report.md'}" in out and (root / "sweep" / "miou_vs_subset.png").is_file()
    for name in ("scratch", "pretrained", "pretrained+classify"):
        assert re.search(rf"    {re.escape(name)} +0\.\d{{3}} +0\.\d{{3}}\n", out), name
    rows = [json.loads(line) for line in (root / "sweep" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {r["init"] for r in rows if r["intermediate"]} == {"pretrained+classify"}
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


def test_pretrain_help_lists_every_config_key(capsys):
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--help"])
    out = capsys.readouterr().out
    assert "mask.ratio (default 0.5)" in out and "data.subset (default None)" in out
