"""The plots of ``report.md``, drawn from the results rows (the run folders' own pictures are copied by
:mod:`simseg.experiments.report.pictures`).

Every plot gives an init the same colour: scratch neutral grey, pretraining inits a colour each in order of
pretraining size, an intermediate init its base init's colour with dashed lines and square markers.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

from simseg.experiments.report.effects import label_variants, varying_axes
from simseg.experiments.report.gains import Gain
from simseg.experiments.report.intervals import ABOVE, BELOW, NOISE
from simseg.experiments.report.summary import init_info, init_order, summarise
from simseg.experiments.report.view import PLAIN, View
from simseg.experiments.run_folders import epoch_records
from simseg.experiments.sweep.axes import pretraining_axes
from simseg.experiments.sweep.results import Row
from simseg.files import atomic_write
from simseg.sizes import format_size
from simseg.training.plots import plt  # plots sets the Agg backend before pyplot loads

DPI = 150  # plots.save_figure writes 100 dpi; 150 keeps a 6.5 in figure sharp at a page's text width
FIGSIZE = (6.5, 4.2)  # inches
STYLE = {"font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8,
         "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
         "grid.alpha": 0.35, "grid.linewidth": 0.5, "legend.frameon": False}
SCRATCH_COLOUR = "#7a7a7a"
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
DASHES = ("--", "-.", ":")  # intermediate inits sharing a base colour: the 1st, 2nd, 3rd...
HATCHES = {"--": "", "-.": "//", ":": ".."}  # ...and their bars in the delta figure


def init_styles(rows: list[Row]) -> dict[str, dict]:
    """Init label -> matplotlib line keywords (color, linestyle, marker), in :func:`init_order`. When the rows vary
    on a variant axis (model, preset, ...) the colour is the variant's (its columns), and the init sets line and
    marker."""
    info, styles, free = init_info(rows), {}, iter(PALETTE * 4)
    if varying_axes(rows):
        colours: dict[tuple, str] = {}
        variants = label_variants(rows)
        for label in init_order(rows):
            colour = colours.setdefault(variants[label], PALETTE[len(colours) % len(PALETTE)])
            kind = "scratch" if info[label].scratch else "intermediate" if info[label].intermediate else "pretrained"
            styles[label] = {"color": colour, "linestyle": {"scratch": ":", "pretrained": "-"}.get(kind, "--"),
                             "marker": {"scratch": "o", "pretrained": "^"}.get(kind, "s")}
        return styles
    for label in init_order(rows):
        base = info[label].base_init
        if info[label].scratch:
            colour = SCRATCH_COLOUR
        elif info[label].intermediate and base in styles:
            colour = styles[base]["color"]
        else:
            colour = next(free)
        siblings = sum(s["color"] == colour and s["linestyle"] != "-" for s in styles.values())
        styles[label] = {"color": colour, "linestyle": DASHES[siblings % len(DASHES)] if info[label].intermediate
                         else "-", "marker": "s" if info[label].intermediate else "o"}
    return styles


def legend_label(label: str, rows: list[Row]) -> str:
    """``pretrain-45k (45k images)``: the label and what its pretraining axes say (image counts with their unit),
    intermediate inits saying so; scratch and unknown pretraining are the label alone."""
    info = init_info(rows)[label]
    parts = [axis.show(value) + " images" * axis.counts_images for axis in pretraining_axes()
             if (value := info.pretraining.get(axis.column)) is not None]
    parts += ["intermediate"] * info.intermediate
    return f"{label} ({', '.join(parts)})" if parts else label


def save_png(fig, path: str | Path, rect: tuple[float, float, float, float] | None = None) -> None:
    """:func:`simseg.training.plots.save_figure` at :data:`DPI`: lay out (within ``rect``, figure fractions, when
    given), render in memory, close, write atomically."""
    fig.tight_layout(rect=rect)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def _subset_axis(ax, subsets: list[int]) -> None:
    """Log x axis with one tick per swept subset size, labelled 250, 1k, 1.5k."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(subsets))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: format_size(round(x))))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(min(subsets) / 1.3, max(subsets) * 1.3)
    ax.set_xlabel("labelled training images (log scale)")


