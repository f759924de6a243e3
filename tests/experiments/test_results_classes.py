"""Results and report follow the dataset's classes: per-class columns named from a run's ``classes.json`` (any
names, written safely and read back), the Boundary IoU beside mIoU where runs measured it, and old pets tables and
hand-written ones still read. No run trains here: run folders are fabricated (metrics.json + classes.json)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simseg.data.label_set import LabelSet, default_colours, write_run_label_set
from simseg.experiments.report.build import build_report
from simseg.experiments.sweep.plan import Cell, Init
from simseg.experiments.sweep.results import (
    class_column,
    class_columns,
    class_names,
    read_results,
    result_columns,
    result_row,
    write_results,
)

STREET = LabelSet(("background", "road", "road sign", "car/truck", "person", "50% shade", "Straße"),
                  default_colours(7), title="a street scene")
KINDS = ("iou", "dice", "precision", "recall")


def csv_header(sweep_dir: Path) -> list[str]:
    with (sweep_dir / "results.csv").open(newline="") as file:
        return next(csv.reader(file))


def fabricate_cell(sweep_dir: Path, cell: Cell, metrics: dict, classes: LabelSet | None) -> dict:
    """A finished cell's run folder as the segment stage leaves it (classes.json only when ``classes``); its row."""
    run_dir = cell.run_dir(sweep_dir)
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    if classes is not None:
        write_run_label_set(run_dir, classes)
    return result_row(cell, metrics, sweep_dir)


def street_metrics(miou: float, boundary_iou: float | None, offset: float) -> dict:
    """Per-class figures i/8 + offset (IoU), and Dice, precision and recall a fixed step above it: exact in binary."""
    figures = {kind: {name: i / 8 + offset + step for i, name in enumerate(STREET.names)}
               for kind, step in zip(KINDS, (0.0, 0.0625, 0.125, 0.1875))}
    return {"miou": miou, "boundary_iou": boundary_iou, **figures}


def test_class_columns_are_safe_and_read_back():
    assert class_column("iou", "pet") == "iou_pet_plain"  # pets keep their names, with the view
    assert class_column("iou", "pet", "tta") == "iou_pet_tta"
    assert class_column("iou", "road sign") == "iou_road+sign_plain"
    assert class_column("dice", "car/truck") == "dice_car%2Ftruck_plain"
    assert class_column("recall", "50% a+b") == "recall_50%25+a%2Bb_plain"
    assert class_column("precision", "Straße") == "precision_Straße_plain"  # letters of any script stay readable
    assert class_column("iou", "x_tta") == "iou_x_tta_plain"  # the view is always the last part
    columns = ["cell", "miou_plain", "boundary_iou_tta", "iou_road+sign_plain", "iou_back_ground_tta",
               "dice_road+sign_plain", "recall_x_plain", "iou_road sign_tta", "iou_x_tta_plain",
               "iou_pet"]  # "iou_road sign_tta" as a person may write it by hand; "iou_pet" names no view
    assert class_names(columns) == ("road sign", "back_ground", "x", "x_tta")
    assert class_names(class_column(kind, name, view) for kind in KINDS for view in ("plain", "tta")
                       for name in STREET.names) == STREET.names
    assert class_names(["miou_plain", "iou_plain", "ious_x_plain", "iou_x_native"]) == ()


def test_a_seven_class_sweep_names_its_classes_in_the_table_and_the_report(tmp_path):
    sweep_dir = tmp_path / "sweep"
    scratch, pretrained = Init("scratch", "scratch"), Init("p", str(tmp_path / "p"))
    rows = [fabricate_cell(sweep_dir, Cell(init, 8, seed), street_metrics(0.25 + 0.25 * (init is pretrained),
                                                                           0.125 + 0.125 * seed, 0.0625 * seed),
                           STREET)
            for init in (scratch, pretrained) for seed in (0, 1)]
    per_class = list(class_columns(STREET.names))
    assert list(rows[0]) == list(result_columns(STREET.names)) and per_class[2] == "iou_road+sign_plain"
    assert per_class[7 + 2] == "iou_road+sign_tta" and len(per_class) == 4 * 2 * 7
    assert rows[1]["iou_road+sign_plain"] == 2 / 8 + 0.0625 and rows[1]["iou_road+sign_tta"] is None
    assert rows[1]["recall_Straße_plain"] == 6 / 8 + 0.0625 + 0.1875
    write_results(sweep_dir, rows)
    header = csv_header(sweep_dir)
    assert header == list(result_columns(STREET.names))
    assert [c for c in header if c.startswith(KINDS)] == per_class and "iou_pet_plain" not in header
    typed = read_results(sweep_dir)
    assert list(typed[0]) == header and typed[1]["iou_road+sign_plain"] == 0.3125
    assert typed[1]["boundary_iou_plain"] == 0.25 and typed[1]["scored_at"] == "input"

    run_dir = sweep_dir / "cells/p/subset-8/seed-1"
    Image.fromarray(np.zeros((4, 6, 3), dtype=np.uint8)).save(run_dir / "examples.png")
    text = build_report(sweep_dir).read_text()
    # per class: the mean over the seeds of i/8 + {0, 1/16} + step
    assert "| p | 8 | road sign | 0.281 | 0.344 | 0.406 | 0.469 |" in text
    assert "| scratch | 8 | car/truck | 0.406 | 0.469 | 0.531 | 0.594 |" in text
    assert "| p | 8 | Straße | 0.781 | 0.844 | 0.906 | 0.969 |" in text
    assert "| model / init | labelled | test mIoU, plain | Boundary IoU, plain | parameters (encoder) |" in text
    assert "| p | 8 | 0.500 ± 0.000 (n=2) | 0.188 | — |" in text  # Boundary IoU: mean of 0.125 and 0.25
    assert "mean over the classes. " in text and "class named boundary" not in text
    assert "(background #000000, road #" in text and "road sign #" in text and "unlabelled pixels #808080" in text
    assert "pet" not in text.replace("pretrain", "")


