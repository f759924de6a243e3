"""The value of one sweep axis that the validation set chooses, for a study script's next step.

    python studies/choose_on_validation.py SWEEP_DIR AXIS [--subset 250] [--where recipe=mild ...]

Prints the value (alone, on stdout) whose cells have the best mean validation mIoU (``val_miou``, the best
validation epoch of each cell) and, on stderr, every value's mean validation and plain test mIoU. The test
scores are shown, never used. AXIS is a results column (``recipe``, ``img_size``, ``init``, ``arch``) or
``pretrained_epochs``: inits named ``eN-sK`` (the export after N epochs of pretraining seed K) pooled over K, so an
export is chosen for every pretraining seed at once. ``--where COLUMN=VALUE[,VALUE...]`` keeps only the cells with
one of those values (the export chosen at the recipe already chosen; the size chosen on given inits and seeds).
Wall time: under a second.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import defaultdict

import numpy as np

from simseg.errors import SimsegError
from simseg.experiments.sweep.results import read_results

EXPORT_LABEL = re.compile(r"^e(\d+)-s\d+$")


def value_of(row: dict, axis: str) -> str | None:
    if axis == "pretrained_epochs":
        found = EXPORT_LABEL.match(str(row["init"]))
        return found.group(1) if found else None
    return None if row.get(axis) is None else str(row[axis])


def choose(rows: list[dict], axis: str, subset: int | None = None,
           where: dict[str, str] | None = None) -> tuple[str, dict[str, tuple[float, float, int]]]:
    """(the chosen value, {value: (mean val mIoU, mean plain test mIoU, cells)}) over the rows of ``subset`` whose
    columns hold one of the values of ``where`` (column -> comma-separated values)."""
    val, test = defaultdict(list), defaultdict(list)
    for row in rows:
        value = value_of(row, axis)
        if value is None or (subset is not None and row["subset"] != subset):
            continue
        if any(str(row.get(column)) not in wanted.split(",") for column, wanted in (where or {}).items()):
            continue
        if row.get("val_miou") is None:
            raise SimsegError(f"cell {row['cell']} has no validation score: the sweep needs --val-size > 0")
        val[value].append(row["val_miou"])
        test[value].append(row["miou_plain"])
    if not val:
        raise SimsegError(f"no cells with a value of {axis!r}" + (f" at subset {subset}" if subset else "")
                          + "".join(f" and {k}={v}" for k, v in (where or {}).items())
                          + ": check the names and values against results.csv's columns")
    table = {v: (float(np.mean(val[v])), float(np.mean(test[v])), len(val[v])) for v in val}
    return max(table, key=lambda v: table[v][0]), table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir")
    parser.add_argument("axis")
    parser.add_argument("--subset", type=int)
    parser.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE[,VALUE...]",
                        help="only the cells with one of these values in this column (repeatable)")
    args = parser.parse_args(argv)
    try:
        where = dict(part.split("=", 1) for part in args.where if "=" in part)
        if len(where) != len(args.where):
            raise SimsegError(f"--where {' '.join(args.where)}: give COLUMN=VALUE, e.g. --where recipe=mild")
        chosen, table = choose(read_results(args.sweep_dir), args.axis, args.subset, where)
    except SimsegError as err:
        sys.exit(f"choose_on_validation: {err}")
    for value, (val, test, cells) in sorted(table.items(), key=lambda item: -item[1][0]):
        mark = "  <- chosen" if value == chosen else ""
        print(f"{args.axis}={value}: validation mIoU {val:.4f}, test mIoU (plain) {test:.4f}, {cells} cells{mark}",
              file=sys.stderr)
    print(chosen)


if __name__ == "__main__":
    main()
