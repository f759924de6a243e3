"""The report's tables beyond the mIoU and its gain: the table a reader weighs models by (mIoU, Boundary IoU,
parameters, GFLOPs, speed, minutes), the per-axis averages ("effect of pretraining", "effect of heavy augmentation",
"effect of the model", each pretraining value's gain over scratch: one block per axis of
:mod:`simseg.experiments.sweep.axes`), per-class precision, recall, IoU and Dice under the dataset's class names, and
test-time augmentation."""

from __future__ import annotations

import numpy as np

from simseg.experiments.report.effects import varying_axes
from simseg.experiments.report.gains import Gain, Measured
from simseg.experiments.report.summary import MISSING, format_summary, init_order, markdown_table, summarise
from simseg.experiments.report.view import PLAIN, View, per_class_column
from simseg.experiments.sweep.axes import pretraining_axes
from simseg.experiments.sweep.results import PER_CLASS_KINDS, Row, class_names
from simseg.sizes import format_size


def _mean(rows: list[Row], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(values)) if values else None


def _fmt(value: float | None, spec: str) -> str:
    return MISSING if value is None else format(value, spec)


def gain_cells(measured: Measured) -> list[str]:
    """A gain's three cells: the gain, its 95% interval (or why it has none), its verdict."""
    return [measured.gain_text(), measured.interval_text(), measured.verdict_text()]


def interval_note(gains: list[Gain], resamples: int) -> str:
    """The footnote of a table of gains: what the interval is (when one was drawn) and the test set it resampled."""
    images = max((g.measured.images for g in gains), default=0)
    if not images:
        return ("95% interval: none could be drawn: an interval needs both arms' per-image test scores "
                "(test_scores.npz in each cell, written by cells made since simseg keeps them); see each row's reason.")
    return (f"95% interval: percentiles of {resamples:,} paired bootstrap resamples of the seeds both arms ran and, "
            f"within each, of the {images:,} test images (the same draws for both arms); verdict: above or below "
            "zero when the interval excludes zero, else within noise.")


def cost_table(rows: list[Row], view: View = PLAIN) -> list[str]:
    """One line per (variant, subset): what it scored and what it cost. ``rows`` carry variant labels. The Boundary
    IoU column appears where cells measured it (runs made before simseg did have none)."""
    stats = summarise(rows, view.miou)
    boundary = any(r.get(view.boundary) is not None for r in rows)
    named = ("; not the IoU of the class named boundary (in the per-class table)"
             if "boundary" in class_names(key for row in rows for key in row) else "")
    body = []
    for label in init_order(rows):
        for subset in sorted({r["subset"] for r in rows if r["init"] == label}):
            cell = [r for r in rows if r["init"] == label and r["subset"] == subset]
            params, encoder = _mean(cell, "parameters"), _mean(cell, "encoder_parameters")
            minutes = _mean(cell, "train_seconds")
            summary = stats.get((label, subset))
            body.append([label, format_size(subset), MISSING if summary is None else format_summary(summary),
                         *([_fmt(_mean(cell, view.boundary), ".3f")] if boundary else []),
                         MISSING if params is None else f"{params / 1e6:.2f}M"
                         + ("" if encoder is None else f" ({encoder / 1e6:.2f}M)"),
                         _fmt(_mean(cell, "gflops"), ".3f"), _fmt(_mean(cell, "inference_images_per_s"), ".0f"),
                         _fmt(None if minutes is None else minutes / 60, ".1f")])
    if not body or (not boundary and all(line[3] == MISSING for line in body)):
        return ["## Models and their cost", "", "Not available: the results have no cost columns (cells made before "
                "simseg measured them)."]
    return ["## Models and their cost", "", *markdown_table(
        ["model / init", "labelled", f"test {view.heading()}", *([view.heading("Boundary IoU")] if boundary else []),
         "parameters (encoder)", "GFLOPs / image", "inference img/s", "training min"], body), "",
        "Mean over seeds (mIoU: ± sample std, n = seeds). "
        + (f"Boundary IoU (Cheng et al. 2021): the IoU of each class's contour band, mean over the classes{named}. "
           if boundary else "")
        + "GFLOPs: one forward pass at the training resolution (torch.utils.flop_counter, attention included); "
        "inference at batch 32 on the training device; training minutes per cell, every epoch included."]


