"""The report's tables beyond the mIoU and its gain: the table a reader weighs models by (mIoU, Boundary IoU,
parameters, GFLOPs, speed, minutes), the per-axis averages ("effect of pretraining", "effect of heavy augmentation",
"effect of the model", each pretraining value's gain over scratch: one block per axis of
:mod:`simseg.experiments.sweep.axes`), per-class precision, recall, IoU and Dice under the dataset's class names, and
test-time augmentation."""

from __future__ import annotations

import numpy as np

from simseg.experiments.report.effects import axis_effects, pretraining_effects, varying_axes
from simseg.experiments.report.summary import MISSING, format_summary, init_info, init_order, markdown_table, summarise
from simseg.experiments.sweep.axes import init_axis, pretraining_axes
from simseg.experiments.sweep.results import PER_CLASS_KINDS, Row, class_column, class_names
from simseg.sizes import format_size


def _mean(rows: list[Row], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values)) if values else None


def _fmt(value: float | None, spec: str) -> str:
    return MISSING if value is None else format(value, spec)


def cost_table(rows: list[Row]) -> list[str]:
    """One line per (variant, subset): what it scored and what it cost. ``rows`` carry variant labels. The Boundary
    IoU column appears where cells measured it (runs made before simseg did have none)."""
    stats = summarise(rows)
    boundary = any(r.get("boundary_iou") is not None for r in rows)
    named = ("; not the IoU of the class named boundary (in the per-class table)"
             if "boundary" in class_names(key for row in rows for key in row) else "")
    body = []
    for label in init_order(rows):
        for subset in sorted({r["subset"] for r in rows if r["init"] == label}):
            cell = [r for r in rows if r["init"] == label and r["subset"] == subset]
            params, encoder = _mean(cell, "parameters"), _mean(cell, "encoder_parameters")
            minutes = _mean(cell, "train_seconds")
            body.append([label, format_size(subset), format_summary(stats[label, subset]),
                         *([_fmt(_mean(cell, "boundary_iou"), ".3f")] if boundary else []),
                         MISSING if params is None else f"{params / 1e6:.2f}M"
                         + ("" if encoder is None else f" ({encoder / 1e6:.2f}M)"),
                         _fmt(_mean(cell, "gflops"), ".3f"), _fmt(_mean(cell, "inference_images_per_s"), ".0f"),
                         _fmt(None if minutes is None else minutes / 60, ".1f")])
    if not body or (not boundary and all(line[3] == MISSING for line in body)):
        return ["## Models and their cost", "", "Not available: the results have no cost columns (cells made before "
                "simseg measured them)."]
    return ["## Models and their cost", "", *markdown_table(
        ["model / init", "labelled", "test mIoU", *(["Boundary IoU"] if boundary else []), "parameters (encoder)",
         "GFLOPs / image", "inference img/s", "training min"], body), "",
        "Mean over seeds (mIoU: ± sample std, n = seeds). "
        + (f"Boundary IoU (Cheng et al. 2021): the IoU of each class's contour band, mean over the classes{named}. "
           if boundary else "")
        + "GFLOPs: one forward pass at the training resolution (torch.utils.flop_counter, attention included); "
        "inference at batch 32 on the training device; training minutes per cell, every epoch included."]


def effect_tables(rows: list[Row]) -> list[str]:
    """The per-axis averages: the init and each variant axis against its reference value, over every setting of the
    other axes that both values were run at; after the inits, each pretraining axis's values by their gain over
    scratch. ``rows`` carry plain init labels (not variant labels)."""
    info = init_info(rows)
    scratch = [label for label in init_order(rows) if info[label].scratch]
    body, by_pretraining = [], []
    for axis in (init_axis(), *varying_axes(rows)):
        values = {r.get(axis.column) for r in rows if r.get(axis.column) is not None}
        if len(values) < 2:
            continue
        preferred = scratch[0] if axis.kind == "init" and scratch else axis.reference
        reference = preferred if preferred in values else sorted(map(str, values))[0]
        for value, (delta, count) in sorted(axis_effects(rows, axis.column, reference).items(),
                                            key=lambda kv: str(kv[0])):
            body.append([axis.effect_name(reference), str(value), f"{delta + 0.0:+.3f}", str(count)])
        if axis.kind == "init":  # the pretraining axes break the inits' gains down by how they were pretrained
            by_pretraining = [[other.effect_name(other.reference), other.show(value), f"{delta + 0.0:+.3f}", str(count)]
                              for other in pretraining_axes()
                              for value, (delta, count) in sorted(pretraining_effects(rows, other.column).items())]
            body += by_pretraining
    lines = ["## Per-axis averages", ""]
    if not body:
        return lines + ["Not available: the results vary on no axis with a reference to compare with."]
    others = ", ".join([*(axis.noun for axis in varying_axes(rows)), "init", "subset size"])
    notes = [f"Mean over every setting of the other axes ({others}) that both values ran at, of the seed-mean mIoU "
             "difference; settings = how many such pairs."]
    if by_pretraining:
        notes.append("A pretraining axis's values: the mean gain over the scratch init of the same variant and subset "
                     "size of every init pretrained with that value (intermediate inits left out).")
    return lines + [*markdown_table(["effect of", "value", "mean ΔmIoU", "settings"], body), "", " ".join(notes)]


def per_class_table(rows: list[Row]) -> list[str]:
    """IoU, Dice, precision and recall of each class (by the dataset's names, as the rows' per-class columns hold
    them), per variant, at the largest subset size each has; ``[]`` when no row has a per-class figure."""
    body = []
    classes = class_names(key for row in rows for key in row)
    for label in init_order(rows):
        subset = max(r["subset"] for r in rows if r["init"] == label)
        cell = [r for r in rows if r["init"] == label and r["subset"] == subset]
        for name in classes:
            figures = [_mean(cell, class_column(kind, name)) for kind in PER_CLASS_KINDS]
            if any(v is not None for v in figures):
                body.append([label, format_size(subset), name, *(_fmt(v, ".3f") for v in figures)])
    if not body:
        return []
    return ["## Per-class figures", "", *markdown_table(
        ["model / init", "labelled", "class", "IoU", "Dice", "precision", "recall"], body), "",
        "Mean over seeds at each variant's largest labelled subset; precision = share of the pixels predicted as "
        "the class that are it, recall = share of the class's pixels found."]


def tta_table(rows: list[Row]) -> list[str]:
    """Both figures of the cells scored with test-time augmentation (``miou`` with it, ``plain_miou`` without)."""
    body = []
    for label in init_order(rows):
        for subset in sorted({r["subset"] for r in rows if r["init"] == label}):
            cell = [r for r in rows if r["init"] == label and r["subset"] == subset and r.get("plain_miou") is not None]
            if cell:
                tta, plain = _mean(cell, "miou"), _mean(cell, "plain_miou")
                body.append([label, format_size(subset), f"{tta:.3f}", f"{plain:.3f}", f"{tta - plain + 0.0:+.3f}",
                             str(len(cell))])
    if not body:
        return []
    return ["## Test-time augmentation", "", *markdown_table(
        ["model / init", "labelled", "mIoU with TTA", "mIoU without", "gain", "n"], body), "",
        "Cells run with eval.tta=true: softmax probabilities averaged over flips and scales (the tables above report "
        "the TTA figure), beside the same weights scored on one plain view.", ""]
