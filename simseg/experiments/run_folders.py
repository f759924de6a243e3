"""Reading finished run folders: the one place the sweep, the report and the demo look inside a run or a cell.

A run folder describes itself (``docs/run-folder.md``)::

    config.yaml      the resolved config          -> run_started, run_config_value, method_of_run
    metrics.json     the final figures            -> run_metrics, images_of_run
    metrics.jsonl    one record per epoch         -> epoch_records
    lineage.json     the export it started from   -> lineage_parent, lineage_root
    grids/           reconstruction grids         -> latest_grid
    examples.png     segmentation examples        -> examples_picture
    cell.json        in a sweep's cell: which cell it is -> cell_records

An export folder ``RUN/exports/epoch_NNN/`` has no config of its own: :func:`exporting_run` names its run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simseg.models.pretraining import LEGACY_METHOD
from simseg.training.handoff import exporting_run
from simseg.training.rundir import saved_config

CELL_RECORD = "cell.json"
LINEAGE = "lineage.json"
_LINEAGE_DEPTH = 8  # pretrain -> classify -> ... chains are short; a loop of links would be a damaged folder

__all__ = ["CELL_RECORD", "cell_records", "epoch_records", "examples_picture", "exporting_run", "images_of_run",
           "latest_grid", "lineage_parent", "lineage_root", "method_of_run", "run_config_value", "run_metrics",
           "run_started"]


def run_started(run_dir: Path) -> bool:
    """Whether a run has begun in ``run_dir`` (it wrote its ``config.yaml``): its next start resumes it."""
    return (Path(run_dir) / "config.yaml").is_file()


def run_metrics(run_dir: Path) -> dict | None:
    """A run's ``metrics.json`` (its final figures); None while it has none."""
    path = Path(run_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def epoch_records(run_dir: Path) -> list[dict]:
    """A run's ``metrics.jsonl``, one dict per epoch in order; [] without one."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def images_of_run(run_dir: Path) -> int | None:
    """The training images a finished run used (its ``metrics.json``); None before it finished."""
    return (run_metrics(run_dir) or {}).get("train_images")


def run_config_value(run_dir: Path, key: str) -> Any:
    """The value at dotted ``key`` in a run folder's ``config.yaml``; None when absent."""
    node = saved_config(run_dir)
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def method_of_run(run_dir: Path) -> str | None:
    """A pretraining run's ``method``; a config.yaml written before the key existed is the legacy method's. None
    without a config.yaml."""
    saved = saved_config(run_dir)
    return None if saved is None else saved.get("method", LEGACY_METHOD)


def lineage_parent(run_dir: Path) -> Path | None:
    """The run folder whose export ``run_dir`` started from (its ``lineage.json``), or None for a first stage."""
    lineage = Path(run_dir) / LINEAGE
    if not lineage.is_file():
        return None
    export = json.loads(lineage.read_text()).get("export")
    return Path(export).parent.resolve() if export else None


def lineage_root(run_dir: Path) -> Path | None:
    """The pretraining run at the root of ``run_dir``'s lineage; None when the root started from scratch through
    another stage (it has a lineage.json of its own) or the chain of links does not end."""
    for _ in range(_LINEAGE_DEPTH):
        parent = lineage_parent(run_dir)
        if parent is None:
            return None if (Path(run_dir) / LINEAGE).exists() else Path(run_dir)
        run_dir = parent
    return None


def latest_grid(run_dir: Path) -> tuple[Path, str] | None:
    """The highest-epoch ``grids/epoch_NNN.png`` of a pretraining run (else ``grids/grid.png``) and its caption."""
    grids = Path(run_dir) / "grids"
    epochs = [(int(m.group(1)), path) for path in grids.glob("epoch_*.png")
              if (m := re.fullmatch(r"epoch_(\d+)\.png", path.name))]
    if epochs:
        epoch, path = max(epochs)
        return path, f"epoch {epoch}"
    grid = grids / "grid.png"
    return (grid, "latest grid") if grid.is_file() else None


def examples_picture(run_dir: Path) -> Path | None:
    """A segmentation run's ``examples.png``, when it wrote one."""
    path = Path(run_dir) / "examples.png"
    return path if path.is_file() else None


def cell_records(sweep_dir: Path) -> Iterator[tuple[Path, dict]]:
    """(cell folder, its ``cell.json`` as a dict) of every cell folder under ``sweep_dir/cells``, sorted by path."""
    for record in sorted((Path(sweep_dir) / "cells").glob(f"**/{CELL_RECORD}")):
        yield record.parent, json.loads(record.read_text())
