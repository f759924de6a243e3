"""Print the tables of docs/results/recipes.md from a benchmarks/compare_recipes_cpu.sh folder and copy its figures
there, at sizes a repository can hold.

    python benchmarks/publish_recipes.py ../simseg-recipes-cpu [docs/results/recipes]

Tables: per model, init and recipe, test mIoU without and with test-time augmentation at 250 labelled images (mean
± std over seeds) and at 877, boundary IoU and training minutes, at the same epochs; then the medium recipe at the
study recipe's training minutes (OUT/equal-time). Figures: the sweep report's mIoU-against-training-minutes curves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from publish_models import summary  # noqa: E402  (mean ± std, beside this script)
from publish_results import shrink  # noqa: E402

from simseg.experiments.results import read_results  # noqa: E402

RECIPES = ("study", "mild", "medium")


def table(rows: list[dict], title: str) -> None:
    print(f"\n{title}\n")
    print("| model | init | recipe | epochs | mIoU @250 | mIoU @250 with TTA | boundary IoU @250 | mIoU @877 "
          "| mIoU @877 with TTA | training min @250 | training min @877 |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    variants = sorted({(r["arch"], r["init"], r["recipe"]) for r in rows},
                      key=lambda v: (v[0], v[1] != "scratch", RECIPES.index(v[2]) if v[2] in RECIPES else 9))
    for arch, init, recipe in variants:
        mine = [r for r in rows if (r["arch"], r["init"], r["recipe"]) == (arch, init, recipe)]
        at = {s: [r for r in mine if r["subset"] == s] for s in (250, 877)}

        def plain(cells):  # metrics.json's plain_miou when TTA was on, else the only score
            return [r["plain_miou"] if r.get("plain_miou") not in (None, "") else r["miou"] for r in cells]

        minutes = {s: summary([r["train_seconds"] / 60 for r in at[s]]).split(" ±")[0] for s in at}
        print(f"| {arch} | {init} | {recipe} | {mine[0]['epochs']} | {summary(plain(at[250]))} | "
              f"{summary([r['miou'] for r in at[250]])} | {summary([r['iou_boundary'] for r in at[250]])} | "
              f"{summary(plain(at[877]))} | {summary([r['miou'] for r in at[877]])} | {minutes[250]} | "
              f"{minutes[877]} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_root", type=Path)
    parser.add_argument("page_dir", type=Path, nargs="?", default=Path("docs/results/recipes"))
    args = parser.parse_args()
    table(read_results(args.run_root), "Same epochs (10) for every recipe:")
    equal = args.run_root / "equal-time"
    if (equal / "results.csv").is_file():
        table(read_results(equal), "medium at the study recipe's training minutes:")
    args.page_dir.mkdir(parents=True, exist_ok=True)
    if (args.run_root / "training_curves.png").is_file():
        shrink(args.run_root / "training_curves.png", args.page_dir / "training_curves.png")
    print(f"\nfigures in {args.page_dir}")


if __name__ == "__main__":
    main()
