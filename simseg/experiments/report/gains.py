"""Every gain the report prints, measured: the difference of two arms' test mIoU over the seeds both ran, with its
95% paired-bootstrap interval (:mod:`simseg.experiments.report.intervals`) from the cells' per-image scores
(``test_scores.npz``, :mod:`simseg.training.image_scores`) and its verdict, or the reason there is none.

Pairing: at one setting (every other axis and the subset size equal) the two arms' cells of equal seeds, only the
seeds both have; within them the test images by name (both cells must hold the same test names). An average over
several settings (an "effect of" row) keeps the settings as blocks (:func:`~simseg.experiments.report.intervals.
blocked_bootstrap`): its gain is the mean of the settings' gains, its interval resamples the seeds and images
shared by every block, which needs every setting to have paired the same seeds.

The scores are the report's view (:class:`~simseg.experiments.report.view.View`) at the images' native size; counts
at the model input are used only when some cell lacks native ones, and the gain then says so.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from simseg.errors import SimsegError
from simseg.experiments.report.effects import (
    Pair,
    axis_pairs,
    axis_reference,
    pretraining_pairs,
    scratch_pairs,
    varying_axes,
)
from simseg.experiments.report.intervals import RESAMPLES, Interval, blocked_bootstrap
from simseg.experiments.report.summary import MISSING, init_info, init_order
from simseg.experiments.report.view import INPUT, NATIVE, PLAIN, View, scored_at
from simseg.experiments.sweep.axes import init_axis, pretraining_axes
from simseg.experiments.sweep.results import Row
from simseg.sizes import format_size
from simseg.training.image_scores import ImageScores, read_test_scores

NO_SCORES = "no interval (cells from before per-image scores)"
UNEVEN = "no interval (the settings paired different seeds; see the per-subset rows)"


class Measured(NamedTuple):
    """A gain of one arm over another: mean over the settings of the mean over paired seeds of the difference."""
    gain: float | None  # None: no seed in common
    interval: Interval | None  # None: see note
    seeds: int  # paired seeds (the fewest of any setting)
    settings: int  # settings averaged over (1 for one subset size of one variant)
    note: str = ""  # why there is no interval, or how the cells were scored when that needs saying
    images: int = 0  # test images of the interval

    def gain_text(self) -> str:
        return MISSING if self.gain is None else f"{round(self.gain, 3) + 0.0:+.3f}"  # + 0.0: no "-0.000"

    def interval_text(self) -> str:
        if self.interval is None:
            return self.note or MISSING
        text = f"[{self.interval.low:+.3f}, {self.interval.high:+.3f}]"
        return f"{text} {self.note}" if self.note else text

    def verdict_text(self) -> str:
        return MISSING if self.interval is None else self.interval.verdict


class Gain(NamedTuple):
    """One measured comparison of the report, as the forest plot lists it."""
    group: str  # the table it belongs to ("gain over scratch", "augmentation preset (vs light)", ...)
    arm: str
    reference: str
    subset: int | None  # None: averaged over settings
    measured: Measured


def seed_pairs(pair: Pair, arm_metric: str, reference_metric: str | None = None) -> list[tuple[int, Row, Row]]:
    """(seed, arm row, reference row) for each seed at which the arm has ``arm_metric`` and the reference
    ``reference_metric`` (default: the same), by seed."""
    def by_seed(rows: list[Row], metric: str) -> dict[int, Row]:
        found: dict[int, Row] = {}
        for row in rows:
            if row.get(metric) is not None:
                found.setdefault(row["seed"], row)
        return found

    arm, reference = by_seed(pair.arm, arm_metric), by_seed(pair.reference, reference_metric or arm_metric)
    return [(seed, arm[seed], reference[seed]) for seed in sorted(arm.keys() & reference.keys())]


def by_name(names: list[str], order: list[str]) -> list[int]:
    """The index in ``names`` of each name of ``order`` (the same names, another order)."""
    position = {name: i for i, name in enumerate(names)}
    return [position[name] for name in order]


class Gauge:
    """Measures pairs of a sweep's cells in one view, reading each cell's per-image scores once. ``sweep_dir``
    None: no run folders to read (every gain without an interval)."""

    def __init__(self, sweep_dir: Path | None, view: View = PLAIN, resamples: int = RESAMPLES):
        self.sweep_dir, self.view, self.resamples = sweep_dir, view, resamples
        self._scores: dict[str, ImageScores | None] = {}
        self._measured: dict[tuple, Measured] = {}

    def scores(self, row: Row) -> ImageScores | None:
        """The cell's ``test_scores.npz`` (None: a cell from before the file, or no run folder)."""
        if self.sweep_dir is None:
            return None
        run_dir = row["run_dir"] or f"cells/{row['cell']}"
        if run_dir not in self._scores:
            self._scores[run_dir] = read_test_scores(self.sweep_dir / run_dir)
        return self._scores[run_dir]

    def measure(self, pairs: list[Pair], views: tuple[View, View] | None = None) -> Measured:
        """The mean over ``pairs`` (settings) of each one's gain over the seeds both arms ran, with its interval;
        both arms in the gauge's view unless ``views`` gives the arm's and the reference's (the TTA table compares
        cells' TTA view with their own plain view)."""
        views = views or (self.view, self.view)
        metrics = tuple(view.miou for view in views)
        paired = [found for pair in pairs if (found := seed_pairs(pair, *metrics))]
        key = (views, tuple(tuple((a["cell"], a["run_dir"], r["cell"], r["run_dir"]) for _, a, r in p)
                            for p in paired))
        if key in self._measured:
            return self._measured[key]
        if not paired:
            measured = Measured(None, None, 0, 0, "no interval (no seed in common)")
        else:
            gain = float(np.mean([np.mean([a[metrics[0]] - r[metrics[1]] for _, a, r in p]) for p in paired]))
            seeds = min(len(p) for p in paired)
            interval, note, images = self._interval(paired, views)
            if interval is None and any(scored_at(a) != scored_at(r) for p in paired for _, a, r in p):
                note += "; native vs model-input scores"
            measured = Measured(gain if interval is None else interval.gain, interval, seeds, len(paired), note,
                                images)
        self._measured[key] = measured
        return measured

    def _interval(self, paired: list[list[tuple[int, Row, Row]]],
                  views: tuple[View, View]) -> tuple[Interval | None, str, int]:
        """The blocked paired bootstrap of the settings' counts (the arm's in ``views[0]``, the reference's in
        ``views[1]``); else None and why."""
        if len({tuple(seed for seed, _, _ in p) for p in paired}) > 1:
            return None, UNEVEN, 0
        cells = [(self.scores(a), self.scores(r)) for p in paired for _, a, r in p]
        every = [scores for both in cells for scores in both]
        if any(scores is None for scores in every):
            return None, NO_SCORES, 0
        first = every[0]
        if any(scores.classes != first.classes for scores in every):
            return None, "no interval (the cells' classes differ)", 0
        if any(sorted(scores.names) != sorted(first.names) or len(set(scores.names)) != len(scores.names)
               for scores in every):
            return None, "no interval (the cells were scored on different test images)", 0
        for at in (NATIVE, INPUT):  # native unless some cell lacks it
            counts = [scores.counts(views[i % 2].name, at) for i, scores in enumerate(every)]  # arm, reference, ...
            if all(c is not None for c in counts):
                break
        else:
            lacking = " or ".join(dict.fromkeys(view.label for view in views))
            return None, f"no interval (no {lacking} per-image scores)", 0
        names = sorted(first.names)  # one order whatever the files' (the resamples draw by position)
        aligned = [c if scores.names == names else c[by_name(scores.names, names)] for scores, c in zip(every, counts)]
        blocks, seeds = len(paired), len(paired[0])
        stacked = np.stack(aligned).reshape(blocks, seeds, 2, *aligned[0].shape)  # (B, S, arm|reference, N, C, 2)
        interval = blocked_bootstrap(stacked[:, :, 0], stacked[:, :, 1], self.resamples)
        return interval, "" if at == NATIVE else "at the model input", len(names)


