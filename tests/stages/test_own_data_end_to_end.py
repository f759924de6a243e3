"""A user's own data through every command, as the user types them: ``simseg data synthetic`` writes a 2-class set
(binary 0/255 masks read with ``data.label_map=0:0,255:1``, a class file naming the classes) and a 7-class one
(palette PNGs), then pretrain (on the folder's images) -> segment (from that pretraining) -> predict -> export ->
card -> sweep (scratch and the pretraining) -> report, and every output carries the dataset's classes: classes.json,
predict's palette PNGs and ``--label-values source``, the ONNX metadata, the model card's class table, the sweep's
per-class columns and the report's per-class table.

Each dataset's pipeline runs once per module (a module-scoped fixture) and the tests read what it left."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from simseg.cli import main
from simseg.data.label_set import LabelSet, read_run_label_set
from simseg.data.synthetic_export import write_synthetic
from simseg.data.synthetic_pairs import SYNTHETIC_SHAPES

pytestmark = pytest.mark.slow

# A 2-block encoder on 32 px inputs (2x2 patches), 16 images of 48 px, one epoch: the smallest runs of every command.
COUNT, SIZE = 16, 48
SMALL = ["model.depth=2", "model.img_size=32", "data.num_workers=0", "train.epochs=1", "train.batch_size=8",
         "log.progress=false"]
PRETRAIN = [*SMALL, "data.val_size=2", "log.grid_every=0", "log.grid_rows=2"]
CELL = [*SMALL, "data.test_size=4", "log.examples=2"]  # a segmentation run, less its subset
SUBSET = 8
TWO = LabelSet(("backdrop", "shape"), ((16, 32, 48), (240, 160, 0)), (0, 255), "shapes against a backdrop")
SEVEN = SYNTHETIC_SHAPES  # names and title from the class file, colours from the masks' palette


@dataclass
class Pipeline:
    """The folders one dataset's commands wrote, and the seconds each command took."""

    classes: LabelSet
    data: Path
    pretrain: Path
    segment: Path
    predicted: dict[str, Path]
    onnx: Path | None
    sweep: Path
    seconds: dict[str, float] = field(default_factory=dict)


def simseg(pipeline_seconds: dict, *argv: str) -> None:
    """``simseg ARGV`` as the command line runs it, timed; a refusal fails the test with its line."""
    start = time.perf_counter()
    try:
        main(list(argv))
    except SystemExit as exit_:
        pytest.fail(f"simseg {' '.join(argv)} exited with {exit_.code}")
    pipeline_seconds[argv[0]] = pipeline_seconds.get(argv[0], 0) + time.perf_counter() - start


def write_data(root: Path, name: str) -> tuple[Path, list[str]]:
    """The dataset ``name`` on disk, and the keys that read it."""
    if name == "2 classes":
        data = write_synthetic(root / "shapes-binary", "binary", COUNT, SIZE)
        # names and colours from a class file, the values from the label map (0 and 255, as the masks store them)
        (data / "classes.json").write_text(json.dumps({"title": TWO.title, "classes": [
            {"name": n, "colour": list(c)} for n, c in zip(TWO.names, TWO.colours)]}))
        return data, ["data.label_map=0:0,255:1"]
    return write_synthetic(root / "shapes-palette", "palette", COUNT, SIZE), []


@pytest.fixture(scope="module", params=["2 classes", "7 classes"])
def pipeline(request, tmp_path_factory) -> Pipeline:
    root = tmp_path_factory.mktemp(request.param.replace(" ", "-"))
    data, keys = write_data(root, request.param)
    done = Pipeline(TWO if request.param == "2 classes" else SEVEN, data, root / "pretrain", root / "segment", {},
                    root / "export" / "model.onnx", root / "sweep")
    run = lambda *argv: simseg(done.seconds, *argv)  # noqa: E731
    run("pretrain", f"data.source={data}", f"output_dir={done.pretrain}", *PRETRAIN)
    run("segment", f"data.source={data}", f"init={done.pretrain}", f"output_dir={done.segment}", *CELL,
        f"data.subset={SUBSET}", *keys)
    pictures = [str(p) for p in sorted((data / "images").iterdir())[:2]]
    for values in ("classes", "source"):
        done.predicted[values] = root / f"predicted-{values}"
        run("predict", str(done.segment), *pictures, "--out", str(done.predicted[values]), "--label-values", values,
            "--quiet")
    run("export", "--format", "onnx", str(done.segment), "--out", str(done.onnx), "--threads", "1")
    run("card", str(done.segment))
    run("sweep", "--data", str(data), "--init", f"scratch,pretrained={done.pretrain}", "--subsets", str(SUBSET),
        "--seeds", "0", "--output-dir", str(done.sweep), *CELL, *keys)
    run("report", str(done.sweep))
    print(f"{request.param}: " + ", ".join(f"{k} {v:.1f}s" for k, v in done.seconds.items()))
    return done


