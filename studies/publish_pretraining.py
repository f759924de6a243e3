"""Print the tables of docs/results/pretraining.md from a studies/pretraining.sh (or studies/pretraining_budget.sh)
folder and put its figures there, at sizes a repository can hold.

    python studies/publish_pretraining.py ../simseg-pretraining-cpu [docs/results/pretraining] [--pretrain-all RUN]
        [--curve-run mae-pets]                                   # the last step of pretraining.sh

Wall time: not recorded (it reads the runs' JSON and CSV files and draws one figure).

Tables: the pretraining runs (method, images, epochs, minutes, images/s, held-out loss, last probe mIoU); the cells
per model and init (test mIoU plain and with TTA, boundary IoU at 250 labelled pets, mean ± std over seeds, and at
877, with training minutes); the issue's three targets for the best pretrained vit_fused_skip; each model
and init fine-tuned at 128, 160 and 192 px (the cells-SIZE folders); the linear probe of
each init's encoder beside its fine-tuned score, and their rank correlation. Figures: budget_curve.png (test mIoU
at 250 against pretraining minutes, from the intermediate exports of --curve-run, the cells' inits named RUN-eN,
with the linear probe of the same exports beside it) and each pretraining's last reconstruction grid.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from page_tables import MISSING, markdown_table, summary  # noqa: E402  (beside this script)
from publish_report import shrink  # noqa: E402  (the results page's picture shrinker)

from simseg.experiments.report.figures import PALETTE, STYLE, save_png  # noqa: E402
from simseg.experiments.run_folders import method_of_run  # noqa: E402
from simseg.experiments.sweep.results import as_reported, read_results  # noqa: E402
from simseg.training.plots import plt  # noqa: E402  (the Agg backend first)

MODELS = ("vit_linear", "vit_fused_skip", "unet_resnet18")
INITS = ("scratch", "pretrain-all", "simmim32", "mae", "mae-pets-e4", "mae-pets-e8", "mae-pets", "simmim32-pets")
CURVE_INIT = re.compile(r"(?P<run>.+)-e(?P<epochs>\d+)")  # RUN-eN: RUN's export after N epochs


def plain(cells: list[dict]) -> list[float]:
    """The plain view's test mIoU of each cell."""
    return [r["miou_plain"] for r in cells]


def with_tta(cells: list[dict]) -> list[float]:
    """The TTA view's test mIoU of each cell that ran it."""
    return [r["miou_tta"] for r in cells if r["miou_tta"] is not None]


def boundary_class(cells: list[dict]) -> list[float]:
    """The IoU of the pets' boundary class as the cells reported it (with TTA where they ran it)."""
    return [as_reported(r, "iou_boundary") for r in cells]


def order(variant: tuple[str, str]) -> tuple:
    arch, init = variant
    return (MODELS.index(arch) if arch in MODELS else len(MODELS), INITS.index(init) if init in INITS else 99, init)


def pretraining_table(runs: list[Path]) -> None:
    body = []
    for run in runs:
        final = json.loads((run / "metrics.json").read_text())
        history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        method = method_of_run(run)
        probes = [r["probe_miou"] for r in history if "probe_miou" in r]
        # The median epoch's speed: an epoch that shared the CPU with another job would overstate the minutes.
        speed = statistics.median(r["images_per_s"] for r in history)
        body.append([run.name, method, f"{final['train_images']:,}", str(final["epochs"]),
                     f"{final['train_images'] * final['epochs'] / speed / 60:.1f}", f"{speed:.0f}",
                     f"{final['final_val_loss']:.3f}", f"{probes[-1]:.3f}" if probes else MISSING])
    header = ["run", "method", "images", "epochs", "minutes at its median speed", "images/s (median epoch)",
              "held-out loss", "probe mIoU (last)"]
    print("\n" + markdown_table(header, body, text_columns=2))


def cells_table(rows: list[dict]) -> None:
    body = []
    for arch, init in sorted({(r["arch"], r["init"]) for r in rows}, key=order):
        at = {s: [r for r in rows if (r["arch"], r["init"], r["subset"]) == (arch, init, s)] for s in (250, 877)}
        minutes = summary([r["train_seconds"] / 60 for r in at[250]]).split(" ±")[0]
        body.append([arch, init, summary(plain(at[250])), summary(with_tta(at[250])),
                     summary(boundary_class(at[250])), summary(plain(at[877])), summary(boundary_class(at[877])),
                     minutes])
    print("\n" + markdown_table(["model", "init", "mIoU @250", "mIoU @250 with TTA", "boundary IoU @250", "mIoU @877",
                                 "boundary IoU @877", "training min @250"], body, text_columns=2))


