"""``simseg report SWEEP_DIR [--tta] [--reference LABEL] [--compare A,B ...]``: figures and ``report.md`` of a
finished (or partial) sweep.

Reads ``results.csv`` (else ``results.jsonl``), the optional ``sweep.json``, each cell's per-image test scores
(``test_scores.npz``) and whatever pictures the cell and init run folders hold, and writes into the sweep folder
(each file atomically)::

    report.md                 tables of mean ± std mIoU, gains (each with its 95% interval and verdict), what the
                              validation set chose, training cost; the figures; provenance
    gains.png                 every gain with an interval as a forest plot (when any gain has one)
    miou_vs_subset.png        test mIoU vs labelled images, one line per init
    intermediate_delta.png    ΔmIoU of intermediate classification (only when an intermediate init's base is swept)
    miou_vs_time.png          mIoU vs training minutes per cell (only when the rows hold train_seconds)
    miou_vs_cost.png          mIoU vs parameters and vs GFLOPs, one point per model / init (rows with cost columns)
    training_curves.png       score vs training minutes per model / recipe / init (from the cells' metrics.jsonl)
    figures/                  copies of each init's latest reconstruction grid and one cell's example predictions

Every table and figure compares one view of the test scores, the plain one unless ``--tta`` (:mod:`.view`), and
says which; every gain comes with its interval (:mod:`.gains`); nothing is chosen by a test score: the arms are
chosen on the validation set (:mod:`.selection`), and the example pictures are the chosen arm's.

Rows come from :mod:`simseg.experiments.sweep.results`, their summaries from
:mod:`simseg.experiments.report.summary` and what each axis does from :mod:`simseg.experiments.report.effects` (pure
functions, shared with the figures); the plots are drawn by :mod:`simseg.experiments.report.figures`, the tables
beyond the mIoU by :mod:`simseg.experiments.report.tables`, the run folders' pictures copied by
:mod:`simseg.experiments.report.pictures` (what it reads in a run folder: :mod:`simseg.experiments.run_folders`).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from simseg.errors import SimsegError
from simseg.experiments.report import figures, pictures
from simseg.experiments.report.effects import value_key, varying_axes, with_variant_labels
from simseg.experiments.report.gains import (
    Gain,
    Gauge,
    effect_gains,
    intermediate_gains,
    named_gains,
    scratch_gains,
    tta_gains,
)
from simseg.experiments.report.intervals import RESAMPLES
from simseg.experiments.report.selection import axis_choices, choice_gains, example_arm, labels_line, selection_section
from simseg.experiments.report.summary import MISSING, format_summary, init_info, init_order, markdown_table, summarise
from simseg.experiments.report.tables import (
    comparison_table,
    cost_table,
    effect_table,
    gain_cells,
    intermediate_table,
    interval_note,
    per_class_table,
    tta_table,
)
from simseg.experiments.report.view import PLAIN, View, resolution_line
from simseg.experiments.sweep.axes import every_variant, init_axis, pretraining_axes, runs_with, variant_axes
from simseg.experiments.sweep.plan import cell_name
from simseg.experiments.sweep.results import Row, read_results, read_sweep, results_path
from simseg.files import atomic_write_text
from simseg.sizes import format_size, parse_size
from simseg.training.plots import GRID_COLUMNS


def missing_cells(rows: list[Row], sweep: dict | None) -> tuple[list[str], int, int]:
    """Names of the grid's cells without a row (in grid order), the grid's size, and how many rows lie outside it
    (cells of earlier commands). The grid is sweep.json's when there is one (its variants with the inits that fit
    them), else every combination of the variants, inits, subsets and seeds the rows hold."""
    grid = (sweep or {}).get("grid") or {}
    swept: dict[str, list[str]] = {}  # variant axis column -> its values in sweep.json; absent = not swept
    if grid:
        paths = {**(grid.get("inits") or {}), **(grid.get("intermediate") or {})}
        labels = list(paths)
        subsets = sorted(parse_size(s, "sweep.json subsets") for s in grid.get("subsets") or [])
        seeds = [int(s) for s in grid.get("seeds") or []]
        swept = {axis.column: [str(v) for v in grid[axis.grid_key]] for axis in variant_axes()
                 if grid.get(axis.grid_key)}
    else:
        labels = init_order(rows)
        paths = {label: init_info(rows)[label].path for label in labels}
        subsets, seeds = sorted({r["subset"] for r in rows}), sorted({r["seed"] for r in rows})
        swept = {axis.column: sorted({str(r[axis.column]) for r in rows if r[axis.column] is not None},
                                     key=value_key) for axis in varying_axes(rows)}
    done = {(tuple((column, str(r[column])) for column in swept), r["init"], r["subset"], r["seed"]) for r in rows}
    expected = [(variant, label, s, seed) for s in subsets for variant in every_variant(swept) for label in labels
                if runs_with(paths.get(label), variant) for seed in seeds]  # expand_grid's order
    outside = len(done - set(expected))
    return ([cell_name(label, s, seed, variant) for variant, label, s, seed in expected
             if (variant, label, s, seed) not in done], len(expected), outside)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}{'es' if noun.endswith('s') else 's'}"


def _listed(words: list[str]) -> str:
    """``["model", "preset", "recipe"]`` -> ``model, preset and recipe``."""
    return " and ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


def overview_line(rows: list[Row], sweep: dict | None) -> str:
    """How many cells, variants, inits (and pretraining values), subsets and seeds, and whether the grid is complete
    (missing cells named, up to 10)."""
    subsets, seeds = sorted({r["subset"] for r in rows}), sorted({r["seed"] for r in rows})
    missing, expected, outside = missing_cells(rows, sweep)
    grid = "sweep.json's grid" if (sweep or {}).get("grid") else "the grid the rows span (no sweep.json)"
    variants = "".join(f"{_plural(len({r[axis.column] for r in rows}), axis.noun)}, "
                       for axis in varying_axes(rows))
    pretraining = [_plural(count, axis.noun) for axis in pretraining_axes()
                   if (count := len({r[axis.column] for r in rows if r[axis.column] is not None})) > 1]
    inits = _plural(len(init_order(rows)), init_axis().noun)
    text = (f"**{_plural(len(rows), 'cell')}** finished: {variants}{inits}"
            + (f" ({', '.join(pretraining)})" if pretraining else "")
            + f", {_plural(len(subsets), 'subset size')} ({', '.join(map(format_size, subsets))}), "
            f"{_plural(len(seeds), 'seed')} ({', '.join(map(str, seeds))}). ")
    if outside:
        text += f"{outside} of them lie outside {grid} (earlier commands). "
    if not missing:
        return text + f"Grid complete: all {expected} cells of {grid}."
    shown = ", ".join(f"`{name}`" for name in missing[:10]) + (f" and {len(missing) - 10} more" * (len(missing) > 10))
    return text + f"Grid incomplete: {len(missing)} of {expected} cells of {grid} missing: {shown}."


def result_tables(rows: list[Row], view: View = PLAIN, gains: list[Gain] | None = None,
                  resamples: int = RESAMPLES) -> list[str]:
    """The mean ± std mIoU table, each init's gain over scratch (``gains``: :func:`scratch_gains`'s; computed without
    intervals when not given) and the training cost, with their footnotes."""
    order, info, stats = init_order(rows), init_info(rows), summarise(rows, view.miou)
    subsets = sorted({r["subset"] for r in rows})
    columns = [format_size(s) for s in subsets]
    best = {s: max(m.mean for (_, size), m in stats.items() if size == s) for s in subsets if
            any(size == s for _, size in stats)}
    contested = {s for s in subsets if sum(size == s for _, size in stats) > 1}  # bold a best only among several

    def miou_cell(label: str, s: int) -> str:
        if (label, s) not in stats:
            return MISSING
        text = format_summary(stats[label, s])
        return f"**{text}**" if s in contested and stats[label, s].mean == best[s] else text

    def pretrained(label: str, axis) -> str:
        value = info[label].pretraining.get(axis.column)
        return MISSING if value is None else axis.show(value)

    shown = [axis for axis in pretraining_axes() if any(axis.column in i.pretraining for i in info.values())]
    lines = [f"## Test {view.heading()}", "", *markdown_table(
        ["init", *(axis.title for axis in shown), *columns],
        [[label, *(pretrained(label, axis) for axis in shown), *(miou_cell(label, s) for s in subsets)]
         for label in order]),
        "", f"Test mIoU ({view.label} view) per init and labelled training images: mean ± sample standard deviation "
        f"(ddof=1) over seeds; n = seeds; bold = best init for that subset size (a description, not a choice: see "
        f"\"Chosen on validation\"); {MISSING} = no finished cell.", "", "## Gain over scratch", ""]
    gains = scratch_gains(rows, Gauge(None, view)) if gains is None else gains
    if not gains:
        lines.append("Not available: the results need a scratch init and another init.")
    else:
        lines += markdown_table(
            ["init", f"Δ{view.heading()}", "95% interval", "verdict", "labelled", "seeds"],
            [[g.arm, *gain_cells(g.measured), format_size(g.subset), str(g.measured.seeds)] for g in gains])
        references = sorted({g.reference for g in gains})
        nouns = [axis.noun for axis in varying_axes(rows)]
        same = f" of the same {_listed(nouns)}" if nouns else ""
        lines += ["", (f"Test mIoU of the init minus that of `{references[0]}`" if len(references) == 1 else
                       f"Test mIoU of the init minus that of the scratch init{same}")
                  + ", mean over the seeds both ran at the same subset size (seeds = how many).", "",
                  interval_note(gains, resamples)]
    seconds, speed = summarise(rows, "train_seconds"), summarise(rows, "images_per_s")
    lines += ["", "## Training cost", ""]
    if not seconds and not speed:
        return lines + ["Not available: the results have no train_seconds or images_per_s."]

    def cost(label: str, s: int) -> str:
        parts = []
        if (label, s) in seconds:
            mean = seconds[label, s].mean
            parts.append(f"{mean / 60:.1f} min" if mean >= 60 else f"{mean:.3g} s")  # tiny test sweeps: seconds
        if (label, s) in speed:
            parts.append(f"{speed[label, s].mean:.0f} img/s")
        return ", ".join(parts) or MISSING

    lines += markdown_table(["init", *columns], [[label, *(cost(label, s) for s in subsets)] for label in order])
    return lines + ["", "Mean over seeds of a cell's training time and throughput (training images/s)."]


def picture_sections(figures: dict[str, bool], recon: dict[str, tuple[str, str]], examples: dict,
                     view: View = PLAIN) -> list[str]:
    """The figures, reconstruction grids and one cell's example predictions, as relative links with captions."""
    lines = ["## Figures", ""]
    if figures.get("gains"):
        lines += ["![gains with 95% intervals](gains.png)", "",
                  "*Every gain of one arm over another in the tables above that has an interval (each once), in "
                  f"test mIoU ({view.label} view): the point is the gain, the bar its 95% paired-bootstrap "
                  "interval; green above zero, red below, grey within noise.*", ""]
    lines += ["![mIoU vs subset](miou_vs_subset.png)", "",
              f"*Test mIoU ({view.label} view) against labelled training images: mean over seeds, ±1 sample std "
              "(band and bars) where a cell has two or more seeds; dashed lines went through intermediate "
              "classification.*", ""]
    if figures["intermediate_delta"]:
        lines += ["![ΔmIoU of intermediate classification](intermediate_delta.png)", "",
                  f"*Test mIoU ({view.label} view) with intermediate classification minus that of the init it was "
                  "built from, mean over the seeds both ran; error bars: 95% intervals, where the cells have "
                  "per-image scores.*", ""]
    else:
        lines += ["Intermediate classification: not applicable (no intermediate init whose base init is in the "
                  "results).", ""]
    if figures["miou_vs_time"]:
        lines += ["![mIoU vs training time](miou_vs_time.png)", "",
                  f"*Test mIoU ({view.label} view) of every cell against its training time; larger markers = more "
                  "labelled images.*", ""]
    else:
        lines += ["mIoU vs training time: not available (no row has train_seconds).", ""]
    if figures.get("training_curves"):
        lines += ["![mIoU vs training minutes](training_curves.png)", "",
                  "*The score of evaluated epochs against training minutes, one line per model / preset / recipe / "
                  "init (mean over seeds at its largest labelled subset): what each buys for a time budget.*", ""]
    if figures.get("miou_vs_cost"):
        lines += ["![mIoU vs cost](miou_vs_cost.png)", "",
                  f"*Test mIoU ({view.label} view; mean over seeds, at the largest labelled subset every model / "
                  "init has) against parameters and forward GFLOPs per image, log scale.*", ""]
    lines += ["## Reconstruction grids", ""]
    for label, (path, when) in recon.items():
        lines += [f"![reconstruction grid of {label}]({path})", "",
                  f"*{label}: reconstructions, {when} ({' | '.join(GRID_COLUMNS)}).*", ""]
    if not recon:
        lines += ["Not available: no init run folder with a grids/ folder was found.", ""]
    lines += ["## Example predictions", "", f"`{examples['init']}` with {format_size(examples['subset'])} labelled "
              f"images, {examples['how']}.", ""]
    if examples["seed"] is None:
        return lines + ["Example predictions: not available (no examples.png in that arm's run folders).", ""]
    score = "" if examples["miou"] is None else f"; its test mIoU ({view.label} view): {examples['miou']:.3f}"
    return lines + ["![example predictions](figures/examples.png)", "",
                    f"*Test images of seed {examples['seed']} (the first seed with pictures{score}): image | ground "
                    f"truth | prediction ({pictures.colour_legend(examples['classes'])}).*", ""]


