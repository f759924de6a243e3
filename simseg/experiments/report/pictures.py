"""The run folders' own pictures in ``report.md``: each init's latest reconstruction grid and one cell's example
predictions, copied into ``SWEEP_DIR/figures/`` (atomically: a reader of the report never sees half a picture), and the
legend of the examples' colours from that cell's ``classes.json``."""

from __future__ import annotations

import re
from pathlib import Path

from simseg.data.label_set import IGNORE_COLOUR, LabelSet, read_run_label_set
from simseg.experiments.report.summary import init_info, init_order
from simseg.experiments.run_folders import examples_picture, latest_grid
from simseg.experiments.sweep.results import Row
from simseg.files import atomic_write


def copy_file(source: Path, destination: Path) -> None:
    """Copy bytes atomically (a reader of the report never sees half a picture)."""
    data = source.read_bytes()
    atomic_write(destination, lambda f: f.write(data))


def sanitise(label: str) -> str:
    """An init label as a file-name part: anything but letters, digits, '.', '_' and '-' becomes '_'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", label)


def copy_recon_grids(rows: list[Row], sweep: dict | None, sweep_dir: Path) -> dict[str, tuple[str, str]]:
    """Copy each init's latest reconstruction grid to ``figures/recon_<label>.png``; label -> (relative path,
    caption) of those copied. Init folders come from the rows' init_path, else from sweep.json's grid."""
    grid = (sweep or {}).get("grid") or {}
    paths = {**(grid.get("inits") or {}), **(grid.get("intermediate") or {})}
    info = init_info(rows)
    copied = {}
    for label in init_order(rows):
        folder = info[label].path or paths.get(label)
        if not folder or folder == "scratch":
            continue
        folder = Path(folder) if Path(folder).is_absolute() else sweep_dir / folder
        found = latest_grid(folder)
        if found:
            relative = f"figures/recon_{sanitise(label)}.png"
            copy_file(found[0], sweep_dir / relative)
            copied[label] = (relative, found[1])
    return copied


def copy_examples(rows: list[Row], sweep_dir: Path, label: str, subset: int, metric: str) -> dict:
    """Copy the ``examples.png`` of the arm ``label`` at ``subset`` (the arm picked by
    :func:`simseg.experiments.report.selection.example_arm`, never by a test score) to
    ``figures/examples.png``: of its seeds, the first in seed order whose folder has the picture. Returns what the
    caption needs: seed, the cell's ``metric`` (its test mIoU in the report's view) and classes (its run's label
    set), each None when no seed has the picture."""
    for row in sorted((r for r in rows if (r["init"], r["subset"]) == (label, subset)), key=lambda r: r["seed"]):
        run_dir = sweep_dir / (row["run_dir"] or f"cells/{row['cell']}")
        examples = examples_picture(run_dir)
        if examples is not None:
            copy_file(examples, sweep_dir / "figures" / "examples.png")
            return {"seed": row["seed"], "miou": row.get(metric), "classes": read_run_label_set(run_dir)}
    return {"seed": None, "miou": None, "classes": None}


def colour_legend(classes: LabelSet) -> str:
    """Which colour is which class in the example pictures, e.g. ``background #000000, pet #ff9900, ...``."""
    def hex_colour(colour: tuple[int, int, int]) -> str:
        return "#" + "".join(f"{value:02x}" for value in colour)

    return ", ".join(f"{name} {hex_colour(colour)}" for name, colour in zip(classes.names, classes.colours)) \
        + f"; unlabelled pixels {hex_colour(IGNORE_COLOUR)}"