def plot_miou_vs_subset(rows: list[Row], path: str | Path, view: View = PLAIN) -> None:
    """Mean test mIoU (``view``) over seeds vs labelled-subset size, one line per init; ±1 sample std as error bars
    and, between neighbouring sizes that both have two or more seeds, a shaded band."""
    stats, styles = summarise(rows, view.miou), init_styles(rows)
    subsets = sorted({r["subset"] for r in rows})
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=FIGSIZE)
        for label in init_order(rows):
            xs = [s for s in subsets if (label, s) in stats]
            means = np.array([stats[label, s].mean for s in xs])
            stds = np.array([stats[label, s].std or 0.0 for s in xs])
            seeded = np.array([stats[label, s].n >= 2 for s in xs])
            style = styles[label]
            ax.plot(xs, means, label=legend_label(label, rows), linewidth=1.6, markersize=5, **style)
            if seeded.any():
                ax.errorbar(np.array(xs)[seeded], means[seeded], stds[seeded], fmt="none", ecolor=style["color"],
                            elinewidth=1, capsize=2.5)
                ax.fill_between(xs, means - stds, means + stds, where=seeded, color=style["color"], alpha=0.15,
                                linewidth=0)
        _subset_axis(ax, subsets)
        ax.set_ylabel(f"test {view.heading()}")
        ax.set_title(f"Segmentation {view.heading()} vs labelled images")
        ax.legend(loc="best", handlelength=3)  # long enough to tell -- from -. and :
        save_png(fig, path)


def plot_intermediate_delta(rows: list[Row], gains: list[Gain], path: str | Path, view: View = PLAIN) -> None:
    """Grouped bars of each intermediate init's gain over its base init in ``view`` (``gains``:
    :func:`simseg.experiments.report.gains.intermediate_gains`), with its 95% interval as an error bar where it has
    one: a group per subset size, a bar per intermediate init."""
    styles, deltas = init_styles(rows), {}
    for gain in gains:
        if gain.measured.gain is not None:
            deltas.setdefault((gain.arm, gain.reference), {})[gain.subset] = gain.measured
    subsets = sorted({s for by_subset in deltas.values() for s in by_subset})
    width = 0.8 / len(deltas)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=FIGSIZE)
        for k, ((label, base), by_subset) in enumerate(deltas.items()):
            slots = [i for i, s in enumerate(subsets) if s in by_subset]
            measured = [by_subset[subsets[i]] for i in slots]
            values = [m.gain for m in measured]
            xs = [i + (k - (len(deltas) - 1) / 2) * width for i in slots]
            bars = ax.bar(xs, values, width * 0.9, color=styles[label]["color"],
                          hatch=HATCHES[styles[label]["linestyle"]], edgecolor="white", linewidth=0,
                          label=f"{label} − {base}")
            spread = [(m.gain - m.interval.low, m.interval.high - m.gain) if m.interval else (np.nan, np.nan)
                      for m in measured]
            if any(m.interval for m in measured):
                ax.errorbar(xs, values, np.array(spread).T, fmt="none", ecolor="black", elinewidth=0.9, capsize=2.5)
            if len(deltas) <= 2:  # more bars per group leave no room for the numbers
                ax.bar_label(bars, labels=[f"{v:+.3f}".replace("-", "−") for v in values], fontsize=7, padding=2,
                             label_type="center" if any(m.interval for m in measured) else "edge")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(subsets)), [format_size(s) for s in subsets])
        ax.grid(axis="x", visible=False)
        ax.margins(y=0.18)  # room for the value labels
        ax.set_xlabel("labelled training images")
        ax.set_ylabel(f"Δ{view.heading()} (with − without intermediate)")
        ax.set_title("Effect of intermediate classification on segmentation mIoU"
                     + (" (bars: 95% intervals)" if any(m.interval for d in deltas.values() for m in d.values())
                        else ""))
        ax.legend(loc="best")
        save_png(fig, path)