def scores_lines(rows: list[Row], view: View) -> list[str]:
    """What the report compares, said once: the view, and where cells were scored at the model input or lack the
    view's score."""
    lines = [f"Scores: the {view.label} view of the test set"
             + (" (each image scored once; `simseg report --tta` compares the test-time-augmentation view)."
                if not view.tta else " (softmax probabilities averaged over the eval.tta flips and scales).")]
    lacking = sum(r.get(view.miou) is None for r in rows)
    if lacking:
        lines.append(f"{lacking} of {len(rows)} cells have no {view.label} score and are left out of every table.")
    at_input = resolution_line(rows)
    return lines + ([at_input] if at_input else [])


def provenance(sweep: dict | None, source: str, rows: list[Row], options: str = "") -> list[str]:
    """The "How this was made" section: the report's options, the sweep command(s) and the segmentation config as
    YAML."""
    lines = ["## How this was made", "", f"From `{source}` ({len(rows)} rows), by `simseg report{options}`.", ""]
    if sweep is None:
        return lines + ["hand-written results: no sweep.json"]
    commands = [c for c in sweep.get("commands") or [] if c != sweep.get("command")]
    lines += ["Command:", "", "```bash", str(sweep.get("command", "(not recorded)")), "```", ""]
    if commands:
        lines += ["Earlier commands into this folder:", "", "```bash", *commands, "```", ""]
    if sweep.get("segment_config") is None:
        return lines + ["Segmentation config: not recorded in sweep.json."]
    config = yaml.safe_dump(sweep["segment_config"], sort_keys=False).rstrip()
    return lines + ["Segmentation config:", "", "```yaml", config, "```"]


