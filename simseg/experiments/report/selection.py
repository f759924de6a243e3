"""What the validation set chooses, and nothing chosen by the test set: for each swept axis (the init, the model, the
augmentation preset, the recipe, the image size: every axis of :mod:`simseg.experiments.sweep.axes` holding more
than one value at a subset size), the value whose cells have the best mean validation mIoU (``val_miou``, each
cell's best validation epoch) at that subset size, over the settings (the other axes' values and the seed) that
every value ran, so no value is helped by settings only it ran (all its cells when the values share none). Each
value's test mIoU and its gain over the axis's reference are shown beside it for the reader, never used to choose.

Without validation scores nothing is chosen: the report says so, and its example pictures are of a cell picked by
its place in the grid, not by any score.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from simseg.experiments.report.effects import axis_pairs, axis_reference, value_key
from simseg.experiments.report.gains import Gain, Gauge, Measured
from simseg.experiments.report.summary import MISSING, init_info, init_order, markdown_table
from simseg.experiments.sweep.axes import Axis, init_axis, variant_axes
from simseg.experiments.sweep.results import Row
from simseg.sizes import format_size

VALIDATION = "val_miou"
NO_VALIDATION = ("no validation set: no arm was chosen (the test set never chooses); rerun the sweep with "
                 "--val-size")


class ArmChoice(NamedTuple):
    """One value of an axis at one subset size: its cells' mean validation and test mIoU, and its gain."""
    value: str
    val_miou: float | None  # mean over its cells with a validation score; None: none has one
    test_miou: float | None  # mean over its cells, in the report's view
    cells: int
    measured: Measured | None  # its gain over the axis's reference (None: it is the reference)


class AxisChoice(NamedTuple):
    axis: Axis
    subset: int
    reference: str
    arms: list[ArmChoice]
    chosen: str | None  # the value validation chose; None when no cell has a validation score


def has_validation(rows: list[Row]) -> bool:
    return any(row.get(VALIDATION) is not None for row in rows)


def _mean(rows: list[Row], key: str) -> float | None:
    values = [row[key] for row in rows if row.get(key) is not None]
    return float(np.mean(values)) if values else None


def chosen_on_validation(rows: list[Row], column: str) -> str | None:
    """The value of ``column`` whose rows have the best mean validation mIoU (the first of ties, in sorted
    order); None when no row has a validation score. Test scores are not read."""
    means = {value: mean for value in sorted({str(r[column]) for r in rows if r.get(column) is not None})
             if (mean := _mean([r for r in rows if str(r.get(column)) == value], VALIDATION)) is not None}
    return max(means, key=means.get) if means else None


def setting(row: Row, column: str) -> tuple:
    """What a cell ran besides its value of ``column``: the init, every variant axis's value, the seed and the
    subset size."""
    keys = ("init", *(axis.column for axis in variant_axes()), "seed", "subset")
    return tuple(str(row.get(key)) for key in keys if key != column)


def matched(rows: list[Row], column: str) -> list[Row]:
    """The rows of the settings that every comparable value of ``column`` ran: the cells on which the values compare
    on equal terms. A value that shares no setting with any other (a baseline run only with its own model or size,
    such as an init label of the U-Net alone) cannot be compared and is left out; when the rest still share no
    setting, all rows."""
    values = {str(r[column]) for r in rows if r.get(column) is not None}
    ran = {value: {setting(r, column) for r in rows if str(r.get(column)) == value} for value in values}
    comparable = [settings for value, settings in ran.items()
                  if any(settings & others for other, others in ran.items() if other != value)]
    common = set.intersection(*comparable) if comparable else set()
    return [r for r in rows if setting(r, column) in common] if common else rows


def axis_choices(rows: list[Row], gauge: Gauge, sweep: dict | None = None) -> list[AxisChoice]:
    """For every axis with more than one value at a subset size, in table order and by subset: each value's figures
    and gain over the reference (:func:`~simseg.experiments.report.effects.axis_reference`, ``sweep``: sweep.json),
    and the value validation chose. ``rows`` carry plain init labels."""
    choices = []
    for axis in (init_axis(), *variant_axes()):
        for subset in sorted({r["subset"] for r in rows}):
            at = [r for r in rows if r["subset"] == subset]
            reference = axis_reference(at, axis, sweep)
            if reference is None:
                continue
            pairs = axis_pairs(at, axis.column, reference, gauge.view.miou)
            values = sorted({str(r[axis.column]) for r in at if r.get(axis.column) is not None},
                            key=lambda v: (v != reference, _order(rows, axis, v)))
            arms, compared = [], matched(at, axis.column)
            for value in values:
                cells = [r for r in compared if str(r.get(axis.column)) == value]
                arms.append(ArmChoice(value, _mean(cells, VALIDATION), _mean(cells, gauge.view.miou), len(cells),
                                      None if value == reference else gauge.measure(pairs.get(value, []))))
            choices.append(AxisChoice(axis, subset, reference, arms, chosen_on_validation(compared, axis.column)))
    return choices