def targets(rows: list[dict]) -> None:
    """The issue's targets at 250 labelled pets, three-seed means of the plain score (TTA in brackets)."""
    def mean(arch: str, init: str, figures=plain) -> float | None:
        cells = [r for r in rows if (r["arch"], r["init"], r["subset"]) == (arch, init, 250)]
        values = figures(cells)
        return statistics.mean(values) if values else None

    pretrained = [i for i in sorted({r["init"] for r in rows} - {"scratch"}) if mean("vit_fused_skip", i) is not None]
    if not pretrained:
        return
    best = max(pretrained, key=lambda i: mean("vit_fused_skip", i))
    vit, unet, scratch = (mean("vit_fused_skip", best), mean("unet_resnet18", "scratch"),
                          mean("vit_fused_skip", "scratch"))
    print(f"\nbest pretrained vit_fused_skip at 250: {best}, mIoU {vit:.3f}")
    if unet is not None:
        print(f"- over U-Net-R18 from scratch at equal minutes: {vit - unet:+.3f} (target >= +0.03)")
    if scratch is not None:
        print(f"- over the same model from scratch: {vit - scratch:+.3f} (target >= +0.06)")
    print(f"- boundary IoU: {mean('vit_fused_skip', best, boundary_class):.3f} (target >= 0.3)")


def size_table(rows: list[dict], run_root: Path) -> None:
    """Each model and init fine-tuned at 128 px (the main cells) and at 160 and 192 px (the cells-SIZE sweeps: a
    128-px export's position embedding resampled at load) at 250 labelled pets, with the training minutes against
    the same model and init at 128 px."""
    sizes = {size: read_results(run_root / f"cells-{size}") for size in (160, 192)
             if (run_root / f"cells-{size}").is_dir()}
    if not sizes:
        return
    variants = sorted({(r["arch"], r["init"]) for cells in sizes.values() for r in cells}, key=order)
    body = []
    for arch, init in variants:
        at = {size: [r for r in cells if (r["arch"], r["init"], r["subset"]) == (arch, init, 250)]
              for size, cells in {128: rows, **sizes}.items()}
        base = statistics.mean(r["train_seconds"] for r in at[128]) if at[128] else None
        for size, cells in at.items():
            if cells:
                seconds = statistics.mean(r["train_seconds"] for r in cells)
                ratio = f"{seconds / base:.2f}×" if base else MISSING
                body.append([arch, init, str(size), str(len(cells)), summary(plain(cells)),
                             summary(with_tta(cells)), summary(boundary_class(cells)), f"{seconds / 60:.2f}", ratio])
    print("\n" + markdown_table(["model", "init", "fine-tuning size", "seeds", "mIoU @250", "mIoU @250 with TTA",
                                 "boundary IoU @250", "training min", "minutes against 128 px"], body, text_columns=2))


def cumulative_minutes(run: Path) -> dict[int, float]:
    """Pretraining minutes at the end of each epoch at the run's median epoch time (from its metrics.jsonl), so that
    an epoch slowed by another job does not bend the curve."""
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epoch_minutes = statistics.median(r["seconds"] for r in history) / 60
    return {r["epoch"]: (r["epoch"] + 1) * epoch_minutes for r in history}


def export_epochs(rows: list[dict], run_name: str) -> dict[str, int]:
    """The cells' inits that are run_name's intermediate exports (named RUN-eN), each with its 0-based epoch."""
    matches = (CURVE_INIT.fullmatch(r["init"]) for r in rows)
    return {m[0]: int(m["epochs"]) - 1 for m in matches if m and m["run"] == run_name}


def probe_ranking(rows: list[dict], runs: list[Path]) -> None:
    """Each init's linear probe (its run's probe_exports.json: the export it started from) beside its fine-tuned
    vit_fused_skip score at 250, and Spearman's rank correlation between the two."""
    from scipy.stats import spearmanr

    probes = {}
    for run in runs:
        if not (run / "probe_exports.json").is_file():
            continue
        entries = json.loads((run / "probe_exports.json").read_text())
        probes["scratch"] = entries[0]["probe_miou"]  # the untrained encoder (the same for every run of a seed)
        probes[run.name] = entries[-1]["probe_miou"]
        for init, epoch in export_epochs(rows, run.name).items():
            probes[init] = next(e["probe_miou"] for e in entries if e["epoch"] == epoch)
    pairs, body = [], []
    for init in sorted(probes, key=lambda i: INITS.index(i) if i in INITS else 99):
        scores = plain([r for r in rows if (r["arch"], r["init"], r["subset"]) == ("vit_fused_skip", init, 250)])
        if scores:
            pairs.append((probes[init], statistics.mean(scores)))
            body.append([init, f"{probes[init]:.3f}", f"{statistics.mean(scores):.3f}"])
    print("\n" + markdown_table(["init", "probe mIoU (frozen encoder)", "fine-tuned vit_fused_skip mIoU @250"], body))
    if len(pairs) >= 3:
        print(f"\nSpearman rank correlation over {len(pairs)} inits: {spearmanr(*zip(*pairs)).statistic:.2f}")


