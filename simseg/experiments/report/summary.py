"""Summaries of a sweep's result rows (mean and spread per init and subset, what the rows say of each init, init
order), shared by the report's text and its figures."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from simseg.experiments.report.view import PLAIN
from simseg.experiments.sweep.axes import pretraining_axes
from simseg.experiments.sweep.results import Row

MISSING = "—"  # a table's cell without a finished run


class Summary(NamedTuple):
    """Mean and sample std (ddof=1; None for one value) of one metric over the n seeds of an (init, subset)."""
    mean: float
    std: float | None
    n: int


class InitInfo(NamedTuple):
    """What the rows say about one init label (first non-empty value wins)."""
    path: str | None  # run folder, "scratch", or None when the rows do not say
    pretraining: dict[str, Any]  # pretraining axis column -> value (pretrain_images: 45000); absent when unknown
    intermediate: bool
    base_init: str | None

    @property
    def scratch(self) -> bool:
        return self.path == "scratch"


def summarise(rows: list[Row], metric: str = PLAIN.miou) -> dict[tuple[str, int], Summary]:
    """(init, subset) -> :class:`Summary` of ``metric`` over the rows (seeds) that have it."""
    values: dict[tuple[str, int], list[float]] = {}
    for row in rows:
        if row.get(metric) is not None:
            values.setdefault((row["init"], row["subset"]), []).append(row[metric])
    return {key: Summary(float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else None, len(v))
            for key, v in values.items()}


def init_info(rows: list[Row]) -> dict[str, InitInfo]:
    """Init label -> :class:`InitInfo` gathered from its rows; a label ``scratch`` without a path is scratch."""
    info: dict[str, InitInfo] = {}
    for row in rows:
        old = info.get(row["init"], InitInfo("scratch" if row["init"] == "scratch" else None, {}, False, None))
        found = {axis.column: row.get(axis.column) for axis in pretraining_axes() if row.get(axis.column) is not None}
        info[row["init"]] = InitInfo(row["init_path"] or old.path, {**found, **old.pretraining},
                                     old.intermediate or row["intermediate"], old.base_init or row["base_init"])
    return info


def init_order(rows: list[Row]) -> list[str]:
    """Init labels as tables and legends list them: scratch first, then pretraining inits by their pretraining
    (pretraining images, then each further pretraining axis; unknown last, ties by label), each followed by the
    intermediate inits built from it, then orphan intermediates."""
    info = init_info(rows)

    def by_size(label: str) -> tuple:
        values = [info[label].pretraining.get(axis.column) for axis in pretraining_axes()]
        return (*((value is None, value if value is not None else 0) for value in values), label)

    bases = sorted((label for label, i in info.items() if not i.intermediate and not i.scratch), key=by_size)
    intermediates = sorted((label for label, i in info.items() if i.intermediate), key=by_size)
    order = [label for label, i in info.items() if i.scratch and not i.intermediate]
    for base in bases:
        order += [base, *(label for label in intermediates if info[label].base_init == base)]
    return order + [label for label in intermediates if label not in order]


def format_summary(summary: Summary) -> str:
    """``0.412 ± 0.013 (n=3)``, or ``0.412`` for a single seed."""
    if summary.std is None:
        return f"{summary.mean:.3f}"
    return f"{summary.mean:.3f} ± {summary.std:.3f} (n={summary.n})"


def markdown_table(header: list[str], body: list[list[str]]) -> list[str]:
    """Lines of a markdown table; the first column left-aligned, the others right-aligned (numbers)."""
    escape = [[cell.replace("|", "\\|") for cell in row] for row in [header, *body]]
    rule = "| :--- | " + " | ".join("---:" for _ in header[1:]) + " |"
    return ["| " + " | ".join(escape[0]) + " |", rule, *("| " + " | ".join(row) + " |" for row in escape[1:])]