def build_report(sweep_dir: str | Path, tta: bool = False, reference: str | None = None,
                 compare: tuple[str, ...] = (), resamples: int = RESAMPLES) -> Path:
    """Write the figures and ``report.md`` into ``sweep_dir``; returns the path of report.md. ``tta``: compare the
    test-time-augmentation view instead of the plain one; ``reference``: also every arm's gain over this one (a label
    as the tables print it); ``compare``: also each ``A,B``'s gain of A over B; ``resamples``: of each interval."""
    text = report_markdown(sweep_dir, tta, reference, compare, resamples, draw=True)
    atomic_write_text(Path(sweep_dir) / "report.md", text)
    return Path(sweep_dir) / "report.md"


def report_markdown(sweep_dir: str | Path, tta: bool = False, reference: str | None = None,
                    compare: tuple[str, ...] = (), resamples: int = RESAMPLES, draw: bool = False) -> str:
    """The text of ``report.md`` (see :func:`build_report`); with ``draw`` also its figures and copied pictures,
    else nothing is written (a results page's tables: :mod:`simseg.experiments.report.page`)."""
    sweep_dir, view = Path(sweep_dir), View(tta)
    raw, sweep = read_results(sweep_dir), read_sweep(sweep_dir)
    if tta and not any(r.get(view.miou) is not None for r in raw):
        raise SimsegError(f"simseg report --tta: no cell of {sweep_dir} was scored with test-time augmentation: drop "
                          "--tta, or rerun the sweep with eval.tta=true")
    rows = with_variant_labels(raw)  # per variant / init where the sweep had variant axes
    if not any(r.get(view.miou) is not None for r in rows):
        raise SimsegError(f"{results_path(sweep_dir)} has no {view.miou} value: no cell has a {view.label} test "
                          f"score to report; check the file's columns")
    gauge = Gauge(sweep_dir, view, resamples)
    named = named_gains(rows, gauge, reference, tuple(compare))  # first: a wrong label fails before the rest
    over_scratch, effects = scratch_gains(rows, gauge), effect_gains(raw, gauge, sweep)
    choices = axis_choices(raw, gauge, sweep)
    intermediate, over_plain = intermediate_gains(rows, gauge), tta_gains(rows, gauge)
    drawn = {"intermediate_delta": any(gain.measured.gain is not None for gain in intermediate),
             "miou_vs_time": any(r["train_seconds"] is not None and r.get(view.miou) is not None for r in rows),
             "miou_vs_cost": any(r["gflops"] is not None and r.get(view.miou) is not None for r in rows)}
    # arms against arms, per subset before the averages (the TTA table's view-against-view gains stay in it)
    compared = [*named, *over_scratch, *intermediate, *choice_gains(choices), *effects]
    drawn["gains"] = any(gain.measured.interval is not None for gain in unique_gains(compared))
    label, subset, how = example_arm(rows)
    recon, examples = {}, {"init": label, "subset": subset, "how": how, "seed": None, "miou": None}
    if draw:
        drawn["training_curves"] = draw_figures(rows, compared, intermediate, sweep_dir, view, drawn)
        recon = pictures.copy_recon_grids(rows, sweep, sweep_dir)
        examples.update(pictures.copy_examples(rows, sweep_dir, label, subset, view.miou))
    text = "\n".join([f"# Sweep report: {sweep_dir.resolve().name}", "", overview_line(raw, sweep), "",
                      labels_line(raw), "", *scores_lines(raw, view), "",
                      *result_tables(rows, view, over_scratch, resamples), "", *cost_table(rows, view), "",
                      *effect_table(effects, raw, view, resamples), "",
                      *selection_section(choices, raw, view.heading()), "", *comparison_table(named, view, resamples),
                      *intermediate_table(intermediate, view, resamples), *per_class_table(rows, view), "",
                      *tta_table(rows, over_plain, resamples), *picture_sections(drawn, recon, examples, view),
                      *provenance(sweep, results_path(sweep_dir).name, rows, report_options(tta, reference, compare))])
    return re.sub(r"\n{3,}", "\n\n", text) + "\n"  # sections left out


