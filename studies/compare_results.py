"""Two runs of the CPU-scale study side by side: test mIoU per init and labelled-subset size (mean ± std over
seeds), the difference, and each step's wall time from the runs' timings.tsv.

    python studies/compare_results.py docs/results ../simseg-study-cpu [--names "per image,batched"]

Each argument is a folder holding results.csv (a sweep folder, or docs/results with the published copy) and,
optionally, timings.tsv (written by studies/report.sh). Used for docs/performance.md's "The CPU-scale study on the
batched path". Wall time: not recorded (it reads two CSV files).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from page_tables import MISSING, markdown_table, summary  # noqa: E402  (beside this script)

from simseg.experiments.sweep.columns import upgrade_old_columns  # noqa: E402


def cells(folder: Path) -> dict[tuple[str, int], list[float]]:
    """{(init, subset): test mIoU (the plain view) of each seed}; a results.csv in today's columns or in those of
    earlier versions (docs/results' copy)."""
    scores: dict[tuple[str, int], list[float]] = {}
    with open(folder / "results.csv") as file:
        for row in map(upgrade_old_columns, csv.DictReader(file)):
            scores.setdefault((row["init"], int(row["subset"])), []).append(float(row["miou_plain"]))
    return scores


def timings(folder: Path) -> dict[str, float]:
    path = folder / "timings.tsv"
    if not path.is_file():
        return {}
    rows = (line.split("\t") for line in path.read_text().splitlines() if line.strip())
    return {name: float(seconds) for name, seconds in rows}


def shown(values: list[float]) -> str:
    return summary(values) + (f" (n={len(values)})" if len(values) > 1 else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--names", default="before,after", help="the two runs' names in the tables")
    args = parser.parse_args()
    first, second = args.names.split(",")
    old, new = cells(args.before), cells(args.after)
    body = []
    for key in sorted(old.keys() | new.keys(), key=lambda k: (k[1], k[0])):
        a, b = old.get(key, []), new.get(key, [])
        delta = f"{statistics.mean(b) - statistics.mean(a):+.3f}" if a and b else MISSING
        body.append([key[0], str(key[1]), shown(a), shown(b), delta])
    print(markdown_table(["init", "labelled images", first, second, "difference of the means"], body))
    before, after = timings(args.before), timings(args.after)
    if before or after:
        steps = [[name, *(f"{t[name] / 60:.1f} min" if name in t else MISSING for t in (before, after))]
                 for name in [*before, *(n for n in after if n not in before)]]
        steps.append(["total", *(f"{sum(t.values()) / 60:.1f} min" for t in (before, after))])
        print("\n" + markdown_table(["step of studies/report.sh", first, second], steps))


if __name__ == "__main__":
    main()
