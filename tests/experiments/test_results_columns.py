"""Every figure's column names its view: metrics.json files of old runs (top-level figures, scored at the model's
input) and of new runs (``scores`` per resolution and view) map to the same columns through one function, and
results tables in the old columns (the committed ones under docs/results) still read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from simseg.experiments.sweep.columns import metric_column, metric_figures, upgrade_old_columns
from simseg.experiments.sweep.plan import Cell, Init
from simseg.experiments.sweep.results import read_results, result_row

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ("background", "pet")


def figs(miou: float, boundary: float, pet: float) -> dict:
    """A segmentation_metrics + boundary_iou figure dict (dyadic values: exact)."""
    return {"miou": miou, "boundary_iou": boundary, "pixel_accuracy": miou + 0.25, "mean_dice": None,
            "iou": {"background": 2 * miou - pet, "pet": pet}, "dice": {"pet": pet + 0.125}}


def test_the_column_scheme():
    assert metric_column("miou") == "miou_plain" and metric_column("miou", "tta") == "miou_tta"
    assert metric_column("miou", "plain", at="input") == "miou_plain_input"
    assert metric_column("boundary_iou", "tta") == "boundary_iou_tta"
    with pytest.raises(ValueError, match="view='ensemble'"):
        metric_column("miou", "ensemble")


def test_an_old_metrics_json_without_tta_fills_the_plain_columns_scored_at_input():
    old = {**figs(0.5, 0.25, 0.375), "tta": None, "best_val_miou": None, "val_images": 0}
    got = metric_figures(old, CLASSES)
    assert (got["scored_at"], got["miou_plain"], got["miou_tta"], got["miou_plain_input"]) == ("input", 0.5, None, 0.5)
    assert (got["boundary_iou_plain"], got["boundary_iou_tta"], got["pixel_accuracy_plain"]) == (0.25, None, 0.75)
    assert (got["iou_pet_plain"], got["iou_pet_tta"], got["dice_pet_plain"], got["dice_background_plain"]) == \
        (0.375, None, 0.5, None)
    assert (got["val_images"], got["val_miou"]) == (0, None)
    assert metric_figures({"miou": 0.5}, CLASSES)["val_images"] == 0  # before val_images: no validation either


def test_an_old_metrics_json_with_tta_keeps_the_plain_view_only_where_it_was_recorded():
    old = {**figs(0.625, 0.375, 0.5), "tta": {"scales": [1.0], "flip": True}, "plain_miou": 0.5,
           "plain_boundary_iou": 0.25, "best_val_miou": 0.4375, "val_images": 16}
    got = metric_figures(old, CLASSES)
    assert (got["miou_plain"], got["miou_tta"], got["miou_plain_input"]) == (0.5, 0.625, 0.5)
    assert (got["boundary_iou_plain"], got["boundary_iou_tta"]) == (0.25, 0.375)
    assert (got["iou_pet_plain"], got["iou_pet_tta"], got["pixel_accuracy_plain"]) == (None, 0.5, None)
    assert (got["val_images"], got["val_miou"], got["scored_at"]) == (16, 0.4375, "input")


def test_a_new_metrics_json_reads_its_scores_at_the_resolution_it_was_scored_at():
    new = {**figs(0.625, 0.375, 0.5), "plain_miou": 0.5, "tta": {"scales": [1.0], "flip": True},
           "scored_at": "native", "best_val_miou": None, "val_images": 0,
           "scores": {"native": {"plain": figs(0.5, 0.25, 0.375), "tta": figs(0.625, 0.375, 0.5)},
                      "input": {"plain": figs(0.75, 0.5, 0.625), "tta": figs(0.875, 0.5, 0.75)}}}
    got = metric_figures(new, CLASSES)
    assert (got["scored_at"], got["miou_plain"], got["miou_tta"], got["miou_plain_input"]) == \
        ("native", 0.5, 0.625, 0.75)
    assert (got["iou_pet_plain"], got["iou_pet_tta"], got["dice_pet_tta"]) == (0.375, 0.5, 0.625)
    without_tta = {**new, "tta": None, "scores": {"native": {"plain": figs(0.5, 0.25, 0.375)},
                                                  "input": {"plain": figs(0.75, 0.5, 0.625)}}}
    got = metric_figures(without_tta, CLASSES)
    assert (got["miou_plain"], got["miou_tta"], got["boundary_iou_tta"], got["iou_pet_tta"]) == (0.5, None, None, None)


def test_a_row_gets_the_validation_columns_and_the_labels_it_used(tmp_path):
    metrics = {**figs(0.5, 0.25, 0.375), "best_val_miou": 0.4375, "val_images": 16, "train_images": 8}
    row = result_row(Cell(Init("scratch", "scratch"), 8, 0), metrics, tmp_path)
    assert (row["val_images"], row["labels_used"], row["val_miou"], row["miou_plain"]) == (16, 24, 0.4375, 0.5)
    assert result_row(Cell(Init("scratch", "scratch"), 8, 0), {"miou": 0.5}, tmp_path)["labels_used"] == 8


def test_old_columns_are_renamed_by_their_view():
    plain = {"init": "scratch", "miou": "0.5", "plain_miou": "", "boundary_iou": "0.25", "plain_boundary_iou": "",
             "iou_pet": "0.375", "recall_road sign": "0.5"}
    assert upgrade_old_columns(plain) == {"init": "scratch", "miou_plain": "0.5", "boundary_iou_plain": "0.25",
                                          "iou_pet_plain": "0.375", "recall_road sign_plain": "0.5",
                                          "scored_at": "input", "miou_plain_input": "0.5"}
    tta = {"miou": 0.625, "plain_miou": 0.5, "boundary_iou": 0.375, "iou_pet": 0.5, "fwiou": 0.75}
    assert upgrade_old_columns(tta) == {"miou_tta": 0.625, "miou_plain": 0.5, "boundary_iou_tta": 0.375,
                                        "iou_pet_tta": 0.5, "fwiou_tta": 0.75, "scored_at": "input",
                                        "miou_plain_input": 0.5}
    new = {"miou_plain": 0.5, "iou_pet_plain": 0.25}
    assert upgrade_old_columns(new) == new


@pytest.mark.parametrize("page,first", [
    ("results.csv", {"miou_plain": 0.32603037581695804, "miou_tta": None, "iou_pet_plain": 0.3968475598857437}),
    ("own_data/results.csv", {"miou_plain": 0.5979900085301207, "miou_tta": 0.6320606209309678,
                              "boundary_iou_plain": 0.28724014975873413, "iou_pet_tta": 0.5789669380376472,
                              "iou_pet_plain": None}),
])
def test_the_committed_results_in_old_columns_still_read(tmp_path, page, first):
    shutil.copy(ROOT / "docs/results" / page, tmp_path / "results.csv")
    rows = read_results(tmp_path)
    assert {key: rows[0][key] for key in first} == first
    assert all(row["scored_at"] == "input" and row["miou_plain_input"] == row["miou_plain"] for row in rows)
