"""The one reader of run folders: what each function finds in a folder laid out by hand, and what it says when the
file it reads is absent."""

from __future__ import annotations

import json

from simseg.experiments import run_folders as rf
from simseg.models.pretraining import LEGACY_METHOD


def write(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_config_metrics_and_epochs_of_a_run(tmp_path):
    run = tmp_path / "run"
    assert not rf.run_started(run) and rf.run_metrics(run) is None and rf.epoch_records(run) == []
    assert rf.images_of_run(run) is None and rf.method_of_run(run) is None
    write(run / "config.yaml", "data:\n  subset: 250\nmodel:\n  depth: 2\n")
    assert rf.run_started(run) and rf.run_config_value(run, "data.subset") == 250
    assert rf.run_config_value(run, "data.nothing") is None and rf.run_config_value(run, "model.depth.deeper") is None
    assert rf.method_of_run(run) == LEGACY_METHOD  # a config written before ``method`` existed
    write(run / "config.yaml", "method: mae\n")
    assert rf.method_of_run(run) == "mae"
    write(run / "metrics.json", json.dumps({"train_images": 877}))
    write(run / "metrics.jsonl", '{"epoch": 0}\n\n{"epoch": 1}\n')
    assert rf.images_of_run(run) == 877 and [r["epoch"] for r in rf.epoch_records(run)] == [0, 1]


def test_lineage_leads_to_the_pretraining_run(tmp_path):
    pretrain, classify, segment = (tmp_path / n for n in ("pretrain", "classify", "segment"))
    pretrain.mkdir()
    write(classify / "lineage.json", json.dumps({"export": str(pretrain / "encoder.safetensors")}))
    write(segment / "lineage.json", json.dumps({"export": str(classify / "encoder.safetensors")}))
    assert rf.lineage_parent(pretrain) is None and rf.lineage_parent(segment) == classify.resolve()
    assert rf.lineage_root(segment) == pretrain.resolve() and rf.lineage_root(pretrain) == pretrain
    write(pretrain / "lineage.json", json.dumps({"init": "scratch"}))  # a first stage with a lineage of its own
    assert rf.lineage_root(segment) is None
    write(pretrain / "lineage.json", json.dumps({"export": str(segment / "encoder.safetensors")}))  # a loop
    assert rf.lineage_root(segment) is None


def test_pictures_and_exports(tmp_path):
    run = tmp_path / "run"
    assert rf.latest_grid(run) is None and rf.examples_picture(run) is None
    write(run / "grids" / "grid.png")
    assert rf.latest_grid(run) == (run / "grids" / "grid.png", "latest grid")
    for epoch in ("epoch_9.png", "epoch_010.png", "epoch_x.png"):
        write(run / "grids" / epoch)
    assert rf.latest_grid(run) == (run / "grids" / "epoch_010.png", "epoch 10")  # by number, not by name
    write(run / "examples.png")
    assert rf.examples_picture(run) == run / "examples.png"
    assert rf.exporting_run(run / "exports" / "epoch_004") == (run, 4)
    assert rf.exporting_run(run) == (run, None)


def test_cell_records_in_path_order(tmp_path):
    for name in ("b/subset-250/seed-0", "a/subset-500/seed-1", "a/subset-250/seed-0"):
        write(tmp_path / "cells" / name / rf.CELL_RECORD, json.dumps({"cell": name}))
    write(tmp_path / "cells" / "c" / "notes.json", "{}")
    found = list(rf.cell_records(tmp_path))
    assert [record["cell"] for _, record in found] == ["a/subset-250/seed-0", "a/subset-500/seed-1",
                                                      "b/subset-250/seed-0"]
    assert all(folder.name.startswith("seed-") for folder, _ in found)
