"""The run folders' own pictures in ``report.md``: each init's latest reconstruction grid and the best cell's
examples, copied into ``SWEEP_DIR/figures/`` (atomically: a reader of the report never sees half a picture), and the
legend of the examples' colours from that cell's ``classes.json``."""

from __future__ import annotations

import re
from pathlib import Path

from simseg.data.label_set import IGNORE_COLOUR, LabelSet, read_run_label_set
from simseg.experiments.report.summary import init_info, init_order, summarise
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


def copy_best_examples(rows: list[Row], sweep_dir: Path) -> dict:
    """Copy the best cell's ``examples.png`` to ``figures/best_examples.png``. Best = highest mean mIoU of an
    (init, subset); of its seeds, the one with the highest mIoU whose folder has the picture. Returns what the
    caption needs: init, subset, summary, and seed, miou and classes (its run's label set) of the copied picture
    (None when there was none)."""
    stats = summarise(rows)
    (init, subset), best = max(stats.items(), key=lambda item: item[1].mean)  # max keeps the first of ties
    seeds = sorted((r for r in rows if (r["init"], r["subset"]) == (init, subset)), key=lambda r: -r["miou"])
    for row in seeds:
        run_dir = sweep_dir / (row["run_dir"] or f"cells/{row['cell']}")
        examples = examples_picture(run_dir)
        if examples is not None:
            copy_file(examples, sweep_dir / "figures" / "best_examples.png")
            return {"init": init, "subset": subset, "summary": best, "seed": row["seed"], "miou": row["miou"],
                    "classes": read_run_label_set(run_dir)}
    return {"init": init, "subset": subset, "summary": best, "seed": None, "miou": None, "classes": None}


def colour_legend(classes: LabelSet) -> str:
    """Which colour is which class in the example pictures, e.g. ``background #000000, pet #ff9900, ...``."""
    def hex_colour(colour: tuple[int, int, int]) -> str:
        return "#" + "".join(f"{value:02x}" for value in colour)

    return ", ".join(f"{name} {hex_colour(colour)}" for name, colour in zip(classes.names, classes.colours)) \
        + f"; unlabelled pixels {hex_colour(IGNORE_COLOUR)}"