def draw_figures(rows: list[Row], compared: list[Gain], intermediate: list[Gain], sweep_dir: Path, view: View,
                 drawn: dict[str, bool]) -> bool:
    """The report's figures, those ``drawn`` says the rows allow; returns whether the training curves were drawn."""
    figures.plot_gains(unique_gains(compared), sweep_dir / "gains.png", view)
    figures.plot_miou_vs_subset(rows, sweep_dir / "miou_vs_subset.png", view)
    if drawn["intermediate_delta"]:
        figures.plot_intermediate_delta(rows, intermediate, sweep_dir / "intermediate_delta.png", view)
    if drawn["miou_vs_time"]:
        figures.plot_miou_vs_time(rows, sweep_dir / "miou_vs_time.png", view)
    if drawn["miou_vs_cost"]:
        figures.plot_miou_vs_cost(rows, sweep_dir / "miou_vs_cost.png", view)
    return figures.plot_training_curves(rows, sweep_dir, sweep_dir / "training_curves.png")


def report_options(tta: bool, reference: str | None, compare: tuple[str, ...]) -> str:
    """The options a report was made with, as its command line writes them (`` --tta --reference scratch``)."""
    parts = ["--tta"] * tta + ([f"--reference {shlex.quote(reference)}"] if reference else []) \
        + [f"--compare {shlex.quote(pair)}" for pair in compare]
    return "".join(f" {part}" for part in parts)


def unique_gains(gains: list[Gain]) -> list[Gain]:
    """The gains the forest plot shows: each comparison once, first occurrence kept (an average over one setting,
    or the selection table's gain when no variant axis varies, repeats a gain over scratch)."""
    seen, kept = set(), []
    for gain in gains:
        key = (gain.arm, gain.reference, gain.measured)
        if key not in seen:
            seen.add(key)
            kept.append(gain)
    return kept
