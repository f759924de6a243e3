"""Print each named arm's own plain test scores with their 95% intervals: mIoU and Boundary IoU, the levels that
docs/results/pretraining.md's targets are stated in (``simseg report`` bootstraps gains; this bootstraps levels).

    python studies/protocol_levels.py docs/results/pretraining/protocol/cells --subset 250 \\
        --arm vit_fused_skip/160/e20-s0+vit_fused_skip/160/e20-s1 --arm unet_resnet18/128/scratch-9ep

Wall time: about a second.

An arm is a label as the report's tables print it; ``A1+A2`` pools arms (two pretraining seeds of one model) as
blocks, as ``simseg report --compare`` does. Each score is the mean over the arm's fine-tuning seeds of each cell's
score from its summed per-image counts (``test_scores.npz``, plain view, each mask at its own size), so it equals
the mean of results.csv's ``miou_plain`` / ``boundary_iou_plain`` over those cells; the interval resamples seeds
and test images (:func:`simseg.experiments.report.intervals.level_interval`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from page_tables import markdown_table  # noqa: E402  (beside this script)

from simseg.errors import SimsegError  # noqa: E402
from simseg.experiments.report.effects import with_variant_labels  # noqa: E402
from simseg.experiments.report.gains import Gauge, arm_rows, pooled_labels  # noqa: E402
from simseg.experiments.report.intervals import level_interval  # noqa: E402
from simseg.experiments.sweep.results import read_results  # noqa: E402

KINDS = {"iou": "mIoU", "boundary": "Boundary IoU"}


def arm_counts(gauge: Gauge, rows: list[dict], arm: str, subset: int, kind: str) -> np.ndarray:
    """(B, S, N, C, 2) plain native counts of ``kind`` of the pooled arms (blocks) at ``subset``, test images in one
    order; every block must hold the same fine-tuning seeds, every cell the same test images. ``gauge`` reads each
    cell's per-image scores once."""
    blocks, seeds, names = [], None, None
    for label in pooled_labels(rows, arm):
        cells = sorted((r for r in arm_rows(rows, label, "--arm") if r["subset"] == subset), key=lambda r: r["seed"])
        if not cells:
            raise SimsegError(f"--arm {label}: no cell at subset {subset}")
        if seeds is not None and [r["seed"] for r in cells] != seeds:
            raise SimsegError(f"--arm {arm}: its arms ran different seeds ({seeds} and {[r['seed'] for r in cells]})")
        seeds = [r["seed"] for r in cells]
        block = []
        for row in cells:
            scores = gauge.scores(row)
            found = None if scores is None else scores.counts("plain", "native", kind)
            if found is None:
                raise SimsegError(f"cell {row['cell']} has no plain native {kind} counts in its test_scores.npz")
            cell_names = sorted(scores.names)
            names = cell_names if names is None else names
            if cell_names != names:
                raise SimsegError(f"cell {row['cell']} was scored on other test images than {arm}'s first cell")
            block.append(found[np.argsort(scores.names)])  # one order of the test images for every cell
        blocks.append(np.stack(block))
    return np.stack(blocks)


def table(sweep_dir: Path, arms: list[str], subset: int) -> str:
    rows, gauge = with_variant_labels(read_results(sweep_dir)), Gauge(sweep_dir)
    body = []
    for arm in arms:
        figures = []
        for kind in KINDS:
            counts = arm_counts(gauge, rows, arm, subset, kind)
            level = level_interval(counts)
            figures.append(f"{level.gain:.3f} [{level.low:.3f}, {level.high:.3f}]")
        blocks, seeds = counts.shape[:2]
        body.append([arm, f"{blocks} × {seeds}", *figures])
    header = ["arm", "pretraining × fine-tuning seeds", *(f"{name} (plain, 95% interval)" for name in KINDS.values())]
    return markdown_table(header, body, text_columns=2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir")
    parser.add_argument("--arm", action="append", required=True, metavar="LABEL[+LABEL]",
                        help="an arm as the report labels it; A1+A2 pools arms (repeatable)")
    parser.add_argument("--subset", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        print(table(Path(args.sweep_dir), args.arm, args.subset))
    except SimsegError as err:
        sys.exit(f"protocol_levels: {err}")


if __name__ == "__main__":
    main()
