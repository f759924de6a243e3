"""Print the pretraining table of docs/results/pretraining.md's protocol section from the pretraining runs'
per-epoch records (their metrics.jsonl, committed beside the page), up to the epoch the study used.

    python studies/protocol_pretrainings.py docs/results/pretraining/protocol/pretrain [--epochs 20]

Wall time: under a second.

A run stopped before the end of its schedule (studies/pretraining_protocol.sh with USE_EPOCHS) has no metrics.json,
so everything comes from the epoch records: images per epoch from the step count, minutes at the run's median epoch
speed (an epoch that shared the CPU with other work, or spanned a pause, would overstate them), the held-out loss
and probe mIoU at each export.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from page_tables import MISSING, markdown_table  # noqa: E402  (beside this script)

from simseg.training.rundir import read_metrics  # noqa: E402


def records(run: Path, epochs: int) -> list[dict]:
    """The run's epoch records 0 .. epochs-1, each once (the last record of an epoch a resume repeated)."""
    by_epoch = {record["epoch"]: record for record in read_metrics(run)}
    missing = [e for e in range(epochs) if e not in by_epoch]
    if missing:
        sys.exit(f"protocol_pretrainings: {run} has no record of epoch {missing[0]}: it ran {len(by_epoch)} epochs")
    return [by_epoch[e] for e in range(epochs)]


def row(run: Path, epochs: int) -> list[str]:
    history = records(run, epochs)
    speed = statistics.median(r["images_per_s"] for r in history)
    images = round(statistics.median(r["images_per_s"] * r["seconds"] for r in history))  # per epoch
    probes = {r["epoch"] + 1: r["probe_miou"] for r in history if r.get("probe_miou") is not None}
    return [run.name, f"{images:,}", str(epochs), f"{images * epochs / speed / 60:.1f}", f"{speed:.0f}",
            f"{history[-1]['val_loss']:.3f}", ", ".join(f"{p:.3f} (e{e})" for e, p in sorted(probes.items()))
            or MISSING]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a folder of pretraining runs (each with its metrics.jsonl)")
    parser.add_argument("--epochs", type=int, default=20, help="the epochs the study used")
    args = parser.parse_args(argv)
    runs = sorted(p.parent for p in Path(args.folder).glob("*/metrics.jsonl"))
    if not runs:
        sys.exit(f"protocol_pretrainings: no run with a metrics.jsonl in {args.folder}")
    header = ["run", "images per epoch", "epochs used", "minutes at its median speed", "images/s (median epoch)",
              "held-out loss (last)", "probe mIoU"]
    print(markdown_table(header, [row(run, args.epochs) for run in runs]))


if __name__ == "__main__":
    main()
