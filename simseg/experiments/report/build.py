"""``simseg report SWEEP_DIR``: figures and ``report.md`` of a finished (or partial) sweep.

Reads ``results.csv`` (else ``results.jsonl``), the optional ``sweep.json`` and whatever pictures the cell and init
run folders hold, and writes into the sweep folder (each file atomically)::

    report.md                 tables of mean ± std mIoU, gains over scratch, training cost; the figures; provenance
    miou_vs_subset.png        test mIoU vs labelled images, one line per init
    intermediate_delta.png    ΔmIoU of intermediate classification (only when an intermediate init's base is swept)
    miou_vs_time.png          mIoU vs training minutes per cell (only when the rows hold train_seconds)
    miou_vs_cost.png          mIoU vs parameters and vs GFLOPs, one point per model / init (rows with cost columns)
    training_curves.png       score vs training minutes per model / recipe / init (from the cells' metrics.jsonl)
    figures/                  copies of each init's latest reconstruction grid and the best cell's examples

Rows come from :mod:`simseg.experiments.sweep.results`, their summaries from
:mod:`simseg.experiments.report.summary` and what each axis does from :mod:`simseg.experiments.report.effects` (pure
functions, shared with the figures); the plots are drawn by :mod:`simseg.experiments.report.figures`, the tables
beyond the mIoU by :mod:`simseg.experiments.report.tables`, the run folders' pictures copied by
:mod:`simseg.experiments.report.pictures` (what it reads in a run folder: :mod:`simseg.experiments.run_folders`).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from simseg.experiments.report import figures, pictures
from simseg.experiments.report.effects import scratch_gains, varying_axes, with_variant_labels
from simseg.experiments.report.summary import (
    MISSING,
    format_summary,
    init_info,
    init_order,
    intermediate_deltas,
    markdown_table,
    summarise,
)
from simseg.experiments.report.tables import cost_table, effect_tables, per_class_table, tta_table
from simseg.experiments.sweep.axes import every_variant, init_axis, pretraining_axes, runs_with, variant_axes
from simseg.experiments.sweep.plan import cell_name
from simseg.experiments.sweep.results import Row, read_results, read_sweep, results_path
from simseg.files import atomic_write_text
from simseg.sizes import format_size, parse_size
from simseg.training.plots import GRID_COLUMNS


def missing_cells(rows: list[Row], sweep: dict | None) -> tuple[list[str], int, int]:
    """Names of the grid's cells without a row (in grid order), the grid's size, and how many rows lie outside it
    (cells of earlier commands). The grid is sweep.json's when there is one (its variants with the inits that fit
    them), else every combination of the inits, subsets and seeds the rows hold."""
    grid = (sweep or {}).get("grid") or {}
    swept: dict[str, list[str]] = {}  # variant axis column -> its values in sweep.json; absent = not swept
    if grid:
        paths = {**(grid.get("inits") or {}), **(grid.get("intermediate") or {})}
        labels = list(paths)
        subsets = sorted(parse_size(s, "sweep.json subsets") for s in grid.get("subsets") or [])
        seeds = [int(s) for s in grid.get("seeds") or []]
        swept = {axis.column: list(grid[axis.grid_key]) for axis in variant_axes() if grid.get(axis.grid_key)}
    else:
        labels = init_order(rows)
        paths = {label: init_info(rows)[label].path for label in labels}
        subsets, seeds = sorted({r["subset"] for r in rows}), sorted({r["seed"] for r in rows})
    done = {(tuple((column, r[column]) for column in swept), r["init"], r["subset"], r["seed"]) for r in rows}
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


def result_tables(rows: list[Row]) -> list[str]:
    """The mean ± std mIoU table, the gain over scratch and the training cost, with their footnotes."""
    order, info, stats = init_order(rows), init_info(rows), summarise(rows)
    subsets = sorted({r["subset"] for r in rows})
    columns = [format_size(s) for s in subsets]
    best = {s: max(m.mean for (_, size), m in stats.items() if size == s) for s in subsets}
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
    lines = ["## Test mIoU", "", *markdown_table(
        ["init", *(axis.title for axis in shown), *columns],
        [[label, *(pretrained(label, axis) for axis in shown), *(miou_cell(label, s) for s in subsets)]
         for label in order]),
        "", "Mean ± sample standard deviation (ddof=1) over seeds; n = seeds; bold = best init for that subset size; "
        f"{MISSING} = no finished cell.", "", "## Gain over scratch", ""]
    # Each init is compared with the scratch init of its own variant: the rows' variant columns say which.
    gains = {(g.init, g.subset): g for g in scratch_gains(rows)}
    compared = list(dict.fromkeys(label for label, _ in gains))
    if not compared:
        lines.append("Not available: the results need a scratch init and another init.")
    else:
        def gain(label: str, s: int) -> str:
            if (label, s) not in gains:
                return MISSING
            return f"{round(gains[label, s].gain, 3) + 0.0:+.3f}"  # + 0.0: no "-0.000"

        lines += markdown_table(["init", *columns], [[label, *(gain(label, s) for s in subsets)]
                                                     for label in compared])
        references = sorted({g.scratch for g in gains.values()})
        nouns = [axis.noun for axis in varying_axes(rows)]
        same = f" of the same {_listed(nouns)}" if nouns else ""
        lines += ["", f"Mean test mIoU of the init minus that of `{references[0]}` at the same subset size."
                  if len(references) == 1 else f"Mean test mIoU of the init minus that of the scratch init{same}, at "
                  "the same subset size."]
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


def picture_sections(figures: dict[str, bool], recon: dict[str, tuple[str, str]], best: dict) -> list[str]:
    """The figures, reconstruction grids and best cell's examples, as relative links with captions."""
    lines = ["## Figures", "", "![mIoU vs subset](miou_vs_subset.png)", "",
             "*Test mIoU against labelled training images: mean over seeds, ±1 sample std (band and bars) where a "
             "cell has two or more seeds; dashed lines went through intermediate classification.*", ""]
    if figures["intermediate_delta"]:
        lines += ["![ΔmIoU of intermediate classification](intermediate_delta.png)", "",
                  "*Mean mIoU with intermediate classification minus mean mIoU of the init it was built from.*", ""]
    else:
        lines += ["Intermediate classification: not applicable (no intermediate init whose base init is in the "
                  "results).", ""]
    if figures["miou_vs_time"]:
        lines += ["![mIoU vs training time](miou_vs_time.png)", "",
                  "*Test mIoU of every cell against its training time; larger markers = more labelled images.*", ""]
    else:
        lines += ["mIoU vs training time: not available (no row has train_seconds).", ""]
    if figures.get("training_curves"):
        lines += ["![mIoU vs training minutes](training_curves.png)", "",
                  "*The score of evaluated epochs against training minutes, one line per model / preset / recipe / "
                  "init (mean over seeds at its largest labelled subset): what each buys for a time budget.*", ""]
    if figures.get("miou_vs_cost"):
        lines += ["![mIoU vs cost](miou_vs_cost.png)", "",
                  "*Test mIoU (mean over seeds, at the largest labelled subset every model / init has) against "
                  "parameters and forward GFLOPs per image, log scale.*", ""]
    lines += ["## Reconstruction grids", ""]
    for label, (path, when) in recon.items():
        lines += [f"![reconstruction grid of {label}]({path})", "",
                  f"*{label}: reconstructions, {when} ({' | '.join(GRID_COLUMNS)}).*", ""]
    if not recon:
        lines += ["Not available: no init run folder with a grids/ folder was found.", ""]
    summary = best["summary"]
    lines += ["## Best cell", "", f"`{best['init']}` with {format_size(best['subset'])} labelled images: "
              f"mean test mIoU {format_summary(summary)}.", ""]
    if best["seed"] is None:
        return lines + ["Example predictions: not available (no examples.png in that cell's run folders).", ""]
    return lines + ["![best cell examples](figures/best_examples.png)", "",
                    f"*Test images of seed {best['seed']} (mIoU {best['miou']:.3f}): image | ground truth | prediction "
                    f"({pictures.colour_legend(best['classes'])}).*", ""]


