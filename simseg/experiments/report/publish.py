"""``simseg report SWEEP_DIR --publish DIR``: the light copy of a sweep that a results page commits beside it.

A page's tables must be recomputable by anyone from what the repository holds, without the weights: DIR receives
the sweep's results table and ``sweep.json``, and, for every cell the table lists, the files the report reads from a
cell folder, at the same relative paths::

    DIR/results.csv, DIR/sweep.json
    DIR/cells/.../seed-S/metrics.json        every figure of the cell (plain / TTA, native / input)
    DIR/cells/.../seed-S/metrics.jsonl       its per-epoch records (the training curves)
    DIR/cells/.../seed-S/test_scores.npz     its per-image counts (the paired intervals)

so that ``simseg report DIR`` (and a page's ``<!-- simseg report DIR ... -->`` blocks) give the sweep's tables.
About 20 KB per cell; checkpoints, exports and pictures stay behind.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from simseg.errors import SimsegError
from simseg.experiments.sweep.results import read_results, results_path
from simseg.files import atomic_write

CELL_FILES = ("metrics.json", "metrics.jsonl", "test_scores.npz")


def copy_atomically(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    with source.open("rb") as file:
        atomic_write(destination, lambda out: shutil.copyfileobj(file, out))


def check_destination(sweep_dir: Path, destination: Path) -> None:
    """Refuse, before anything is written, to publish a sweep into itself."""
    if Path(destination).resolve() == Path(sweep_dir).resolve():
        raise SimsegError(f"--publish {destination} is the sweep folder itself: give another folder (e.g. beside "
                          f"the page, docs/results/NAME)")


def publish_results(sweep_dir: str | Path, destination: str | Path) -> list[Path]:
    """Copy the results table, sweep.json and each listed cell's :data:`CELL_FILES` (those it has) into
    ``destination``; returns the files written. Every file is written atomically; nothing else there is touched."""
    sweep_dir, destination = Path(sweep_dir), Path(destination)
    check_destination(sweep_dir, destination)
    table, rows = results_path(sweep_dir), read_results(sweep_dir)
    written = []
    for path in (table, sweep_dir / "sweep.json"):
        if path.is_file():
            copy_atomically(path, destination / path.name)
            written.append(destination / path.name)
    for row in rows:
        relative = Path(row.get("run_dir") or "")
        if not row.get("run_dir") or relative.is_absolute() or ".." in relative.parts:
            continue  # a hand-written row, or a cell outside the sweep folder: only the table travels
        for name in CELL_FILES:
            if (sweep_dir / relative / name).is_file():
                copy_atomically(sweep_dir / relative / name, destination / relative / name)
                written.append(destination / relative / name)
    return written
