"""Summaries of a sweep's result rows (mean and spread per init and subset, init order, intermediate-step
deltas), shared by the report's text and its figures."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from simseg.experiments.results import Row

MISSING = "—"  # a table's cell without a finished run


class Summary(NamedTuple):
    """Mean and sample std (ddof=1; None for one value) of one metric over the n seeds of an (init, subset)."""
    mean: float
    std: float | None
    n: int


class InitInfo(NamedTuple):
    """What the rows say about one init label (first non-empty value wins)."""
    path: str | None  # run folder, "scratch", or None when the rows do not say
    pretrain_images: int | None
    intermediate: bool
    base_init: str | None

    @property
    def scratch(self) -> bool:
        return self.path == "scratch"


def summarise(rows: list[Row], metric: str = "miou") -> dict[tuple[str, int], Summary]:
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
        old = info.get(row["init"], InitInfo("scratch" if row["init"] == "scratch" else None, None, False, None))
        info[row["init"]] = InitInfo(row["init_path"] or old.path, old.pretrain_images or row["pretrain_images"],
                                     old.intermediate or row["intermediate"], old.base_init or row["base_init"])
    return info


def init_order(rows: list[Row]) -> list[str]:
    """Init labels as tables and legends list them: scratch first, then pretraining inits by pretraining images
    (unknown last, ties by label), each followed by the intermediate inits built from it, then orphan intermediates."""
    info = init_info(rows)

    def by_size(label: str) -> tuple:
        size = info[label].pretrain_images
        return (size is None, size or 0, label)

    bases = sorted((label for label, i in info.items() if not i.intermediate and not i.scratch), key=by_size)
    intermediates = sorted((label for label, i in info.items() if i.intermediate), key=by_size)
    order = [label for label, i in info.items() if i.scratch and not i.intermediate]
    for base in bases:
        order += [base, *(label for label in intermediates if info[label].base_init == base)]
    return order + [label for label in intermediates if label not in order]


def intermediate_deltas(rows: list[Row]) -> dict[str, dict[int, float]]:
    """Intermediate init -> {subset: mean mIoU(intermediate) - mean mIoU(its base_init)}, for the intermediate
    inits whose base init is in the rows and the subset sizes both have."""
    stats, info = summarise(rows), init_info(rows)
    deltas: dict[str, dict[int, float]] = {}
    for label in init_order(rows):
        base = info[label].base_init
        if not info[label].intermediate or base not in info:
            continue
        shared = sorted(s for (init, s) in stats if init == label and (base, s) in stats)
        if shared:
            deltas[label] = {s: stats[label, s].mean - stats[base, s].mean for s in shared}
    return deltas


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


# --- model and augmentation axes ------------------------------------------------------------------------------------
VARIANT_AXES = ("arch", "aug", "recipe")


def varying_axes(rows: list[Row]) -> list[str]:
    """The variant axes (``arch``, ``aug``, ``recipe``) on which the rows hold more than one value."""
    return [axis for axis in VARIANT_AXES if len({r.get(axis) for r in rows}) > 1]


def with_variant_labels(rows: list[Row]) -> list[Row]:
    """Rows whose ``init`` (and ``base_init``) is prefixed with the model and preset where those vary, e.g.
    ``unet_resnet18/heavy/scratch``, so every per-init table and figure becomes per variant."""
    axes = varying_axes(rows)
    if not axes:
        return rows

    def label(row: Row, init: str | None) -> str | None:
        return None if init is None else "/".join([*(str(row.get(a)) for a in axes), init])

    return [{**row, "init": label(row, row["init"]), "base_init": label(row, row["base_init"])} for row in rows]


def axis_effects(rows: list[Row], axis: str, reference: str) -> dict[str, tuple[float, int]]:
    """The per-axis average: value -> (mean over every setting of the other axes and the subset size, of mean
    mIoU(value) - mean mIoU(reference), number of settings both have). ``axis`` is ``init``, ``arch`` or ``aug``."""
    others = [key for key in ("init", *VARIANT_AXES, "subset") if key != axis]
    means: dict[tuple, dict[str, list[float]]] = {}
    for row in rows:
        setting = tuple(row.get(key) for key in others)
        means.setdefault(setting, {}).setdefault(row.get(axis), []).append(row["miou"])
    effects: dict[str, list[float]] = {}
    for by_value in means.values():
        if reference not in by_value:
            continue
        base = float(np.mean(by_value[reference]))
        for value, values in by_value.items():
            if value != reference:
                effects.setdefault(value, []).append(float(np.mean(values)) - base)
    return {value: (float(np.mean(d)), len(d)) for value, d in effects.items()}
