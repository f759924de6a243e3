"""studies/ (the scripts that make docs/results/) and benchmarks/ (speed): every script path the pages and scripts
name exists, every study script opens with its command and wall time, and the shared table printer prints the
tables the pages quote."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# benchmarks/x.py, studies/x.sh, studies/README.md ... as pages, docstrings and comments write them
SCRIPT_PATH = re.compile(r"\b(?:benchmarks|studies)/[\w.-]+\.(?:py|sh|md)\b")
TEXTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "studies").iterdir()),
         *sorted((ROOT / "benchmarks").iterdir()), *sorted((ROOT / "configs").rglob("*.yaml")),
         *sorted((ROOT / "configs").rglob("*.md"))]


def study_scripts() -> list[Path]:
    """The runnable scripts of studies/: every shell script, and every Python file with a __main__ block."""
    return sorted(p for p in (ROOT / "studies").iterdir()
                  if p.suffix == ".sh" or (p.suffix == ".py" and '__name__ == "__main__"' in p.read_text()))


def opening(script: Path) -> str:
    """A script's opening comment block (shell) or module docstring (Python)."""
    text = script.read_text(encoding="utf-8")
    if script.suffix == ".py":
        return text.split('"""')[1]
    return "\n".join(line for line in text.splitlines()[:40] if line.startswith("#"))