def scratch_gains(rows: list[Row], gauge: Gauge) -> list[Gain]:
    """Each init over the scratch init of its own variant, per subset size (:func:`~simseg.experiments.report.
    effects.scratch_pairs`). ``rows`` carry the report's labels."""
    return [Gain("gain over scratch", found.init, found.scratch, found.subset, gauge.measure([found.pair]))
            for found in scratch_pairs(rows, gauge.view.miou)]


def effect_gains(rows: list[Row], gauge: Gauge, sweep: dict | None = None) -> list[Gain]:
    """The per-axis averages: each value of the init and of every varying variant axis over the axis's reference,
    averaged over every setting of the other axes and the subset size that both ran (blocks of one interval);
    after the inits, each pretraining axis's values by their gain over scratch. ``rows`` carry plain init labels;
    ``sweep``: sweep.json, for the axes' references (:func:`~simseg.experiments.report.effects.axis_reference`)."""
    gains = []
    for axis in (init_axis(), *varying_axes(rows)):
        reference = axis_reference(rows, axis, sweep)
        if reference is None:
            continue
        for value, pairs in axis_pairs(rows, axis.column, reference, gauge.view.miou).items():
            gains += averaged(gauge, axis.effect_name(reference), value, reference, pairs)
        if axis.kind == "init":  # the pretraining axes break the inits' gains down by how they were pretrained
            for other in pretraining_axes():
                for value, pairs in pretraining_pairs(rows, other.column, gauge.view.miou).items():
                    gains += averaged(gauge, other.effect_name(other.reference), other.show(value), other.reference,
                                      pairs)
    return gains