def _order(rows: list[Row], axis: Axis, value: str) -> tuple:
    """Values as the other tables list them: inits in :func:`init_order`, others sorted (numbers by size)."""
    if axis.kind == "init":
        order = init_order(rows)
        return (order.index(value) if value in order else len(order), value)
    return value_key(value)


def choice_gains(choices: list[AxisChoice]) -> list[Gain]:
    """The gains of the selection table, for the forest plot."""
    return [Gain(f"{choice.axis.title} per subset size (vs {choice.reference})", arm.value, choice.reference,
                 choice.subset,
                 arm.measured) for choice in choices for arm in choice.arms if arm.measured is not None]


def validation_images(rows: list[Row]) -> str:
    """The validation set's size as the text says it: ``100`` (or ``100–150`` when cells differ)."""
    sizes = sorted({int(r["val_images"]) for r in rows if r.get("val_images")})
    return MISSING if not sizes else f"{sizes[0]:,}" if len(sizes) == 1 else f"{sizes[0]:,}–{sizes[-1]:,}"


def labels_line(rows: list[Row]) -> str:
    """Labels used per cell, stated once: the labelled subset plus the validation images."""
    subsets = sorted({r["subset"] for r in rows})
    if not any(r.get("val_images") for r in rows):
        return ("Labels used: each cell's labelled training subset only "
                f"({', '.join(map(format_size, subsets))} images); no validation set.")
    used = {}
    for row in rows:
        total = row.get("labels_used") or row["subset"] + int(row.get("val_images") or 0)
        used.setdefault(row["subset"], set()).add(int(total))
    shown = ", ".join(f"{format_size(s)} → {'/'.join(f'{t:,}' for t in sorted(used[s]))}" for s in subsets)
    return (f"Labels used: each cell's labelled training subset plus {validation_images(rows)} validation images "
            f"(labelled subset → labels in all: {shown}).")


def selection_section(choices: list[AxisChoice], rows: list[Row], view_heading: str) -> list[str]:
    """The "Chosen on validation" section: a table per axis and subset, the chosen value marked, and what chose."""
    lines = ["## Chosen on validation", ""]
    if not has_validation(rows):
        return lines + [NO_VALIDATION[0].upper() + NO_VALIDATION[1:] + "."]
    if not choices:
        return lines + ["Not applicable: no axis holds two values at one subset size."]
    body = [[choice.axis.title, format_size(choice.subset), arm.value,
             MISSING if arm.val_miou is None else f"{arm.val_miou:.3f}",
             MISSING if arm.test_miou is None else f"{arm.test_miou:.3f}",
             *(("reference", "", "") if arm.measured is None else
               (arm.measured.gain_text(), arm.measured.interval_text(), arm.measured.verdict_text())),
             "**chosen**" if arm.value == choice.chosen else ""]
            for choice in choices for arm in choice.arms]
    return lines + [*markdown_table(["axis", "labelled", "value", "val mIoU", f"test {view_heading}",
                                     f"Δ{view_heading} vs reference", "95% interval", "verdict", "chosen"], body),
                    "", f"Each value's mean over its cells at that subset size, on the settings (seeds, and the other "
                    f"axes' values) that every value of the axis ran; chosen on the validation set "
                    f"({validation_images(rows)} images); the test set chose nothing (its figures are shown for "
                    "reading, never used to choose)."]


def example_arm(rows: list[Row]) -> tuple[str, int, str]:
    """(label, subset, how it was picked) of the cell whose example pictures the report shows: with validation, the
    arm (init label with its variant) with the best mean validation mIoU at the largest subset size that has
    validation scores; else the first pretrained init in the tables' order (scratch when there is none) at its
    largest subset. ``rows`` carry the report's labels; no test score is read."""
    if has_validation(rows):
        subset = max(r["subset"] for r in rows if r.get(VALIDATION) is not None)
        label = chosen_on_validation([r for r in rows if r["subset"] == subset], "init")
        return label, subset, (f"chosen on validation: the best mean validation mIoU at {format_size(subset)} "
                               "labelled images")
    info, order = init_info(rows), init_order(rows)
    label = next((lb for lb in order if not info[lb].scratch), order[0])
    subset = max(r["subset"] for r in rows if r["init"] == label)
    kind = "scratch (no pretrained init)" if info[label].scratch else "the first pretrained init in the tables"
    return label, subset, f"no validation set, so picked by no score: {kind} at its largest labelled subset"
