"""Print the tables of docs/results/models.md from a finished studies/models.sh folder and copy its figures there,
at sizes a repository can hold.

    python studies/publish_models.py ../simseg-models-cpu [docs/results/models]     # the last step of models.sh

Wall time: not recorded (it reads two results.csv files and shrinks four PNGs).

Tables: per model and init, test mIoU and boundary IoU at 250 (mean ± std over seeds) and 877 labelled images,
parameters, GFLOPs and training minutes, at the same epochs; then U-Net-R18 at the pretrained fused-skip ViT's
training minutes (OUT/equal-time). Figures: the sweep report's mIoU-vs-cost plot and the examples of the pretrained
fused-skip ViT, scratch ViT-linear and U-Net at 250 labelled images, seed 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from page_tables import markdown_table, summary  # noqa: E402  (beside this script)
from publish_report import shrink  # noqa: E402  (the results page's picture shrinker)

from simseg.experiments.sweep.results import as_reported, read_results  # noqa: E402

MODELS = (("vit_linear", "scratch"), ("vit_linear", "pretrain-all"), ("vit_fused_skip", "scratch"),
          ("vit_fused_skip", "pretrain-all"), ("unet_resnet18", "scratch"))


def table(rows: list[dict], variants, title: str) -> None:
    print(f"\n{title}\n")
    body = []
    for arch, init in variants:
        mine = [r for r in rows if (r["arch"], r["init"]) == (arch, init)]
        if not mine:
            continue
        at = {s: [r for r in mine if r["subset"] == s] for s in (250, 877)}
        minutes = {s: summary([r["train_seconds"] / 60 for r in at[s]]).split(" ±")[0] for s in at}
        # as the cells reported them (with TTA where they ran it), the figures this page was made from
        body.append([arch, init, *(summary([as_reported(r, metric) for r in at[size]]) for size in (250, 877)
                                   for metric in ("miou", "iou_boundary")),
                     f"{mine[0]['parameters'] / 1e6:.2f}M", f"{mine[0]['gflops']:.3f}", minutes[250], minutes[877]])
    print(markdown_table(["model", "init", "mIoU @250 (3 seeds)", "boundary IoU @250", "mIoU @877",
                          "boundary IoU @877", "parameters", "GFLOPs", "training min @250", "training min @877"],
                         body, text_columns=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_root", type=Path)
    parser.add_argument("page_dir", type=Path, nargs="?", default=Path("docs/results/models"))
    args = parser.parse_args()
    rows = read_results(args.run_root)
    table(rows, MODELS, "Same epochs (10) for every model:")
    equal = args.run_root / "equal-time"
    if (equal / "results.csv").is_file():
        timed = read_results(equal)
        print(f"\nU-Net-R18 at equal training minutes ({timed[0]['epochs']} epochs):")
        table(timed, [("unet_resnet18", "scratch")], "")
    args.page_dir.mkdir(parents=True, exist_ok=True)
    shrink(args.run_root / "miou_vs_cost.png", args.page_dir / "miou_vs_cost.png")
    for arch, init in (("vit_fused_skip", "pretrain-all"), ("vit_linear", "scratch"), ("unet_resnet18", "scratch")):
        examples = args.run_root / "cells" / arch / init / "subset-250" / "seed-0" / "examples.png"
        if examples.is_file():
            shrink(examples, args.page_dir / f"examples_{arch}_{init}_250.png")
    print(f"\nfigures in {args.page_dir}")


if __name__ == "__main__":
    main()
