"""The tables of docs/results/own_data.md from the committed per-seed results beside it:

    python studies/publish_own_data.py docs/results/own_data/results.csv

Wall time: under a second on the 2-core CPU (0.2 s for the committed results.csv).

prints, per init and labelled-subset size, the mean (and sample std over seeds) of the test mIoU (plain and with
TTA), the pet class's IoU (as reported: with TTA) and the Boundary IoU (plain); then the pretrained init's gain
over scratch at 250 labelled images, paired by seed, with a 95% t-interval over the seeds (a gain whose interval
holds zero is no finding).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from page_tables import markdown_table, summary  # noqa: E402  (beside this script)

from simseg.experiments.sweep.columns import upgrade_old_columns  # noqa: E402

T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}  # Student's t, two-sided 95%, by degrees of freedom


def read_rows(path: str) -> list[dict]:
    """The rows in today's column names (the committed table has the columns of earlier versions)."""
    with open(path, newline="", encoding="utf-8") as file:
        return [upgrade_old_columns(row) for row in csv.DictReader(file)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", help="the sweep's results.csv")
    rows = read_rows(parser.parse_args().results)
    cells: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for row in rows:
        cells[(row["init"], int(row["subset"]))].append(row)
    columns = [("miou_plain", "mIoU"), ("miou_tta", "mIoU with TTA"), ("iou_pet_tta", "IoU pet with TTA"),
               ("boundary_iou_plain", "Boundary IoU")]
    body = []
    for (init, subset), group in sorted(cells.items(), key=lambda item: (item[0][1], item[0][0] != "scratch")):
        figures = [summary([float(r[key]) for r in group]) for key, _ in columns]
        minutes = statistics.mean(float(r["train_seconds"]) / 60 for r in group)
        body.append([init, str(subset), str(len(group)), *figures, f"{minutes:.2f}"])
    print(markdown_table(["init", "labelled", "seeds", *(title for _, title in columns), "training min"], body))
    print()
    scratch = {int(r["seed"]): r for r in cells.get(("scratch", 250), [])}
    for (init, subset), group in sorted(cells.items()):
        paired = [(r, scratch[int(r["seed"])]) for r in group if init != "scratch" and subset == 250
                  and int(r["seed"]) in scratch]
        for key, title in columns[:1] + columns[2:]:
            gains = [float(r[key]) - float(s[key]) for r, s in paired]
            if len(gains) < 2:
                continue
            mean, half = statistics.mean(gains), T_975[len(gains) - 1] * statistics.stdev(gains) / len(gains) ** 0.5
            verdict = "above zero" if mean - half > 0 else "below zero" if mean + half < 0 else "within noise"
            print(f"{init} over scratch at 250, {title}: {mean:+.3f} (95% interval {mean - half:+.3f} .. "
                  f"{mean + half:+.3f}, {len(gains)} seeds paired): {verdict}")


if __name__ == "__main__":
    main()
