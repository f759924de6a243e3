import json

import pytest

from simseg.config.loader import load_config
from simseg.config.pretrain import PretrainConfig
from simseg.errors import SimsegError
from simseg.training.rundir import (
    append_metrics,
    load_run_config,
    prepare_run_dir,
    read_metrics,
    truncate_metrics,
    write_config,
)


def test_new_run_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("precious")
    cfg = load_config(PretrainConfig, None, [f"output_dir={tmp_path / 'run'}"])
    with pytest.raises(SimsegError, match="is not empty: pass resume=true"):
        prepare_run_dir(cfg)
    assert (tmp_path / "run" / "keep.txt").read_text() == "precious"


def test_resume_refuses_a_changed_config_but_allows_logging_changes(tmp_path):
    out = f"output_dir={tmp_path / 'run'}"
    cfg = load_config(PretrainConfig, None, [out, "train.lr=1e-3"])
    write_config(prepare_run_dir(cfg), cfg)
    assert load_run_config(tmp_path / "run", PretrainConfig) == cfg
    with pytest.raises(SimsegError, match="resume=true but mask.ratio, train.lr differ"):
        prepare_run_dir(load_config(PretrainConfig, None, [out, "resume=true", "mask.ratio=0.6"]))
    prepare_run_dir(load_config(PretrainConfig, None, [out, "resume=true", "train.lr=1e-3", "data.num_workers=0"]))


def test_config_records_how_to_reproduce(tmp_path):
    cfg = load_config(PretrainConfig, None, [f"output_dir={tmp_path}"])
    write_config(tmp_path, cfg, command=["simseg", "pretrain"])
    import yaml
    meta = yaml.safe_load((tmp_path / "config.yaml").read_text())["meta"]
    assert meta["command"] == "simseg pretrain" and "torch" in meta["versions"] and meta["git_revision"]


def test_metrics_truncate_to_the_resumed_epoch(tmp_path):
    for epoch in range(3):
        append_metrics(tmp_path, {"epoch": epoch, "train_loss": 1.0 / (epoch + 1)})
    truncate_metrics(tmp_path, 2)
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [0, 1]
    append_metrics(tmp_path, {"epoch": 2})
    assert [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]


def test_a_run_folder_from_before_a_key_existed_resumes_with_that_keys_default(tmp_path):
    import yaml

    out = f"output_dir={tmp_path / 'run'}"
    cfg = load_config(PretrainConfig, None, [out])
    write_config(prepare_run_dir(cfg), cfg)
    saved = tmp_path / "run" / "config.yaml"
    tree = yaml.safe_load(saved.read_text())
    del tree["train"]["grad_clip"]  # as if written by a simseg that had no train.grad_clip yet
    saved.write_text(yaml.safe_dump(tree))
    prepare_run_dir(load_config(PretrainConfig, None, [out, "resume=true"]))
    with pytest.raises(SimsegError, match="resume=true but train.grad_clip differ"):
        prepare_run_dir(load_config(PretrainConfig, None, [out, "resume=true", "train.grad_clip=1"]))