def effect_table(gains: list[Gain], rows: list[Row], view: View, resamples: int) -> list[str]:
    """The per-axis averages (:func:`simseg.experiments.report.gains.effect_gains`), each with its interval.
    ``rows`` carry plain init labels."""
    lines = ["## Per-axis averages", ""]
    if not gains:
        return lines + ["Not available: the results vary on no axis with a reference to compare with."]
    others = ", ".join([*(axis.noun for axis in varying_axes(rows)), "init", "subset size"])
    body = [[gain.group, gain.arm, gain.measured.gain_text(), str(gain.measured.settings),
             *gain_cells(gain.measured)[1:]] for gain in gains]
    notes = [f"Mean over every setting of the other axes ({others}) that both values ran at, of the difference of "
             "mean mIoU over the seeds both ran; settings = how many such pairs; the interval keeps the settings and "
             "resamples the seeds and images they share."]
    if {gain.group for gain in gains} & {axis.effect_name(axis.reference) for axis in pretraining_axes()}:
        notes.append("A pretraining axis's values: the mean gain over the scratch init of the same variant and subset "
                     "size of every init pretrained with that value (intermediate inits left out).")
    return lines + [*markdown_table(["effect of", "value", f"mean Δ{view.heading()}", "settings", "95% interval",
                                     "verdict"], body), "", " ".join(notes), "", interval_note(gains, resamples)]


def comparison_table(gains: list[Gain], view: View, resamples: int) -> list[str]:
    """The comparisons the user asked for (``--reference``, ``--compare``); ``[]`` when none was asked."""
    return gains_of_pairs("Compared arms", ("arm", "over"), gains, view, resamples,
                          "The arm's test mIoU minus that of the arm it is compared with, mean over the seeds both ran "
                          "at that subset size (seeds = how many).")


def gains_of_pairs(title: str, names: tuple[str, str], gains: list[Gain], view: View, resamples: int,
                   note: str) -> list[str]:
    """A section of one row per (arm, reference, subset) gain with its interval; ``[]`` without gains."""
    if not gains:
        return []
    body = [[gain.arm, gain.reference, format_size(gain.subset), *gain_cells(gain.measured),
             str(gain.measured.seeds)] for gain in gains]
    return [f"## {title}", "", *markdown_table(
        [*names, "labelled", f"Δ{view.heading()}", "95% interval", "verdict", "seeds"], body), "", note, "",
        interval_note(gains, resamples), ""]


def per_class_table(rows: list[Row], view: View = PLAIN) -> list[str]:
    """IoU, Dice, precision and recall of each class (by the dataset's names, as the rows' per-class columns hold
    them), per variant, at the largest subset size each has, in the report's view where the rows hold it (else the
    plain view, and the heading says so); ``[]`` when no row has a per-class figure."""
    classes = class_names(key for row in rows for key in row)
    shown = view if any(r.get(per_class_column(kind, name, view)) is not None for r in rows
                        for kind in PER_CLASS_KINDS for name in classes) else PLAIN
    body = []
    for label in init_order(rows):
        subset = max(r["subset"] for r in rows if r["init"] == label)
        cell = [r for r in rows if r["init"] == label and r["subset"] == subset]
        for name in classes:
            figures = [_mean(cell, per_class_column(kind, name, shown)) for kind in PER_CLASS_KINDS]
            if any(v is not None for v in figures):
                body.append([label, format_size(subset), name, *(_fmt(v, ".3f") for v in figures)])
    if not body:
        return []
    return [f"## Per-class figures, {shown.label}", "", *markdown_table(
        ["model / init", "labelled", "class", shown.heading("IoU"), "Dice", "precision", "recall"], body), "",
        "Mean over seeds at each variant's largest labelled subset; precision = share of the pixels predicted as "
        "the class that are it, recall = share of the class's pixels found."
        + (f" The rows hold no per-class {view.label} figures: these are the plain view's." if shown != view else "")]


def tta_table(rows: list[Row], gains: list[Gain], resamples: int) -> list[str]:
    """Both views of the cells scored with test-time augmentation, side by side whichever view the report compares,
    and the TTA view's gain over the plain one (``gains``: :func:`simseg.experiments.report.gains.tta_gains`)."""
    tta, plain = View(tta=True), PLAIN
    body = []
    for gain in gains:
        cell = [r for r in rows if r["init"] == gain.arm and r["subset"] == gain.subset
                and r.get(tta.miou) is not None and r.get(plain.miou) is not None]
        if cell:
            body.append([gain.arm, format_size(gain.subset), f"{_mean(cell, tta.miou):.3f}",
                         f"{_mean(cell, plain.miou):.3f}", *gain_cells(gain.measured), str(len(cell))])
    if not body:
        return []
    return ["## Test-time augmentation", "", *markdown_table(
        ["model / init", "labelled", tta.heading(), plain.heading(), "gain", "95% interval", "verdict", "n"], body),
        "", "Cells run with eval.tta=true: softmax probabilities averaged over flips and scales, beside the same "
        "weights scored on one plain view (the report compares the plain view unless `simseg report --tta`); the "
        "gain pairs each cell's two views.", "", interval_note(gains, resamples), ""]


def intermediate_table(gains: list[Gain], view: View, resamples: int) -> list[str]:
    """Each intermediate init's gain over the init it was built from (``gains``:
    :func:`simseg.experiments.report.gains.intermediate_gains`); ``[]`` when there is none."""
    return gains_of_pairs("Intermediate classification", ("init", "built from"), gains, view, resamples,
                          "Test mIoU with intermediate classification minus that of the init it was built from, mean "
                          "over the seeds both ran at that subset size.")