def test_the_segment_run_records_the_datasets_classes_and_its_pretraining(pipeline):
    assert read_run_label_set(pipeline.segment) == pipeline.classes
    shares = json.loads((pipeline.segment / "classes.json").read_text())
    assert [c["name"] for c in shares["classes"]] == list(pipeline.classes.names)
    metrics = json.loads((pipeline.segment / "metrics.json").read_text())
    assert list(metrics["iou"]) == list(pipeline.classes.names)
    assert metrics["train_images"] == SUBSET and metrics["test_images"] == 4
    lineage = json.loads((pipeline.segment / "lineage.json").read_text())
    assert Path(lineage["init"]) == pipeline.pretrain and lineage["export_stage"] == "pretrain"


def test_predict_writes_the_runs_colours_and_the_datasets_values(pipeline):
    classes = pipeline.classes
    colours, values = np.array(classes.colours), np.array(classes.values)
    written = sorted(p.name for p in pipeline.predicted["classes"].glob("*.png"))
    assert written == [f"synthetic_0000{i}.png" for i in range(2)]
    for name in written:
        by_id, by_value = (Image.open(pipeline.predicted[k] / name) for k in ("classes", "source"))
        assert by_id.mode == by_value.mode == "P" and by_id.size == by_value.size == (SIZE, SIZE)
        ids = np.array(by_id)
        assert ids.max() < classes.num_classes
        assert np.array_equal(np.array(by_value), values[ids])  # 0 and 255 for the binary masks' classes
        palette = np.array(by_id.getpalette()).reshape(-1, 3)
        assert np.array_equal(palette[:classes.num_classes], colours)
        assert np.array_equal(np.array(by_value.getpalette()).reshape(-1, 3)[values], colours)
    head = json.loads((pipeline.predicted["source"] / "predictions.jsonl").read_text().splitlines()[0])
    assert head["classes"] == list(classes.names) and head["values"] == list(classes.values)


def test_the_onnx_metadata_holds_the_runs_classes(pipeline):
    metadata = {p.key: p.value for p in onnx.load(str(pipeline.onnx), load_external_data=False).metadata_props}
    info = json.loads(metadata["simseg"])
    assert info["classes"] == list(pipeline.classes.names)
    assert info["palette"] == [list(c) for c in pipeline.classes.colours]
    assert info["values"] == list(pipeline.classes.values)
    report = json.loads((pipeline.onnx.parent / "export_report.json").read_text())
    assert report["onnx_checker"] == "passed" and report["test_images"] == 4  # checked on the run's test images


def test_the_model_card_lists_the_datasets_classes(pipeline):
    card = (pipeline.segment / "MODEL_CARD.md").read_text()
    table = card[card.index("## Classes"):]
    for i, (name, value) in enumerate(zip(pipeline.classes.names, pipeline.classes.values)):
        assert f"| {i} | {name} | " in table and table.split(f"| {i} | {name} | ")[1].split("\n")[0].endswith(
            f"| {value} |")
    assert f"{pipeline.classes.num_classes} classes" in card


def test_the_sweep_and_its_report_use_the_datasets_class_names(pipeline):
    with (pipeline.sweep / "results.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert sorted(r["init"] for r in rows) == ["pretrained", "scratch"]
    assert all(r["subset"] == str(SUBSET) and r["seed"] == "0" for r in rows)
    for row in rows:
        assert all(row[f"iou_{name}_plain"] != "" for name in pipeline.classes.names)
    for init in ("scratch", "pretrained"):
        cell = next(p for p in (pipeline.sweep / "cells").rglob("classes.json") if init in p.parts)
        assert read_run_label_set(cell.parent) == pipeline.classes
    text = (pipeline.sweep / "report.md").read_text()
    for init in ("scratch", "pretrained"):
        for name in pipeline.classes.names:
            assert f"| {init} | {SUBSET} | {name} | " in text
