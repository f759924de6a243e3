"""The report's gains with their 95% intervals and verdicts, the plain or TTA view, and the choice on validation, on
hand-built results rows and per-image score files (no training)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from simseg import cli
from simseg.errors import SimsegError
from simseg.experiments.report.build import build_report
from simseg.experiments.report.effects import Pair, axis_pairs
from simseg.experiments.report.figures import DPI, FIGSIZE
from simseg.experiments.report.gains import NO_SCORES, UNEVEN, Gauge, effect_gains, named_gains
from simseg.experiments.report.intervals import ABOVE, BELOW, NOISE, miou_of_counts
from simseg.experiments.report.selection import axis_choices, chosen_on_validation, matched
from simseg.experiments.report.view import View
from simseg.experiments.sweep.results import write_results
from simseg.training.image_scores import write_test_scores
from tests.experiments.test_report import full_row, write_png

NAMES = [f"image_{i:02d}" for i in range(40)]
CLASSES = ["background", "pet", "border"]
RESAMPLES = 200  # the report uses 2000; a few hundred keep the quick loop quick and the verdicts clear


def scores(seed: int, hit: float = 0.6) -> np.ndarray:
    """(N, C, 2) [intersection, union] counts of images whose per-class IoU scatters around ``hit``."""
    rng = np.random.default_rng(seed)
    union = rng.integers(50, 400, size=(len(NAMES), len(CLASSES)))
    iou = np.clip(rng.normal(hit, 0.15, size=union.shape), 0, 1)
    return np.stack([np.round(iou * union), union], -1).astype(np.int64)


def better(counts: np.ndarray, factor: float = 1.15) -> np.ndarray:
    """Every intersection up by ``factor`` (capped at its union): an arm better on every image."""
    raised = counts.copy()
    raised[..., 0] = np.minimum(raised[..., 1], np.round(raised[..., 0] * factor))
    return raised


def cell(sweep_dir, init: str, subset: int, seed: int, plain: np.ndarray | None, *, tta: np.ndarray | None = None,
         names: list[str] = NAMES, miou: float | None = None, val: float | None = None, **extra) -> dict:
    """A results row whose test mIoU is that of its counts, and (unless ``plain`` is None: a cell from before
    per-image scores) its run folder's test_scores.npz."""
    row = full_row(init, subset, seed, miou if plain is None else float(miou_of_counts(plain.sum(0))),
                   "scratch" if init == "scratch" else f"/runs/{init}", **{"train_seconds": None, **extra})
    if plain is not None:
        write_test_scores(sweep_dir / row["run_dir"], names, CLASSES,
                          {"iou_native_plain": plain, **({} if tta is None else {"iou_native_tta": tta})})
    if tta is not None:
        row["miou_tta"] = float(miou_of_counts(tta.sum(0)))
    if val is not None:
        row.update(val_miou=val, val_images=20, labels_used=subset + 20)
    return row


def table_row(text: str, start: str) -> str:
    """The markdown table line of ``text`` that begins with ``start``."""
    return next(line for line in text.splitlines() if line.startswith(start))


def test_identical_arms_are_within_noise_a_better_arm_above_zero_and_the_forest_plot_shows_them(tmp_path):
    rows = [cell(tmp_path, init, 8, seed, counts)
            for seed in (0, 1, 2)
            for init, counts in (("scratch", scores(seed)), ("same", scores(seed)), ("better", better(scores(seed))))]
    write_results(tmp_path, rows)
    text = build_report(tmp_path, resamples=RESAMPLES).read_text()
    assert "| same | +0.000 | [+0.000, +0.000] | within noise | 8 | 3 |" in text
    line = table_row(text, "| better | +0.")
    cells = [part.strip() for part in line.split("|")]
    gain, (low, high) = float(cells[2]), map(float, cells[3].strip("[]").split(","))
    assert 0 < low < gain < high and line.endswith("| above zero | 8 | 3 |")
    assert gain == round(np.mean([miou_of_counts(better(scores(s)).sum(0)) - miou_of_counts(scores(s).sum(0))
                                  for s in (0, 1, 2)]), 3)
    assert "paired bootstrap resamples of the seeds both arms ran and, within each, of the 40 test images" in text
    assert table_row(text, "| pretraining (init vs scratch) | better |").endswith("| above zero |")
    assert "![gains with 95% intervals](gains.png)" in text
    with Image.open(tmp_path / "gains.png") as image:
        assert image.format == "PNG" and image.width == round(FIGSIZE[0] * DPI) and image.height > 300
    assert "Scored at the model input" not in text