def plot_miou_vs_time(rows: list[Row], path: str | Path, view: View = PLAIN) -> None:
    """Test mIoU (``view``) of every row that has it and train_seconds vs its training minutes (log x); colour =
    init, marker area grows with the labelled-subset size (log)."""
    timed = [r for r in rows if r["train_seconds"] is not None and r.get(view.miou) is not None]
    styles = init_styles(rows)
    subsets = sorted({r["subset"] for r in timed})
    span = math.log(subsets[-1] / subsets[0]) or 1.0

    def area(subset: int) -> float:  # points^2
        return 14 + 110 * math.log(subset / subsets[0]) / span

    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=FIGSIZE)
        for label in init_order(rows):
            points = [r for r in timed if r["init"] == label]
            if points:
                ax.scatter([r["train_seconds"] / 60 for r in points], [r[view.miou] for r in points],
                           s=[area(r["subset"]) for r in points], color=styles[label]["color"],
                           marker=styles[label]["marker"], alpha=0.8, edgecolors="white", linewidths=0.5,
                           label=legend_label(label, rows))
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("training time per cell (minutes, log scale)")
        ax.set_ylabel(f"test {view.heading()}")
        ax.set_title(f"Segmentation {view.heading()} vs training time")
        # one legend placed where the points are not: inits at one marker size, then what the sizes mean
        handles, _ = ax.get_legend_handles_labels()
        shown = subsets if len(subsets) <= 3 else [subsets[0], subsets[len(subsets) // 2], subsets[-1]]
        sizes = [ax.scatter([], [], s=area(s), color=SCRATCH_COLOUR, alpha=0.6, label=f"{format_size(s)} labelled")
                 for s in shown]
        legend = ax.legend(handles=[*handles, *sizes], loc="best", labelspacing=0.7)
        for handle in legend.legend_handles[:len(handles)]:
            handle.set_sizes([36])
        save_png(fig, path)


def plot_miou_vs_cost(rows: list[Row], path: str | Path, view: View = PLAIN) -> None:
    """Two panels, mIoU (``view``) vs parameters and vs GFLOPs (log x): one labelled point per variant (model /
    init), its seed-mean at the largest labelled subset that every variant with cost columns has."""
    costed = [r for r in rows if r["gflops"] is not None and r["parameters"] is not None
              and r.get(view.miou) is not None]
    labels = [label for label in init_order(rows) if any(r["init"] == label for r in costed)]
    subset = min(max(r["subset"] for r in costed if r["init"] == label) for label in labels)
    styles = init_styles(rows)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(FIGSIZE[0] * 1.6, FIGSIZE[1]), sharey=True)
        for ax, key, name in ((axes[0], "parameters", "parameters (millions)"),
                              (axes[1], "gflops", "forward GFLOPs per image")):
            for label in labels:
                cell = [r for r in costed if r["init"] == label and r["subset"] == subset]
                if not cell:
                    continue
                x = sum(r[key] for r in cell) / len(cell) / (1e6 if key == "parameters" else 1)
                y = sum(r[view.miou] for r in cell) / len(cell)
                ax.scatter([x], [y], s=48, color=styles[label]["color"], marker=styles[label]["marker"], zorder=3)
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.margins(x=0.25)  # room for the labels of the outermost points
            ax.set_xlabel(f"{name}, log scale")
        axes[0].set_ylabel(f"test {view.heading()}")
        fig.suptitle(f"Segmentation {view.heading()} vs model cost ({format_size(subset)} labelled images)")
        save_png(fig, path)


def training_curves(rows: list[Row], sweep_dir: Path) -> tuple[dict[str, list[tuple[float, float]]], str]:
    """Label -> [(training minutes, mean score)] at each evaluated epoch, averaged over the seeds of the label's
    largest subset, from the cells' ``metrics.jsonl``; and the score's name (validation mIoU when every cell has
    one, else the test mIoU of evaluated epochs)."""
    histories: dict[str, list[list[dict]]] = {}
    for label in init_order(rows):
        largest = max(r["subset"] for r in rows if r["init"] == label)
        for row in rows:
            if row["init"] == label and row["subset"] == largest and row["run_dir"]:
                if records := epoch_records(sweep_dir / row["run_dir"]):
                    histories.setdefault(label, []).append(records)
    every = [h for hs in histories.values() for h in hs]
    basis = "val_miou" if every and all(any(r.get("val_miou") is not None for r in h) for h in every) else "test_miou"
    curves = {}
    for label, runs in histories.items():
        points: dict[int, list[tuple[float, float]]] = {}
        for history in runs:
            elapsed = 0.0
            for record in history:
                elapsed += record.get("seconds", 0.0)
                if record.get(basis) is not None:
                    points.setdefault(record["epoch"], []).append((elapsed / 60, record[basis]))
        curve = [(float(np.mean([t for t, _ in epoch])), float(np.mean([v for _, v in epoch])))
                 for _, epoch in sorted(points.items())]
        if len(curve) >= 2:
            curves[label] = curve
    return curves, ("validation mIoU" if basis == "val_miou" else "test mIoU (evaluated epochs)")


def plot_training_curves(rows: list[Row], sweep_dir: Path, path: str | Path) -> bool:
    """Score against training minutes, one line per model / preset / recipe / init (mean over seeds at its largest
    subset): the figure to choose a recipe for a time budget. False (nothing drawn) without two evaluated epochs."""
    curves, score = training_curves(rows, sweep_dir)
    if not curves:
        return False
    styles = init_styles(rows)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=FIGSIZE)
        for label, curve in curves.items():
            ax.plot(*zip(*curve), label=label, **styles[label])
        ax.set_xlabel("training minutes")
        ax.set_ylabel(score)
        ax.set_title(f"{score[0].upper()}{score[1:]} vs training time")
        ax.legend(loc="best")
        save_png(fig, path)
    return True