def page_tables():
    spec = importlib.util.spec_from_file_location("page_tables", ROOT / "studies" / "page_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("text", [p for p in TEXTS if p.is_file()], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_script_path_named_exists(text):
    named = set(SCRIPT_PATH.findall(text.read_text(encoding="utf-8", errors="replace")))
    missing = sorted(path for path in named if not (ROOT / path).is_file())
    assert not missing, f"{text.relative_to(ROOT)} names scripts that do not exist: {missing}"


def test_the_path_check_finds_a_moved_script():
    assert SCRIPT_PATH.findall("run `benchmarks/reproduce_cpu.sh DATA` (see studies/README.md)") == [
        "benchmarks/reproduce_cpu.sh", "studies/README.md"]


@pytest.mark.parametrize("script", study_scripts(), ids=lambda p: p.name)
def test_every_study_script_opens_with_its_command_and_wall_time(script):
    head = opening(script)
    assert f"studies/{script.name}" in head, f"{script.name}: the opening comment should give its command"
    assert "Wall time:" in head, f"{script.name}: the opening comment should give its wall time (or 'not recorded')"


def test_markdown_table_rules_names_and_figures():
    markdown_table = page_tables().markdown_table
    assert markdown_table(["model", "init", "mIoU"], [["vit", "a|b", "0.5"]], text_columns=2).splitlines() == [
        "| model | init | mIoU |", "| --- | --- | ---: |", "| vit | a\\|b | 0.5 |"]
    assert markdown_table(["run", "min"], [], text_rule=":---").splitlines()[1] == "| :--- | ---: |"
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        markdown_table(["a", "b", "c"], [["1", "2"]])


def test_summary_cell():
    summary = page_tables().summary
    assert (summary([]), summary([0.5]), summary([0.4, 0.6])) == ("—", "0.500", "0.500 ± 0.141")


def test_own_data_page_quotes_what_publish_own_data_prints():
    # own_data.md is the page whose inputs are committed: its tables must be the printer's output, line for line
    printed = subprocess.run([sys.executable, "studies/publish_own_data.py", "docs/results/own_data/results.csv"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
    page = (ROOT / "docs" / "results" / "own_data.md").read_text(encoding="utf-8").splitlines()
    lines = [line for line in printed.splitlines() if line]
    assert lines[1] == "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    assert [line for line in lines if line not in page] == []


def load_study(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "studies" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_protocol_study_chooses_the_export_on_validation_pooled_over_pretraining_seeds():
    """e10 leads on the test set, e30 on validation (over both pretraining seeds): e30 is chosen."""
    choose = load_study("choose_on_validation").choose
    scores = {("e10-s0", 0.60, 0.70), ("e10-s1", 0.62, 0.72), ("e30-s0", 0.66, 0.65), ("e30-s1", 0.64, 0.66),
              ("e20-s0", 0.70, 0.60), ("e20-s1", 0.50, 0.61), ("scratch", 0.90, 0.90)}  # scratch is no export
    rows = [{"cell": init, "init": init, "subset": 250, "val_miou": val, "miou_plain": test}
            for init, val, test in scores]
    chosen, table = choose(rows, "pretrained_epochs", 250)
    assert chosen == "30" and table["30"][2] == 2 and table["10"][1] == pytest.approx(0.71)
    exports = [{**r, "recipe": "mild" if r["init"].endswith("s0") else "study"} for r in rows if r["init"] != "scratch"]
    assert choose(exports, "recipe")[0] == "mild"  # validation 0.653 against 0.587; test 0.650 against 0.663
    assert choose(exports, "pretrained_epochs", where={"recipe": "mild"})[0] == "20"  # seed 0's cells alone
    assert choose(exports, "pretrained_epochs", where={"recipe": "study"})[0] == "30"
    assert choose(rows, "init", where={"init": "e20-s1,e30-s1"})[0] == "e30-s1"
    with pytest.raises(Exception, match="recipe=medium"):
        choose(exports, "pretrained_epochs", where={"recipe": "medium"})
    with pytest.raises(Exception, match="needs --val-size"):
        choose([{**rows[0], "val_miou": None}], "init")


PROTOCOL = ROOT / "docs" / "results" / "pretraining" / "protocol"
SEED0_EXPORTS = "init=e10-s0,e20-s0,e30-s0,e40-s0,e50-s0"
PROTOCOL_CHOICES = [  # the choices the page quotes, as studies/pretraining_protocol.sh made them
    ["choice", "recipe", "--where", SEED0_EXPORTS],  # the full run (USE_EPOCHS=50)
    ["choice", "pretrained_epochs", "--where", "recipe=study"],
    ["cells", "img_size", "--subset", "250", "--where", "seed=0", "--where", "init=e30-s0,e30-s1",
     "--where", "recipe=study"],
    ["cells", "recipe", "--subset", "250", "--where", "arch=unet_resnet18", "--where", "img_size=128",
     "--where", "init=scratch-9ep"],
    ["cells", "recipe", "--subset", "250", "--where", "arch=vit_fused_skip", "--where", "img_size=160",
     "--where", "init=scratch"],
    ["choice", "recipe", "--where", "init=e10-s0,e20-s0"],  # the reduced run (USE_EPOCHS=20)
    ["choice", "pretrained_epochs", "--where", "recipe=mild", "--where", "init=e10-s0,e20-s0,e10-s1,e20-s1"],
    ["cells", "img_size", "--subset", "250", "--where", "seed=0", "--where", "init=e20-s0,e20-s1",
     "--where", "recipe=mild"],
]


@pytest.mark.parametrize("choice", PROTOCOL_CHOICES, ids=lambda choice: " ".join(choice[1:]))
def test_the_pretraining_page_quotes_the_choices_its_committed_results_give(choice, capsys):
    folder, *rest = choice
    load_study("choose_on_validation").main([str(PROTOCOL / folder), *rest])  # in-process: no second torch import
    printed = capsys.readouterr()
    page = (ROOT / "docs" / "results" / "pretraining.md").read_text(encoding="utf-8").splitlines()
    assert [line for line in printed.err.splitlines() if line] and printed.out.strip()
    assert [line for line in printed.err.splitlines() if line and line not in page] == []


@pytest.mark.parametrize("epochs", [20, 50])  # the reduced run's table and the 50-epoch run's
def test_the_pretraining_page_quotes_its_pretraining_tables(epochs, capsys):
    load_study("protocol_pretrainings").main([str(PROTOCOL / "pretrain"), "--epochs", str(epochs)])
    page = (ROOT / "docs" / "results" / "pretraining.md").read_text(encoding="utf-8").splitlines()
    assert [line for line in capsys.readouterr().out.splitlines() if line and line not in page] == []


# the arms whose levels the page quotes, at 250 labels: the full run's (the pretrained ViT at recipe study, the
# baselines at the recipe validation chose for each, mild, and at study) and the reduced run's (all at mild)
PROTOCOL_ARMS = {
    "full": ["vit_fused_skip/study/160/e30-s0+vit_fused_skip/study/160/e30-s1", "unet_resnet18/mild/128/scratch-9ep",
             "unet_resnet18/study/128/scratch-9ep", "unet_resnet18/mild/160/scratch", "vit_fused_skip/mild/160/scratch",
             "vit_fused_skip/study/160/scratch"],
    "reduced": ["vit_fused_skip/mild/160/e20-s0+vit_fused_skip/mild/160/e20-s1", "unet_resnet18/mild/128/scratch-9ep",
                "unet_resnet18/mild/160/scratch", "vit_fused_skip/mild/160/scratch"],
}


def test_an_arms_level_is_the_mean_of_its_cells_results(capsys):
    from simseg.experiments.report.effects import with_variant_labels
    from simseg.experiments.report.gains import Gauge
    from simseg.experiments.report.intervals import level_interval
    from simseg.experiments.sweep.results import read_results

    levels = load_study("protocol_levels")
    rows = with_variant_labels(read_results(PROTOCOL / "cells"))
    for kind, column in (("iou", "miou_plain"), ("boundary", "boundary_iou_plain")):
        pooled = PROTOCOL_ARMS["full"][0]
        counts = levels.arm_counts(Gauge(PROTOCOL / "cells"), rows, pooled, 250, kind)  # (B,S,N,C,2)
        cells = [r for r in rows if r["init"] in pooled.split("+") and r["subset"] == 250]
        assert counts.shape[:2] == (2, len(cells) // 2) and counts.shape[2] == 292
        level = level_interval(counts, resamples=200)
        assert level.gain == pytest.approx(np.mean([r[column] for r in cells]), abs=1e-9)
        assert level.low < level.gain < level.high
    with pytest.raises(SystemExit, match="no such arm in the results"):
        levels.main([str(PROTOCOL / "cells"), "--subset", "250", "--arm", "vit_fused_skip/study/160/e99-s0"])


@pytest.mark.parametrize("run", PROTOCOL_ARMS)
def test_the_pretraining_page_quotes_its_arms_levels(run, capsys):
    arms = PROTOCOL_ARMS[run]
    load_study("protocol_levels").main([str(PROTOCOL / "cells"), "--subset", "250",
                                        *(part for arm in arms for part in ("--arm", arm))])
    page = (ROOT / "docs" / "results" / "pretraining.md").read_text(encoding="utf-8").splitlines()
    printed = [line for line in capsys.readouterr().out.splitlines() if line]
    assert len(printed) == 2 + len(arms) and [line for line in printed if line not in page] == []