def test_a_cell_without_per_image_scores_or_with_other_test_images_gives_no_interval(tmp_path):
    reference = [cell(tmp_path, "scratch", 8, seed, scores(seed)) for seed in (0, 1)]
    old = [cell(tmp_path, "old", 8, 0, better(scores(0))), cell(tmp_path, "old", 8, 1, None, miou=0.7)]
    measured = Gauge(tmp_path, resamples=RESAMPLES).measure([Pair(old, reference)])
    assert measured.interval is None and measured.note == NO_SCORES and measured.seeds == 2
    assert measured.gain == pytest.approx(np.mean([old[0]["miou_plain"] - reference[0]["miou_plain"],
                                                   0.7 - reference[1]["miou_plain"]]))
    assert (measured.interval_text(), measured.verdict_text()) == (NO_SCORES, "—")

    renamed = [cell(tmp_path, "elsewhere", 8, 0, better(scores(0)), names=[f"other_{i}" for i in range(40)])]
    measured = Gauge(tmp_path, resamples=RESAMPLES).measure([Pair(renamed, reference)])
    assert measured.interval is None and measured.note == "no interval (the cells were scored on different test images)"

    # images are paired by name, not by position: the same scores in another order give the same interval
    order = np.random.default_rng(0).permutation(len(NAMES))
    shuffled = [cell(tmp_path, "shuffled", 8, seed, better(scores(seed))[order], names=[NAMES[i] for i in order])
                for seed in (0, 1)]
    straight = [cell(tmp_path, "straight", 8, seed, better(scores(seed))) for seed in (0, 1)]
    gauge = Gauge(tmp_path, resamples=RESAMPLES)
    assert gauge.measure([Pair(shuffled, reference)]).interval == gauge.measure([Pair(straight, reference)]).interval

    mixed = [cell(tmp_path, "input", 8, 0, None, miou=0.5, scored_at="input")]
    assert Gauge(tmp_path).measure([Pair(mixed, reference)]).note == f"{NO_SCORES}; native vs model-input scores"
    assert Gauge(tmp_path).measure([Pair(mixed, [reference[1]])]).note == "no interval (no seed in common)"


def test_an_average_over_subsets_keeps_them_as_blocks_and_needs_the_same_seeds(tmp_path):
    rows = [cell(tmp_path, init, subset, seed, counts)
            for subset in (8, 16) for seed in (0, 1)
            for init, counts in (("scratch", scores(seed + subset)), ("p", better(scores(seed + subset), 1.1)))]
    gauge = Gauge(tmp_path, resamples=RESAMPLES)
    pairs = axis_pairs(rows, "init", "scratch", "miou_plain")["p"]
    average, *per_subset = gauge.measure(pairs), *(gauge.measure([pair]) for pair in pairs)
    assert average.settings == 2 and average.interval.verdict == ABOVE
    assert average.gain == pytest.approx(np.mean([m.gain for m in per_subset]))
    # a subset size with other seeds cannot share the draws: its per-subset rows say it
    rows.append(cell(tmp_path, "p", 16, 2, better(scores(18))))
    rows.append(cell(tmp_path, "scratch", 16, 2, scores(18)))
    average, *per_subset = effect_gains(rows, gauge)
    assert average.measured.interval is None and average.measured.note == UNEVEN
    assert [(g.arm, g.subset, g.measured.seeds, g.measured.interval.verdict) for g in per_subset] == \
        [("p at 8", 8, 2, ABOVE), ("p at 16", 16, 3, ABOVE)]


