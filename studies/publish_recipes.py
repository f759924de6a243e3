"""Print the tables of docs/results/recipes.md from a studies/recipes.sh folder and copy its figures there, at sizes
a repository can hold.

    python studies/publish_recipes.py ../simseg-recipes-cpu [docs/results/recipes]     # the last step of recipes.sh

Wall time: not recorded (it reads two results.csv files and the cells' metrics.jsonl, and draws one figure).

Tables: per model, init and recipe, test mIoU without and with test-time augmentation at 250 labelled images (mean
± std over seeds) and at 877, boundary IoU and training minutes, at the same epochs; then the medium recipe at the
study recipe's training minutes (OUT/equal-time). Figure: recipe_curves.png, test mIoU (plain) against training
minutes at 250 labelled images, one panel per model and init, one line per recipe (mean over seeds), medium at
equal minutes dashed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from page_tables import markdown_table, summary  # noqa: E402  (beside this script)
from publish_report import shrink  # noqa: E402  (the results page's picture shrinker)

from simseg.experiments.report.figures import PALETTE, STYLE, save_png, training_curves  # noqa: E402
from simseg.experiments.sweep.results import as_reported, read_results  # noqa: E402
from simseg.training.plots import plt  # noqa: E402  (the Agg backend first)

RECIPES = ("study", "mild", "medium")
CURVE_SUBSET = 250  # the size with three seeds
MODELS = ("vit_linear", "vit_fused_skip")  # the study's ViT first, then the best decoder of models.md


def recipe_rank(recipe: str) -> int:
    return RECIPES.index(recipe) if recipe in RECIPES else len(RECIPES)


def variant_order(variant: tuple) -> tuple:
    """(model, init[, recipe]) as the page lists them: the study's ViT first, scratch first, recipes by strength."""
    arch, init, *recipe = variant
    return (MODELS.index(arch) if arch in MODELS else len(MODELS), arch, init != "scratch", *map(recipe_rank, recipe))


def table(rows: list[dict], title: str) -> None:
    print(f"\n{title}\n")
    body = []
    for arch, init, recipe in sorted({(r["arch"], r["init"], r["recipe"]) for r in rows}, key=variant_order):
        mine = [r for r in rows if (r["arch"], r["init"], r["recipe"]) == (arch, init, recipe)]
        at = {s: [r for r in mine if r["subset"] == s] for s in (250, 877)}

        def view(cells, column):  # the cells that have the figure (a TTA figure only where TTA ran)
            return summary([r[column] for r in cells if r[column] is not None])

        minutes = {s: summary([r["train_seconds"] / 60 for r in at[s]]).split(" ±")[0] for s in at}
        body.append([arch, init, recipe, str(mine[0]["epochs"]), view(at[250], "miou_plain"), view(at[250], "miou_tta"),
                     summary([as_reported(r, "iou_boundary") for r in at[250]]),  # with TTA where it ran
                     view(at[877], "miou_plain"), view(at[877], "miou_tta"), minutes[250], minutes[877]])
    print(markdown_table(["model", "init", "recipe", "epochs", "mIoU @250", "mIoU @250 with TTA", "boundary IoU @250",
                          "mIoU @877", "mIoU @877 with TTA", "training min @250", "training min @877"], body,
                         text_columns=3))


def recipe_curves(rows: list[dict], run_root: Path, label_suffix: str = "") -> dict:
    """(model, init) -> {recipe label: [(training minutes, mean test mIoU)]} at CURVE_SUBSET labelled images, from
    the cells' metrics.jsonl through the report's own averaging (each recipe relabelled as an init of its own)."""
    panels: dict[tuple[str, str], dict] = {}
    for arch, init in sorted({(r["arch"], r["init"]) for r in rows}, key=variant_order):
        mine = [{**r, "init": r["recipe"] + label_suffix, "base_init": None} for r in rows
                if (r["arch"], r["init"], r["subset"]) == (arch, init, CURVE_SUBSET)]
        panels[arch, init] = training_curves(mine, run_root)[0] if mine else {}
    return panels


def plot_recipe_curves(equal_epochs: dict, equal_minutes: dict, path: Path) -> None:
    colours = {recipe: PALETTE[i] for i, recipe in enumerate(RECIPES)}
    keys = list(equal_epochs)
    columns = min(2, len(keys))
    panel_rows = -(-len(keys) // columns)
    with plt.rc_context(STYLE):
        # each panel its own y range: the recipes differ by hundredths, the models and inits by tenths
        fig, axes = plt.subplots(panel_rows, columns, figsize=(6.5, 2.8 * panel_rows), squeeze=False)
        for ax in axes.flat[len(keys):]:
            ax.set_visible(False)
        for ax, key in zip(axes.flat, keys):
            lines = [*equal_epochs[key].items(), *equal_minutes.get(key, {}).items()]
            for label, curve in sorted(lines, key=lambda line: recipe_rank(line[0].partition(" ")[0])):
                recipe, _, note = label.partition(" ")
                ax.plot(*zip(*curve), label=label, color=colours.get(recipe, "black"), marker="o",
                        linestyle="--" if note else "-")
            ax.set_title(f"{key[0]}, {key[1]}")
            ax.set_xlabel("training minutes")
            ax.set_ylabel("test mIoU (evaluated epochs)")
        axes.flat[0].legend(loc="lower right")
        fig.suptitle(f"Test mIoU against training minutes per recipe, {CURVE_SUBSET} labelled pets (mean over seeds)")
        save_png(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_root", type=Path)
    parser.add_argument("page_dir", type=Path, nargs="?", default=Path("docs/results/recipes"))
    args = parser.parse_args()
    rows = read_results(args.run_root)
    table(rows, "Same epochs (10) for every recipe:")
    curves, equal_minutes = recipe_curves(rows, args.run_root), {}
    equal = args.run_root / "equal-time"
    if (equal / "results.csv").is_file():
        equal_rows = read_results(equal)
        table(equal_rows, "medium at the study recipe's training minutes:")
        equal_minutes = recipe_curves(equal_rows, equal, f" ({equal_rows[0]['epochs']} epochs)")
    args.page_dir.mkdir(parents=True, exist_ok=True)
    plot_recipe_curves(curves, equal_minutes, args.run_root / "recipe_curves.png")
    shrink(args.run_root / "recipe_curves.png", args.page_dir / "recipe_curves.png")
    for name in ("training_curves.png", "miou_vs_subset.png"):
        if (args.run_root / name).is_file():
            shrink(args.run_root / name, args.page_dir / name)
    print(f"\nfigures in {args.page_dir}")


if __name__ == "__main__":
    main()
