"""Copy a finished study run's artefacts into a results page folder, at sizes a repository can hold, and print the
tables and figures the page quotes (docs/results/report.md; the run: studies/report.sh).

    python studies/publish_report.py ../simseg-study-cpu docs/results

Wall time: not recorded (it copies two files and shrinks a few PNGs).

Copies results.csv, timings.tsv and simseg report's three figures; shrinks each pretraining run's last
reconstruction grid (first rows only) and the segmentation examples of the best cell and of scratch at the same
subset and seed; prints the tables of `simseg report` and each stage run's time and throughput.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from page_tables import LEFT, markdown_table  # noqa: E402  (beside this script)

from simseg.experiments.report.build import result_tables  # noqa: E402
from simseg.experiments.report.summary import summarise  # noqa: E402
from simseg.experiments.sweep.plan import cell_name  # noqa: E402
from simseg.experiments.sweep.results import read_results  # noqa: E402

FIGURES = ("miou_vs_subset.png", "intermediate_delta.png", "miou_vs_time.png")
WIDTH = 640  # px: legible on a page, ~100 kB a picture


def shrink(source: Path, target: Path, keep_height: float = 1.0) -> None:
    """Top ``keep_height`` share of a picture, at most ``WIDTH`` px wide, in 256 colours (a third of the bytes)."""
    image = Image.open(source).convert("RGB")
    image = image.crop((0, 0, image.width, round(image.height * keep_height)))
    if image.width > WIDTH:
        image = image.resize((WIDTH, round(image.height * WIDTH / image.width)), Image.Resampling.LANCZOS)
    image.quantize(256).save(target, optimize=True)


def stage_times(run_root: Path) -> list[tuple[str, float, float, int]]:
    """(run, train seconds, images/s, training images) of every pretraining and classification run folder."""
    rows = []
    for metrics_file in sorted(run_root.glob("*/metrics.json")):
        metrics = json.loads(metrics_file.read_text())
        rows.append((metrics_file.parent.name, metrics["train_seconds"], metrics["images_per_s"],
                     metrics["train_images"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_root", type=Path, help="OUT_DIR of studies/report.sh (the sweep folder)")
    parser.add_argument("page", type=Path, help="the results page folder, e.g. docs/results")
    args = parser.parse_args()
    args.page.mkdir(parents=True, exist_ok=True)
    for name in ("results.csv", "timings.tsv", *FIGURES):
        if (args.run_root / name).exists():
            shutil.copyfile(args.run_root / name, args.page / name)
    for run in sorted(args.run_root.glob("pretrain-*")):
        grids = sorted((run / "grids").glob("epoch_*.png"))
        if grids:
            shrink(grids[-1], args.page / f"recon_{run.name}.png", keep_height=0.515)  # the title and four rows
    rows = read_results(args.run_root)
    means = summarise(rows)
    best_init, best_subset = max(means, key=lambda key: means[key].mean)
    for init in (best_init, "scratch"):
        cell = args.run_root / "cells" / cell_name(init, best_subset, 0) / "examples.png"
        if cell.exists():
            shrink(cell, args.page / f"examples_{init}_{best_subset}.png", keep_height=0.5)
    print("\n".join(result_tables(rows)))
    stages = [[name, f"{seconds / 60:.1f} min", f"{speed:.0f}", f"{images:,}"]
              for name, seconds, speed, images in stage_times(args.run_root)]
    # ruled as the report's own tables printed above it (simseg's markdown_table)
    print("\n" + markdown_table(["run", "training time", "images/s", "training images"], stages, text_rule=LEFT))
    print(f"\nwrote {sorted(p.name for p in args.page.iterdir())} into {args.page}")


if __name__ == "__main__":
    main()