def test_tta_switches_every_table_to_the_tta_view(tmp_path):
    # better without TTA, worse with it: the verdict follows the view the report is asked for
    rows = [cell(tmp_path, init, 8, seed, plain, tta=tta)
            for seed in (0, 1)
            for init, plain, tta in (("scratch", scores(seed), better(scores(seed))),
                                     ("p", better(scores(seed)), scores(seed)))]
    write_results(tmp_path, rows)
    plain = build_report(tmp_path, resamples=RESAMPLES).read_text()
    assert "## Test mIoU, plain" in plain and table_row(plain, "| p | +0.").endswith("| above zero | 8 | 2 |")
    tta = build_report(tmp_path, tta=True, resamples=RESAMPLES).read_text()
    assert "## Test mIoU, TTA" in tta and "| init | ΔmIoU, TTA | 95% interval | verdict |" in tta
    assert table_row(tta, "| p | -0.").endswith("| below zero | 8 | 2 |")
    assert "Scores: the TTA view of the test set" in tta
    for text in (plain, tta):  # the TTA table shows both views whichever is compared, each cell's pair resampled
        assert "| model / init | labelled | mIoU, TTA | mIoU, plain | gain | 95% interval | verdict | n |" in text
        assert table_row(text, "| scratch | 8 | 0.").endswith("| above zero | 2 |")
        assert table_row(text, "| p | 8 | 0.").endswith("| below zero | 2 |")

    write_results(tmp_path, [{**row, "miou_tta": None} for row in rows])
    with pytest.raises(SimsegError, match="--tta: no cell of .* test-time augmentation: drop --tta, or rerun"):
        build_report(tmp_path, tta=True)


def test_validation_chooses_the_arm_when_validation_and_test_disagree(tmp_path):
    # x: the better validation mIoU, y: the better test mIoU -> x is chosen, and its cell gives the pictures
    rows = [cell(tmp_path, "scratch", 8, seed, scores(seed), val=0.5) for seed in (0, 1)]
    rows += [cell(tmp_path, "x", 8, seed, better(scores(seed), 1.05), val=0.8) for seed in (0, 1)]
    rows += [cell(tmp_path, "y", 8, seed, better(scores(seed), 1.3), val=0.6) for seed in (0, 1)]
    assert rows[-1]["miou_plain"] > rows[2]["miou_plain"]
    assert chosen_on_validation(rows, "init") == "x"
    write_results(tmp_path, rows)
    x_pictures = write_png(tmp_path / rows[2]["run_dir"] / "examples.png", 40)
    write_png(tmp_path / rows[4]["run_dir"] / "examples.png", 80)
    text = build_report(tmp_path, resamples=RESAMPLES).read_text()
    assert table_row(text, "| init | 8 | x | 0.800 |").endswith("| above zero | **chosen** |")
    assert table_row(text, "| init | 8 | y | 0.600 |").endswith("| above zero |  |")
    assert "| init | 8 | scratch | 0.500 |" in text and "| reference |" in table_row(text, "| init | 8 | scratch |")
    assert "chosen on the validation set (20 images); the test set chose nothing" in text
    assert "Labels used: each cell's labelled training subset plus 20 validation images (labelled subset → labels " \
           "in all: 8 → 28)." in text
    assert (tmp_path / "figures" / "examples.png").read_bytes() == x_pictures
    assert "`x` with 8 labelled images, chosen on validation" in text


