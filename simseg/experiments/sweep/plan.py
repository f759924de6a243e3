"""The sweep's plan: its grid of cells ([variants x] initialisations x labelled-subset sizes x seeds), their names,
its shards and its cells' records (the results table they make: :mod:`simseg.experiments.sweep.results`). "Grid" here is
the experiment's; a pretraining run's pictures are reconstruction grids (:mod:`simseg.training.plots`). The axes a
cell varies on, their folder levels and ``cell.json`` keys come from :mod:`simseg.experiments.sweep.axes`.

Pure functions and small records; :mod:`simseg.experiments.sweep.command` runs the cells. A sweep folder holds::

    sweep.json                         the grid (under "grid"), the segmentation config and the commands that ran it
    results.csv, results.jsonl         one row per finished cell, rebuilt from the cell folders after every cell
    pretrain-<size>/                   pretraining runs made by the pretraining axes (--pretrain-subsets; with
                                       --pretrain-methods pretrain-<method>-<size>/)
    pretrain_exclude.txt               the images no pretraining may see (the test split, when --pretrain-data
                                       holds the labelled set)
    cells/<init>/subset-<n>/seed-<s>/  one segmentation run per cell, with cell.json saying what the cell is
    cells/<arch>/<aug>/<init>/...      the same with --models and --aug (a level for each swept variant axis;
                                       --img-sizes adds <size>px)

The results are a function of the finished cell folders, rewritten whole (temp file, then rename): a killed sweep,
two shards writing into one folder, or a rerun can neither lose nor duplicate a row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simseg.errors import SimsegError
from simseg.experiments.run_folders import CELL_RECORD
from simseg.experiments.sweep.axes import Variant, every_variant, pretraining_axes, variant_axes, variant_of
from simseg.files import atomic_write_text
from simseg.sizes import format_size, parse_size


@dataclass(frozen=True)
class Init:
    """Where a cell's encoder comes from: ``scratch`` or a run folder, with what the report groups it by."""
    label: str
    path: str  # "scratch" or the run folder's absolute path
    pretraining: tuple[tuple[str, Any], ...] = ()  # (column, value) of each pretraining axis the init's lineage has
    intermediate: bool = False  # went through intermediate classification
    base_init: str | None = None  # for an intermediate init: the label of the init it was trained from

    def pretrained_with(self, column: str) -> Any:
        """The value of pretraining axis ``column`` behind this init (``pretrain_images``: 45000), or None."""
        return dict(self.pretraining).get(column)


def pretraining_of(values: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """An :attr:`Init.pretraining` from column -> value (empty values left out, table order)."""
    return tuple((axis.column, values[axis.column]) for axis in pretraining_axes()
                 if values.get(axis.column) is not None)


def cell_name(init_label: str, subset: int, seed: int, variant: Variant = ()) -> str:
    """A cell's name and folder under ``cells/``: ``pretrain-45k/subset-1k/seed-0``, with a level for each swept
    variant axis in front (``unet_resnet18/heavy/pretrain-45k/...``), in the order of the axes table."""
    values = dict(variant)
    levels = [axis.name_part(values[axis.column]) for axis in variant_axes() if values.get(axis.column)]
    return "/".join([*levels, init_label, f"subset-{format_size(subset)}", f"seed-{seed}"])


@dataclass(frozen=True)
class Cell:
    init: Init
    subset: int
    seed: int
    variant: Variant = ()  # the values of the swept variant axes (--models, --aug, ...)

    @property
    def name(self) -> str:
        return cell_name(self.init.label, self.subset, self.seed, self.variant)

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


def expand_grid(inits: list[Init], subsets: list[int], seeds: list[int],
                variants: Mapping[str, Sequence[str]] | None = None,
                fits: Callable[[Init, Variant], bool] = lambda init, variant: True) -> list[Cell]:
    """Every (variant, init, subset, seed) whose init ``fits`` the variant (``variants``: column -> values of each
    swept variant axis), smallest subsets first (cheap, most-wanted cells finish early), then the variants and inits
    in the order given, then seeds."""
    return [Cell(init, subset, seed, variant) for subset in sorted(subsets) for variant in every_variant(variants or {})
            for init in inits if fits(init, variant) for seed in seeds]


def shard_cells(cells: list, index: int, count: int) -> list:
    """The ``index``-th of ``count`` disjoint parts, dealt round-robin so every shard gets small and large cells."""
    return cells[index::count]


def write_cell_record(cell: Cell, sweep_dir: Path) -> None:
    """``cell.json`` in the cell's folder: what the cell is, so results can be rebuilt from the folders alone. Every
    pretraining axis has a key in ``init``, every variant axis one at the top (null when not swept)."""
    init, variant = cell.init, dict(cell.variant)
    record = {"init": {"label": init.label, "path": init.path,
                       **{axis.column: init.pretrained_with(axis.column) for axis in pretraining_axes()},
                       "intermediate": init.intermediate, "base_init": init.base_init},
              "subset": cell.subset, "seed": cell.seed,
              **{axis.column: variant.get(axis.column) for axis in variant_axes()}}
    atomic_write_text(cell.run_dir(sweep_dir) / CELL_RECORD, json.dumps(record, indent=2))


def cell_of_record(record: dict) -> Cell:
    """The :class:`Cell` a ``cell.json`` (as :func:`simseg.experiments.run_folders.cell_records` reads it) describes."""
    init = record["init"]
    return Cell(Init(init["label"], init["path"], pretraining_of(init), bool(init.get("intermediate")),
                     init.get("base_init")), int(record["subset"]), int(record["seed"]), variant_of(record))
