"""What ``simseg export`` and ``simseg card`` make of a finished segmentation run, called without the CLI (a whole
release: test_onnx_export.py's seven-class test): the refusals before anything is written, the file kept
(with no report vouching for it) when the run's test images are gone, and the card alone, with or without a fresh
evaluation."""

from __future__ import annotations

import pytest

from simseg.errors import SimsegError
from simseg.inference.model_card import model_card
from simseg.inference.release import CARD_NAME, export_release, write_run_card
from simseg.inference.trained_run import load_trained_run

VIT = "vit_fused_skip"  # an architecture whose ONNX export takes any batch size (see test_onnx_export.py)


def test_an_out_that_is_a_folder_is_refused_before_anything_is_written(finished_run, tmp_path):
    folder = tmp_path / "exports"
    folder.mkdir()
    with pytest.raises(SimsegError, match=f"--out {folder} is a folder: give the .onnx file to write, e.g. "
                                          f"{folder / 'model.onnx'}") as err:
        export_release(finished_run(), folder)
    assert "\n" not in str(err.value) and not list(folder.iterdir())


@pytest.mark.slow  # an export
def test_an_export_whose_test_images_are_gone_is_kept_but_not_vouched_for(finished_run, tmp_path):
    run_dir = finished_run(f"model.arch={VIT}")
    with open(run_dir / "test_images.txt", "a") as names:
        names.write("moved_away\n")  # as if the data had changed since the run
    out = tmp_path / "release" / "pets.onnx"
    with pytest.raises(SimsegError, match=rf"wrote {out} but could not verify it against the run's test images: "
                                          r"1 of the run's 9 test images \(e.g. moved_away\) are not in"):
        export_release(run_dir, out, threads=1)
    assert sorted(p.name for p in out.parent.iterdir()) == ["pets.onnx"]  # no report, no card


def test_the_card_of_a_run_goes_into_the_run_folder_and_says_how_to_add_a_fresh_evaluation(finished_run):
    run_dir = finished_run()
    path = write_run_card(run_dir)
    assert path == run_dir / CARD_NAME
    assert path.read_text() == model_card(load_trained_run(run_dir))
    assert "`simseg card RUN --evaluate`" in path.read_text()


def test_an_evaluated_card_goes_where_asked_with_both_columns_filled(finished_run, tmp_path):
    run_dir = finished_run()
    path = write_run_card(run_dir, tmp_path / "cards" / "run.md", evaluate=True)
    assert path == tmp_path / "cards" / "run.md" and not (run_dir / CARD_NAME).exists()
    card = path.read_text()
    assert "--evaluate" not in card and "averaged over 6 views" in card


def test_a_folder_that_is_not_a_finished_run_gets_no_card(tmp_path):
    with pytest.raises(SimsegError, match=f"{tmp_path} is not a simseg run folder") as err:
        write_run_card(tmp_path)
    assert "\n" not in str(err.value)
    assert not (tmp_path / CARD_NAME).exists()