VERDICT_COLOURS = {ABOVE: "#1a7f37", BELOW: "#c62828", NOISE: SCRATCH_COLOUR}


def gain_label(gain: Gain) -> str:
    """A forest plot row: ``p45k − scratch, 250 labels`` or, averaged, ``heavy − light, mean of 4 settings``."""
    settings = gain.measured.settings
    where = (f"mean of {settings} setting{'s' * (settings != 1)}" if gain.subset is None
             else f"{format_size(gain.subset)} labels")
    return f"{gain.arm} − {gain.reference}, {where}"


def plot_gains(gains: list[Gain], path: str | Path, view: View = PLAIN) -> bool:
    """A forest plot of every gain with an interval: one row per comparison (grouped under its table's heading),
    the gain a point and its 95% interval a bar, coloured by verdict, a line at zero. False (nothing drawn) when no
    gain has an interval."""
    shown = [gain for gain in gains if gain.measured.interval is not None]
    if not shown:
        return False
    rows: list[tuple[str, Gain | None]] = []  # (tick label, gain); None: a group's heading
    for gain in shown:
        if not rows or rows[-1][1].group != gain.group:  # the last row is always a gain
            rows.append((gain.group, None))
        rows.append((gain_label(gain), gain))
    images = max(gain.measured.images for gain in shown)
    height = 1.7 + 0.24 * len(rows)  # inches: a readable row at any count, two title lines
    # inches: the longest tick label (~0.07 in a character) beside a plot of 3 in, so no label squeezes the plot out
    width = max(FIGSIZE[0], 3.0 + 0.07 * max(len(label) for label, _ in rows))
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(width, height))
        ys = np.arange(len(rows))[::-1]  # first row at the top
        for y, (_, gain) in zip(ys, rows):
            if gain is None:
                continue
            low, high, verdict = gain.measured.interval.low, gain.measured.interval.high, gain.measured.interval.verdict
            colour = VERDICT_COLOURS[verdict]
            ax.plot([low, high], [y, y], color=colour, linewidth=2, solid_capstyle="butt")
            ax.plot([gain.measured.gain], [y], "o", color=colour, markersize=5)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(ys, [label for label, _ in rows])
        for tick, (_, gain) in zip(ax.get_yticklabels(), rows):
            if gain is None:
                tick.set_fontweight("bold")
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.grid(axis="y", visible=False)
        ax.tick_params(axis="y", length=0)
        ax.set_xlabel(f"Δ{view.heading()} (arm − reference)")
        ax.set_title(f"Gains in test {view.heading()}\n95% paired-bootstrap intervals, {images:,} test images")
        handles = [plt.Line2D([], [], color=colour, marker="o", linewidth=2, label=verdict)
                   for verdict, colour in VERDICT_COLOURS.items()]
        fig.legend(handles=handles, loc="lower center", ncol=3, bbox_to_anchor=(0.5, 0.0))
        save_png(fig, path, rect=(0, 0.35 / height, 1, 1))  # the bottom 0.35 in: the legend
    return True