def test_an_axis_is_chosen_on_the_settings_every_value_ran(tmp_path):
    """160 px beats 128 px on validation where both ran (init p, seed 0); the weaker init s ran only at 160 px and
    would pull 160's pooled mean below 128's, so pooling every cell would choose 128."""
    rows = [cell(tmp_path, "p", 8, 0, scores(0), val=0.60, img_size=128, cell="128/p"),
            cell(tmp_path, "p", 8, 0, scores(0), val=0.62, img_size=160, cell="160/p")]
    rows += [cell(tmp_path, "s", 8, seed, scores(seed), val=0.30, img_size=160, cell=f"160/s/{seed}")
             for seed in (0, 1)]
    assert chosen_on_validation(rows, "img_size") == "128"  # pooled: (0.62 + 0.30 + 0.30) / 3 < 0.60
    assert [r["cell"] for r in matched(rows, "img_size")] == ["128/p", "160/p"]
    (choice,) = [c for c in axis_choices(rows, Gauge(tmp_path, View(), resamples=RESAMPLES))
                 if c.axis.column == "img_size"]
    assert choice.chosen == "160" and [(a.value, a.val_miou, a.cells) for a in choice.arms] == [
        ("128", 0.60, 1), ("160", 0.62, 1)]
    alone = [cell(tmp_path, "q", 8, 0, scores(0), val=0.7, img_size=128)] + rows[2:]  # no setting in common
    assert matched(alone, "img_size") == alone


def test_an_init_that_ran_only_with_another_model_is_left_out_of_the_init_choice(tmp_path):
    """A U-Net baseline's own init label (scratch-9ep) shares no setting with the ViT's inits: it is not chosen
    however high its validation score, and the ViT's inits are compared where they all ran."""
    rows = [cell(tmp_path, init, 8, 0, scores(i), val=val, arch="vit_linear", cell=f"vit/{init}",
                 run_dir=f"cells/vit/{init}")
            for i, (init, val) in enumerate((("scratch", 0.40), ("p", 0.55)))]
    rows += [cell(tmp_path, "scratch", 8, 0, scores(2), val=0.45, arch="unet_resnet18", cell="unet/scratch",
                  run_dir="cells/unet/scratch"),
             cell(tmp_path, "scratch-9ep", 8, 0, scores(3), val=0.90, arch="unet_resnet18", img_size=128,
                  cell="unet/scratch-9ep", run_dir="cells/unet/scratch-9ep")]
    assert [r["cell"] for r in matched(rows, "init")] == ["vit/scratch", "vit/p"]
    (choice,) = [c for c in axis_choices(rows, Gauge(tmp_path, View(), resamples=RESAMPLES))
                 if c.axis.column == "init"]
    assert choice.chosen == "p" and {a.value: a.cells for a in choice.arms}["scratch-9ep"] == 0


def test_without_validation_nothing_is_chosen_and_model_input_scores_are_named(tmp_path):
    old = cell(tmp_path, "p", 8, 0, None, miou=0.5, scored_at="input", run_dir="cells/old")  # before native scoring
    write_results(tmp_path, [cell(tmp_path, "scratch", 8, 0, scores(0)), old])
    text = build_report(tmp_path, resamples=RESAMPLES).read_text()
    assert ("No validation set: no arm was chosen (the test set never chooses); rerun the sweep with --val-size."
            in text) and "**chosen**" not in text
    assert "Scored at the model input: 1 of 2 cells were made before native-resolution scoring" in text
    assert f"| p | -0.101 | {NO_SCORES}; native vs model-input scores | — | 8 | 1 |" in text  # 0.5 - 0.601