def provenance(sweep: dict | None, source: str, rows: list[Row]) -> list[str]:
    """The "How this was made" section: the sweep command(s) and the segmentation config as YAML."""
    lines = ["## How this was made", "", f"From `{source}` ({len(rows)} rows), by `simseg report`.", ""]
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


def build_report(sweep_dir: str | Path) -> Path:
    """Write the figures and ``report.md`` into ``sweep_dir``; returns the path of report.md."""
    sweep_dir = Path(sweep_dir)
    raw, sweep = read_results(sweep_dir), read_sweep(sweep_dir)
    rows = with_variant_labels(raw)  # per variant / init where the sweep had variant axes
    drawn = {"intermediate_delta": bool(intermediate_deltas(rows)),
             "miou_vs_time": any(r["train_seconds"] is not None for r in rows),
             "miou_vs_cost": any(r["gflops"] is not None for r in rows)}
    figures.plot_miou_vs_subset(rows, sweep_dir / "miou_vs_subset.png")
    if drawn["intermediate_delta"]:
        figures.plot_intermediate_delta(rows, sweep_dir / "intermediate_delta.png")
    if drawn["miou_vs_time"]:
        figures.plot_miou_vs_time(rows, sweep_dir / "miou_vs_time.png")
    if drawn["miou_vs_cost"]:
        figures.plot_miou_vs_cost(rows, sweep_dir / "miou_vs_cost.png")
    drawn["training_curves"] = figures.plot_training_curves(rows, sweep_dir, sweep_dir / "training_curves.png")
    recon = pictures.copy_recon_grids(rows, sweep, sweep_dir)
    best = pictures.copy_best_examples(rows, sweep_dir)
    text = "\n".join([f"# Sweep report: {sweep_dir.resolve().name}", "", overview_line(raw, sweep), "",
                      *result_tables(rows), "", *cost_table(rows), "", *effect_tables(raw), "",
                      *per_class_table(rows), "", *tta_table(rows), *picture_sections(drawn, recon, best),
                      *provenance(sweep, results_path(sweep_dir).name, rows)])
    atomic_write_text(sweep_dir / "report.md", text + "\n")
    return sweep_dir / "report.md"
