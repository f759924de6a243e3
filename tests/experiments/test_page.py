"""Results pages regenerated from their results folders (simseg.experiments.report.page) on hand-made reports."""

from __future__ import annotations

import pytest

from simseg.errors import SimsegError
from simseg.experiments.report.page import report_section, update_page

TABLE = "| init | 250 |\n| --- | --- |\n| scratch | {miou} |"
REPORT = f"# Sweep report: x\n\n## Test mIoU\n\n{TABLE}\n\nnote\n\n## Cost\n\nc\n"


def page_with_block(tmp_path, body="old", args="results"):
    (tmp_path / "results").mkdir(exist_ok=True)
    page = tmp_path / "page.md"
    page.write_text(f"# A page\n\nprose\n\n<!-- simseg report {args}: \"Test mIoU\" -->\n{body}\n"
                    f"<!-- end simseg report -->\n\nmore prose\n")
    return page


def test_a_section_is_the_body_up_to_the_next_heading():
    assert report_section(REPORT.format(miou=0.5), "Test mIoU") == TABLE.format(miou=0.5) + "\n\nnote"
    with pytest.raises(SimsegError, match="no section 'Gains'; its sections are: Test mIoU, Cost"):
        report_section(REPORT, "Gains")


def test_blocks_are_rewritten_from_their_folder_and_the_check_catches_a_difference(tmp_path):
    page = page_with_block(tmp_path, args="results --tta")
    seen = []

    def render(folder, options):
        seen.append((folder.name, options))
        return REPORT.format(miou=0.5)

    with pytest.raises(SimsegError, match="the tables 'Test mIoU' differ .*simseg report --page"):
        update_page(page, render, check=True)
    assert "old" in page.read_text()  # a check writes nothing
    assert update_page(page, render) == ["Test mIoU"]
    text = page.read_text()
    assert "| scratch | 0.5 |" in text and "old" not in text and text.startswith("# A page\n\nprose\n")
    assert text.endswith("<!-- end simseg report -->\n\nmore prose\n")
    assert update_page(page, render, check=True) == [] and seen[0] == ("results", ["--tta"])


def test_a_page_without_blocks_or_folder_is_refused(tmp_path):
    page = tmp_path / "plain.md"
    page.write_text("# nothing generated\n")
    with pytest.raises(SimsegError, match="has no '<!-- simseg report"):
        update_page(page, lambda folder, options: "")
    with pytest.raises(SimsegError, match="results folder gone of the block 'Test mIoU' does not exist"):
        update_page(page_with_block(tmp_path, args="gone"), lambda folder, options: REPORT)


def test_publish_copies_the_table_and_each_cells_light_files_only(tmp_path):
    from simseg.experiments.report.publish import publish_results

    sweep = tmp_path / "sweep"
    cell = sweep / "cells/scratch/subset-8/seed-0"
    cell.mkdir(parents=True)
    for name in ("metrics.json", "metrics.jsonl", "test_scores.npz", "model.safetensors", "examples.png"):
        (cell / name).write_text(name)
    (sweep / "results.jsonl").write_text(
        '{"cell": "scratch/subset-8/seed-0", "init": "scratch", "subset": 8, "seed": 0, "miou_plain": 0.5, '
        '"run_dir": "cells/scratch/subset-8/seed-0"}\n'
        '{"cell": "x/subset-8/seed-0", "init": "x", "subset": 8, "seed": 0, "miou_plain": 0.4, "run_dir": "/abs"}\n')
    out = tmp_path / "docs/results/page"
    written = publish_results(sweep, out)
    assert sorted(p.relative_to(out).as_posix() for p in written) == [
        "cells/scratch/subset-8/seed-0/metrics.json", "cells/scratch/subset-8/seed-0/metrics.jsonl",
        "cells/scratch/subset-8/seed-0/test_scores.npz", "results.jsonl"]
    assert not (out / "cells/scratch/subset-8/seed-0/model.safetensors").exists()
    with pytest.raises(SimsegError, match="is the sweep folder itself"):
        publish_results(sweep, sweep)


def test_publishing_into_the_sweep_itself_is_refused_before_the_report_writes(tmp_path):
    from simseg.cli import report

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "results.csv").write_text("init,subset,seed,miou_plain\nscratch,8,0,0.5\n")
    with pytest.raises(SimsegError, match="is the sweep folder itself"):
        report([str(sweep), "--publish", str(sweep)])
    assert [p.name for p in sweep.iterdir()] == ["results.csv"]