def test_the_user_names_a_reference_and_pairs_to_compare(tmp_path, capsys):
    rows = [cell(tmp_path, init, 8, seed, counts)
            for seed in (0, 1)
            for init, counts in (("scratch", scores(seed)), ("a", better(scores(seed))), ("b", scores(seed)))]
    write_results(tmp_path, rows)
    cli.report([str(tmp_path), "--reference", "b", "--compare", "a,scratch", "--compare", "scratch,a", "--compare",
                "a,scratch"])
    assert "wrote" in capsys.readouterr().out
    text = (tmp_path / "report.md").read_text()
    assert "| arm | over | labelled | ΔmIoU, plain | 95% interval | verdict | seeds |" in text
    assert table_row(text, "| scratch | b | 8 | +0.000 |").endswith("| within noise | 2 |")
    assert table_row(text, "| a | b | 8 | +0.").endswith("| above zero | 2 |")
    assert table_row(text, "| scratch | a | 8 | -0.").endswith("| below zero | 2 |")
    assert sum(line.startswith("| a | scratch | 8 |") for line in text.splitlines()) == 1  # asked twice, shown once
    assert "by `simseg report --reference b --compare a,scratch --compare scratch,a --compare a,scratch`" in text
    with pytest.raises(SimsegError, match=r"--reference scratc: no such arm .* \(did you mean scratch\?\)"):
        build_report(tmp_path, reference="scratc")
    with pytest.raises(SimsegError, match="--compare a: give two different arms as A,B"):
        build_report(tmp_path, compare=("a",))


def test_a_pooled_arm_averages_its_arms_gains_each_a_block_of_one_interval(tmp_path):
    """Two pretraining seeds of one model: "p0+p1" over scratch is the mean of their two gains, and its interval
    holds both (so a pooled arm of one better and one equal arm is above zero, but less so than the better one)."""
    rows = [cell(tmp_path, init, 8, seed, counts)
            for seed in (0, 1)
            for init, counts in (("scratch", scores(seed)), ("p0", better(scores(seed))), ("p1", scores(seed)))]
    write_results(tmp_path, rows)
    gauge = Gauge(tmp_path, View(), resamples=RESAMPLES)
    (pooled,) = named_gains(rows, gauge, compare=("p0 + p1,scratch",))
    (alone,) = named_gains(rows, gauge, compare=("p0,scratch",))
    assert (pooled.arm, pooled.reference, pooled.subset) == ("p0+p1", "scratch", 8)
    assert pooled.measured.gain == pytest.approx(alone.measured.gain / 2)
    assert pooled.measured.interval.verdict == ABOVE and pooled.measured.settings == 2
    assert pooled.measured.interval.high < alone.measured.interval.high
    for wrong, message in (("p0+p0,scratch", "names an arm twice"), ("p0+scratch,scratch", "two different arms"),
                           ("p0+,scratch", "two different arms"), ("p0+p2,scratch", "--compare p2: no such arm")):
        with pytest.raises(SimsegError, match=message):
            named_gains(rows, gauge, compare=(wrong,))


def test_verdicts_of_the_gauge_follow_the_direction(tmp_path):
    reference = [cell(tmp_path, "scratch", 8, seed, scores(seed)) for seed in (0, 1)]
    worse = [cell(tmp_path, "worse", 8, seed, better(scores(seed), 0.8)) for seed in (0, 1)]
    gauge = Gauge(tmp_path, View(), resamples=RESAMPLES)
    down, up = gauge.measure([Pair(worse, reference)]), gauge.measure([Pair(reference, worse)])
    assert (down.interval.verdict, up.interval.verdict) == (BELOW, ABOVE)
    assert down.gain == pytest.approx(-up.gain) and down.images == 40
    same = gauge.measure([Pair(reference, reference)])
    assert same.interval.verdict == NOISE and same.gain == 0


def test_intermediate_classification_gets_its_interval_in_the_table_and_the_figure(tmp_path):
    rows = [cell(tmp_path, "base", 8, seed, scores(seed), pretrain_images=100) for seed in (0, 1)]
    rows += [cell(tmp_path, "base+cls", 8, seed, better(scores(seed)), pretrain_images=100, intermediate=True,
                  base_init="base") for seed in (0, 1)]
    write_results(tmp_path, rows)
    text = build_report(tmp_path, resamples=RESAMPLES).read_text()
    assert "| init | built from | labelled | ΔmIoU, plain | 95% interval | verdict | seeds |" in text
    assert table_row(text, "| base+cls | base | 8 | +0.").endswith("| above zero | 2 |")
    assert "![ΔmIoU of intermediate classification](intermediate_delta.png)" in text
    assert (tmp_path / "intermediate_delta.png").is_file()
