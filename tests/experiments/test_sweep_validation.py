"""simseg sweep --val-size: the size of the one validation set every cell shares (auto, given, the template's or
the sweep folder's), checked against the labelled images and the sweep folder's record before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simseg.config.loader import load_config
from simseg.config.segment import SegmentConfig
from simseg.errors import SimsegError
from simseg.experiments.sweep.command import sweep
from simseg.experiments.sweep.validation import (
    LabelledPool,
    auto_val_size,
    check_subsets_fit,
    choose_val_size,
    recorded_val_size,
)
from tests.experiments.test_sweep import CELL

SWEEP_FILE = Path("/sweeps/a/sweep.json")
PETS = LabelledPool("pets", 1000, 6349)


def choose(flag=None, overrides=(), pool=PETS, recorded=None):
    template = load_config(SegmentConfig, None, list(overrides))
    return choose_val_size(flag, template, pool, list(overrides), SWEEP_FILE, recorded)


def test_auto_holds_out_a_tenth_of_the_pool_at_most_100_and_16_of_synthetic_data():
    assert auto_val_size(LabelledPool("pets", 1000, 6349)) == 100
    assert auto_val_size(LabelledPool("mine", 50, 420)) == 42
    assert auto_val_size(LabelledPool("tiny", 8, 4)) == 0
    assert auto_val_size(None) == 16
    size, line = choose()
    assert size == 100 and line == ("sweep: validation set of 100 images (--val-size auto), one fixed draw from the "
                                    "6,349 labelled images of pets left after the test set, the same for every subset "
                                    "and seed; each cell reports its best epoch on it")
    assert choose("0") == (0, "sweep: no validation set (--val-size 0): every cell reports its last epoch")
    assert choose("1k")[0] == 1000 and choose("auto", pool=None)[0] == 16


def test_the_flag_overrides_the_template_and_a_sweep_keeps_its_recorded_size():
    assert choose(overrides=["data.val_size=20"])[0] == 20  # the template's own size, without the flag
    assert choose("30", overrides=["model.depth=2"])[0] == 30
    with pytest.raises(SimsegError, match="data.val_size is set by --val-size for every cell: drop data.val_size="):
        choose("30", overrides=["data.val_size=20"])
    size, line = choose(recorded=0)  # a sweep made before --val-size resumes as it ran
    assert size == 0 and "no validation set" in line
    assert choose(recorded=40)[1].startswith("sweep: validation set of 40 images (as sweep.json records)")
    with pytest.raises(SimsegError) as refused:
        choose("auto", recorded=0)
    assert str(refused.value) == (f"{SWEEP_FILE} records a validation set of 0 images, and --val-size auto asks for "
                                  f"100: the cells of a sweep share one validation set; rerun with --val-size 0 or "
                                  f"choose another --output-dir")
    with pytest.raises(SimsegError, match="data.val_size=20 asks for 20"):
        choose(overrides=["data.val_size=20"], recorded=16)
    with pytest.raises(SimsegError, match="--val-size='many' is not a size"):
        choose("many")


def test_the_record_is_the_grids_or_that_of_the_config_of_an_older_sweep():
    assert recorded_val_size(None) is None and recorded_val_size({"grid": {"subsets": [8]}}) is None
    assert recorded_val_size({"grid": {"val_size": 16}, "segment_config": {"data": {"val_size": "0"}}}) == 16
    assert recorded_val_size({"grid": {}, "segment_config": {"data": {"val_size": "0"}}}) == 0
    assert recorded_val_size({"grid": {}, "segment_config": {"data": {"val_size": "1k"}}}) == 1000


def test_the_subsets_must_fit_beside_the_validation_set():
    pool = LabelledPool("pets", 1000, 120)
    check_subsets_fit(pool, [100, 108], 12)
    check_subsets_fit(None, [10_000], 16)  # synthetic data grows with the subset
    with pytest.raises(SimsegError, match="--subsets 110 asks for 110 labelled images but pets has 108 after the "
                                          "1,000-image test set and 12 validation images: use sizes up to 108 or a "
                                          "smaller --val-size"):
        check_subsets_fit(pool, [100, 110], 12)
    with pytest.raises(SimsegError, match="--val-size 120 leaves no training images: pets has 120 after the "
                                          r"1,000-image test set; choose --val-size auto \(12 here\) or 0"):
        check_subsets_fit(pool, [1], 120)


def test_a_sweep_folder_with_another_validation_size_is_refused_before_anything_runs(tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps({"grid": {"subsets": [8], "val_size": 16}}))
    with pytest.raises(SimsegError, match=f"{out / 'sweep.json'} records a validation set of 16 images, and "
                                          "--val-size 4 asks for 4"):
        sweep(["--subsets", "8", "--val-size", "4", "--output-dir", str(out), *CELL])
    assert [p.name for p in out.iterdir()] == ["sweep.json"]
