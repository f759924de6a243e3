"""The sweep's grid: [models x augmentation presets x] initialisations x labelled-subset sizes x seeds, its shards
and its cells' records (the results table they make: :mod:`simseg.experiments.results`).

Pure functions and small records; :mod:`simseg.experiments.sweep` runs the cells. A sweep folder holds::

    sweep.json                         the grid, the segmentation config and the commands that ran it
    results.csv, results.jsonl         one row per finished cell, rebuilt from the cell folders after every cell
    pretrain-<size>/                   pretraining runs made by --pretrain-subsets
    cells/<init>/subset-<n>/seed-<s>/  one segmentation run per cell, with cell.json saying what the cell is
    cells/<arch>/<aug>/<init>/...      the same with --models and --aug (each part only when its axis is swept)

The results are a function of the finished cell folders, rewritten whole (temp file, then rename): a killed sweep,
two shards writing into one folder, or a rerun can neither lose nor duplicate a row.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from simseg.errors import SimsegError
from simseg.files import atomic_write_text
from simseg.sizes import format_size, parse_size

CELL_RECORD = "cell.json"


@dataclass(frozen=True)
class Init:
    """Where a cell's encoder comes from: ``scratch`` or a run folder, with what the report groups it by."""
    label: str
    path: str  # "scratch" or the run folder's absolute path
    pretrain_images: int | None = None  # unlabelled images of the pretraining behind it
    intermediate: bool = False  # went through intermediate classification
    base_init: str | None = None  # for an intermediate init: the label of the init it was trained from


def cell_name(init_label: str, subset: int, seed: int, arch: str | None = None, aug: str | None = None,
              recipe: str | None = None) -> str:
    """A cell's name and folder under ``cells/``: ``pretrain-45k/subset-1k/seed-0``, with ``unet_resnet18/heavy/``
    (and ``mild/``) in front when the sweep has a model (``arch``), augmentation (``aug``) or recipe axis."""
    variant = "".join(f"{part}/" for part in (arch, aug, recipe) if part)
    return f"{variant}{init_label}/subset-{format_size(subset)}/seed-{seed}"


@dataclass(frozen=True)
class Cell:
    init: Init
    subset: int
    seed: int
    arch: str | None = None  # model.arch, when the sweep has a model axis
    aug: str | None = None  # aug.preset, when the sweep has an augmentation axis
    recipe: str | None = None  # recipe, when the sweep has a recipe axis

    @property
    def name(self) -> str:
        return cell_name(self.init.label, self.subset, self.seed, self.arch, self.aug, self.recipe)

    def run_dir(self, sweep_dir: Path) -> Path:
        return sweep_dir / "cells" / self.name


def parse_list(text: str, option: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]``; empty items and duplicates are refused."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or not all(items):
        raise SimsegError(f"{option} '{text}' has an empty item: give a comma-separated list, e.g. {option} 250,500")
    duplicated = sorted({item for item in items if items.count(item) > 1})
    if duplicated:
        raise SimsegError(f"{option} lists {duplicated[0]} twice: give each value once")
    return items


def parse_subsets(text: str, option: str = "--subsets") -> list[int]:
    """``"250,500,1k"`` -> ``[250, 500, 1000]`` (sorted)."""
    sizes = [parse_size(item, option) for item in parse_list(text, option)]
    if len(set(sizes)) < len(sizes):
        raise SimsegError(f"{option} '{text}' names one size twice (e.g. 1k and 1000): give each size once")
    return sorted(sizes)


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(item) for item in parse_list(text, "--seeds")]
    except ValueError:
        raise SimsegError(f"--seeds '{text}' must be whole numbers, e.g. --seeds 0,1,2") from None
    if min(seeds) < 0:
        raise SimsegError(f"--seeds '{text}' must be >= 0")
    return seeds


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"2/4"`` -> (1, 4): the 0-based index of the 2nd of 4 shards; None -> (0, 1), the whole grid."""
    if text is None:
        return 0, 1
    part, _, count = text.partition("/")
    try:
        index, total = int(part), int(count)
    except ValueError:
        index = total = 0
    if not 1 <= index <= total:
        raise SimsegError(f"--shard '{text}' must be i/n with 1 <= i <= n, e.g. --shard 1/4 ... --shard 4/4")
    return index - 1, total


def expand_grid(inits: list[Init], subsets: list[int], seeds: list[int], archs: list[str | None] = (None,),
                augs: list[str | None] = (None,), fits=lambda init, arch: True,
                recipes: list[str | None] = (None,)) -> list[Cell]:
    """Every (arch, aug, recipe, init, subset, seed) whose init ``fits`` the arch, smallest subsets first (cheap,
    most-wanted cells finish early), then models, presets, recipes and inits in the order given, then seeds."""
    return [Cell(init, subset, seed, arch, aug, recipe) for subset in sorted(subsets) for arch in archs
            for aug in augs for recipe in recipes for init in inits if fits(init, arch) for seed in seeds]


def shard_cells(cells: list, index: int, count: int) -> list:
    """The ``index``-th of ``count`` disjoint parts, dealt round-robin so every shard gets small and large cells."""
    return cells[index::count]


def write_cell_record(cell: Cell, sweep_dir: Path) -> None:
    """``cell.json`` in the cell's folder: what the cell is, so results can be rebuilt from the folders alone."""
    atomic_write_text(cell.run_dir(sweep_dir) / CELL_RECORD,
                      json.dumps({"init": asdict(cell.init), "subset": cell.subset, "seed": cell.seed,
                                  "arch": cell.arch, "aug": cell.aug, "recipe": cell.recipe}, indent=2))


def read_cell_record(path: Path) -> Cell:
    record = json.loads(path.read_text())
    return Cell(Init(**record["init"]), int(record["subset"]), int(record["seed"]), record.get("arch"),
                record.get("aug"), record.get("recipe"))