def averaged(gauge: Gauge, group: str, value: str, reference: str, pairs: list[Pair]) -> list[Gain]:
    """The gain of ``value`` averaged over ``pairs`` (settings); when the settings paired different seeds, so that
    no interval can share their draws, also one row per subset size (``value at 250``) with its own."""
    measured = gauge.measure(pairs)
    gains = [Gain(group, value, reference, None, measured)]
    if measured.note == UNEVEN:
        for subset in sorted({pair.arm[0]["subset"] for pair in pairs}):
            at = [pair for pair in pairs if pair.arm[0]["subset"] == subset]
            gains.append(Gain(group, f"{value} at {format_size(subset)}", reference, subset, gauge.measure(at)))
    return gains


def intermediate_gains(rows: list[Row], gauge: Gauge) -> list[Gain]:
    """Each intermediate init over the init it was built from (its ``base_init``), per subset size both ran."""
    info, gains = init_info(rows), []
    for label in init_order(rows):
        base = info[label].base_init
        if info[label].intermediate and base in info:
            for subset in sorted({r["subset"] for r in rows if r["init"] == label}
                                 & {r["subset"] for r in rows if r["init"] == base}):
                pair = Pair(*([r for r in rows if r["init"] == arm and r["subset"] == subset] for arm in (label, base)))
                gains.append(Gain("intermediate classification", label, base, subset, gauge.measure([pair])))
    return gains


def tta_gains(rows: list[Row], gauge: Gauge) -> list[Gain]:
    """Each init's TTA view over its own plain view, per subset size (the same cells: seeds and images pair
    exactly); the gauge's view is ignored."""
    tta, gains = View(tta=True), []
    for label in init_order(rows):
        for subset in sorted({r["subset"] for r in rows if r["init"] == label}):
            cells = [r for r in rows if r["init"] == label and r["subset"] == subset]
            if any(r.get(tta.miou) is not None for r in cells):
                gains.append(Gain("test-time augmentation", label, "plain", subset,
                                  gauge.measure([Pair(cells, cells)], (tta, PLAIN))))
    return gains


def arm_rows(rows: list[Row], label: str, flag: str) -> list[Row]:
    """The rows of the arm a user named (a label as the report's tables print it); one line when there is none."""
    found = [row for row in rows if row["init"] == label]
    if not found:
        labels = init_order(rows)
        close = difflib.get_close_matches(label, labels, n=1)
        raise SimsegError(f"{flag} {label}: no such arm in the results; choose from {', '.join(labels)}"
                          + (f" (did you mean {close[0]}?)" if close else ""))
    return found


def named_gains(rows: list[Row], gauge: Gauge, reference: str | None = None,
                compare: tuple[str, ...] = ()) -> list[Gain]:
    """The comparisons a user asked for, per subset size both arms ran: every other arm over ``reference``
    (``--reference LABEL``) and each ``A,B`` of ``compare`` (A over B). A may pool arms, ``A1+A2`` (the same model
    from two pretraining seeds): the mean of their gains over B, each arm a block of one interval, so the interval
    resamples fine-tuning seeds and images but holds the pooled arms fixed. ``rows`` carry the report's labels."""
    wanted: list[tuple[str, str]] = []
    if reference is not None:
        arm_rows(rows, reference, "--reference")
        wanted += [(label, reference) for label in init_order(rows) if label != reference]
    for text in compare:
        parts = [part.strip() for part in text.split(",")]
        pooled = pooled_labels(rows, parts[0]) if len(parts) == 2 else []
        if len(parts) != 2 or not all(parts) or not all(pooled) or parts[1] in pooled:
            raise SimsegError(f"--compare {text}: give two different arms as A,B (A's gain over B; A may pool arms "
                              f"as A1+A2)")
        if len(set(pooled)) != len(pooled):
            raise SimsegError(f"--compare {text}: {parts[0]} names an arm twice: pool different arms")
        for label in [*pooled, parts[1]]:
            arm_rows(rows, label, "--compare")
        wanted.append(("+".join(pooled), parts[1]))

    def subsets(label: str) -> set[int]:
        return {r["subset"] for r in rows if r["init"] == label}

    def cells(label: str, subset: int) -> list[Row]:
        return [r for r in rows if r["init"] == label and r["subset"] == subset]

    gains = []
    for arm, over in dict.fromkeys(wanted):
        pooled = pooled_labels(rows, arm)
        for subset in sorted(set.intersection(*(subsets(label) for label in [*pooled, over]))):
            pairs = [Pair(cells(label, subset), cells(over, subset)) for label in pooled]
            gains.append(Gain("asked for (--reference, --compare)", arm, over, subset, gauge.measure(pairs)))
    return gains


def pooled_labels(rows: list[Row], arm: str) -> list[str]:
    """The arms that ``arm`` pools: ``A1+A2`` -> [A1, A2]; an arm's own label (one may hold a "+") -> [it]."""
    if any(r["init"] == arm for r in rows):
        return [arm]
    return [label.strip() for label in arm.split("+")]