def test_an_old_cell_without_classes_json_is_pets_and_has_no_boundary_iou(tmp_path):
    metrics = {"miou": 0.5, "iou": {"background": 0.75, "pet": 0.5, "boundary": 0.25}, "dice": {"pet": 0.625}}
    row = fabricate_cell(tmp_path, Cell(Init("scratch", "scratch"), 250, 0), metrics, None)
    assert (row["iou_background_plain"], row["iou_pet_plain"], row["iou_boundary_plain"], row["dice_pet_plain"],
            row["recall_pet_plain"]) == (0.75, 0.5, 0.25, 0.625, None)
    assert row["boundary_iou_plain"] is None  # a metrics.json from before the contour measure
    write_results(tmp_path, [row])
    assert "iou_boundary_plain" in csv_header(tmp_path) and "boundary_iou_plain" in csv_header(tmp_path)


def test_an_old_pets_results_csv_still_reports_its_classes_without_a_boundary_iou_column(tmp_path):
    # a results.csv written before this change: the fixed pets columns, no boundary_iou
    (tmp_path / "results.csv").write_text(
        "cell,init,init_path,intermediate,base_init,subset,seed,miou,plain_miou,iou_background,iou_pet,iou_boundary,"
        "dice_background,dice_pet,dice_boundary,precision_pet,recall_pet,parameters,encoder_parameters,run_dir\n"
        "scratch/subset-250/seed-0,scratch,scratch,false,,250,0,0.5,,0.75,0.5,0.25,0.875,0.625,0.375,0.5625,0.4375,"
        "2000000,1000000,cells/scratch/subset-250/seed-0\n")
    row, = read_results(tmp_path)
    assert list(row) == list(result_columns(("background", "pet", "boundary")))
    assert (row["iou_boundary_plain"], row["boundary_iou_plain"], row["recall_boundary_plain"]) == (0.25, None, None)
    assert (row["miou_plain"], row["miou_tta"], row["miou_plain_input"], row["scored_at"]) == (0.5, None, 0.5, "input")
    text = build_report(tmp_path).read_text()
    assert "| scratch | 250 | boundary | 0.250 | 0.375 | — | — |" in text
    assert "| scratch | 250 | pet | 0.500 | 0.625 | 0.562 | 0.438 |" in text
    assert "| model / init | labelled | test mIoU, plain | parameters (encoder) |" in text  # no Boundary IoU column
    assert "| scratch | 250 | 0.500 | 2.00M (1.00M) |" in text and "Boundary IoU" not in text


def test_a_hand_written_table_has_neither_per_class_figures_nor_boundary_iou(tmp_path):
    (tmp_path / "results.csv").write_text("init,subset,seed,miou\nscratch,250,0,0.5\n")
    row, = read_results(tmp_path)
    assert list(row) == list(result_columns())
    text = build_report(tmp_path).read_text()
    assert "## Per-class figures" not in text and "Boundary IoU" not in text
    # a hand-written table with the Boundary IoU alone still gets the table it belongs to
    (tmp_path / "results.csv").write_text("init,subset,seed,miou,boundary_iou,iou_road sign\n"
                                          "scratch,250,0,0.5,0.25,0.375\n")
    text = build_report(tmp_path).read_text()
    assert "| scratch | 250 | 0.500 | 0.250 | — | — | — | — |" in text
    assert "| scratch | 250 | road sign | 0.375 | — | — | — |" in text


@pytest.mark.slow
def test_a_sweep_on_seven_synthetic_classes_reports_them_by_name(tmp_path):
    from simseg.data.synthetic_pairs import SYNTHETIC_SHAPES
    from simseg.experiments.sweep.command import sweep
    from tests.experiments.test_sweep import CELL

    out = tmp_path / "sweep"
    sweep(["--subsets", "4", "--output-dir", str(out), *CELL, "data.source=synthetic-shapes"])
    header = csv_header(out)
    assert [c for c in header if c.startswith(KINDS)] == list(class_columns(SYNTHETIC_SHAPES.names))
    row, = read_results(out)
    assert row["boundary_iou_plain"] is not None and row["iou_star_plain"] is not None and row["iou_star_tta"] is None
    # the synthetic source's automatic validation set: 16 images beside the 4 labelled ones, the best epoch's score
    assert (row["val_images"], row["labels_used"]) == (16, 20) and 0 <= row["val_miou"] <= 1
    text = build_report(out).read_text()
    for name in SYNTHETIC_SHAPES.names:
        assert f"| scratch | 4 | {name} | " in text
    assert "| model / init | labelled | test mIoU, plain | Boundary IoU, plain |" in text
    assert "(background #000000, ellipse #" in text  # the best cell's examples, in the classes' own colours