def budget_curve(rows: list[dict], run: Path, path: Path) -> None:
    """Test mIoU of vit_fused_skip at 250 (mean and seeds) against the minutes of pretraining its init had, beside
    the linear probe of the same exports (studies/probe_exports.py)."""
    minutes = {-1: 0.0, **cumulative_minutes(run)}
    final_epoch = max(minutes)
    points = {"scratch": -1, **export_epochs(rows, run.name), run.name: final_epoch}
    with plt.rc_context(STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
        xs, means = [], []
        for init, epoch in sorted(points.items(), key=lambda item: item[1]):
            scores = plain([r for r in rows if (r["arch"], r["init"], r["subset"]) == ("vit_fused_skip", init, 250)])
            if not scores:
                continue
            x = minutes[epoch]
            left.scatter([x] * len(scores), scores, color=PALETTE[0], alpha=0.35, s=14)
            xs.append(x)
            means.append(statistics.mean(scores))
        left.plot(xs, means, color=PALETTE[0], marker="o", label="vit_fused_skip, mild, TTA off")
        left.set_xlabel(f"{run.name} pretraining minutes (2-core CPU)")
        left.set_ylabel("test mIoU, 250 labelled pets")
        left.set_title("Fine-tuned: mean and seeds")
        probe_file = run / "probe_exports.json"
        if probe_file.is_file():
            probes = json.loads(probe_file.read_text())
            at = [minutes[p["epoch"]] for p in probes]
            right.plot(at, [p["probe_miou"] for p in probes], color=PALETTE[1], marker="o", label="probe mIoU")
            right.plot(at, [p["probe_boundary_iou"] or 0.0 for p in probes], color=PALETTE[2], marker="s",
                       label="probe boundary IoU")
            right.legend(loc="lower right")
        right.set_xlabel(f"{run.name} pretraining minutes (2-core CPU)")
        right.set_ylabel("linear probe, frozen encoder")
        right.set_title("Linear probe of the same exports")
        fig.suptitle(f"The pretraining-budget curve of {run.name}")
        save_png(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_root", type=Path)
    parser.add_argument("page_dir", type=Path, nargs="?", default=Path("docs/results/pretraining"))
    parser.add_argument("--pretrain-all", type=Path, help="the study's SimMIM run, when it lies outside run_root")
    parser.add_argument("--curve-run", default="mae-pets",
                        help="the pretraining whose exports (inits named RUN-eN) draw the budget curve")
    args = parser.parse_args()
    pretrain_root, cells = args.run_root / "pretrain", args.run_root / "cells"
    runs = sorted(p for p in pretrain_root.iterdir() if (p / "metrics.json").is_file())
    if args.pretrain_all and args.pretrain_all.resolve() not in [r.resolve() for r in runs]:
        runs.insert(0, args.pretrain_all)
    pretraining_table(runs)
    rows = read_results(cells)
    cells_table(rows)
    targets(rows)
    size_table(rows, args.run_root)
    probe_ranking(rows, runs)
    args.page_dir.mkdir(parents=True, exist_ok=True)
    curve_run = pretrain_root / args.curve_run
    if (curve_run / "metrics.json").is_file():
        budget_curve(rows, curve_run, args.run_root / "budget_curve.png")
        shrink(args.run_root / "budget_curve.png", args.page_dir / "budget_curve.png")
    else:
        print(f"\nno finished pretraining {curve_run}: no budget curve (--curve-run names one under {pretrain_root})")
    for run in runs:
        grids = sorted((run / "grids").glob("epoch_*.png"))
        if grids:
            shrink(grids[-1], args.page_dir / f"recon_{run.name}.png")
        if (run / "probe.png").is_file():
            shrink(run / "probe.png", args.page_dir / f"probe_{run.name}.png")
    for name in ("miou_vs_subset.png", "training_curves.png"):
        if (cells / name).is_file():
            shrink(cells / name, args.page_dir / name)
    print(f"\nfigures in {args.page_dir}")


if __name__ == "__main__":
    main()
