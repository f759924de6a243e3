"""What each axis does to the test mIoU, computed from the rows' axis columns (never from parsing labels): the
variants the rows span, per-variant init labels, each init's gain over the scratch init of its own variant, and the
per-axis averages of the report ("effect of pretraining", "effect of the model", each pretraining value's gain)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from simseg.experiments.report.summary import init_info, init_order
from simseg.experiments.sweep.axes import Axis, Variant, variant_axes, variant_of
from simseg.experiments.sweep.results import Row


def varying_axes(rows: list[Row]) -> list[Axis]:
    """The variant axes (model, augmentation preset, recipe, ...) on which the rows hold more than one value."""
    return [axis for axis in variant_axes() if len({row.get(axis.column) for row in rows}) > 1]


def with_variant_labels(rows: list[Row]) -> list[Row]:
    """Rows whose ``init`` (and ``base_init``) is prefixed with the values of the variant axes that vary, e.g.
    ``unet_resnet18/heavy/scratch``, so every per-init table and figure becomes per variant. The labels are for
    reading only: the axis columns stay, and everything computed per variant groups by them."""
    columns = [axis.column for axis in varying_axes(rows)]
    if not columns:
        return rows

    def label(row: Row, init: str | None) -> str | None:
        return None if init is None else "/".join([*(str(row.get(column)) for column in columns), init])

    return [{**row, "init": label(row, row["init"]), "base_init": label(row, row["base_init"])} for row in rows]


def label_variants(rows: list[Row]) -> dict[str, Variant]:
    """Init label -> the variant of its rows (of its first row: with variant labels each label has one)."""
    variants: dict[str, Variant] = {}
    for row in rows:
        variants.setdefault(row["init"], variant_of(row))
    return variants


class Gain(NamedTuple):
    """An init's seed-mean mIoU minus that of the scratch init of the same variant, at one subset size."""
    init: str
    variant: Variant
    subset: int
    gain: float
    scratch: str  # the label of the scratch init it is measured against


def scratch_gains(rows: list[Row], metric: str = "miou") -> list[Gain]:
    """Every (init, variant, subset) that has a scratch init beside it (rows grouped by the variant axes' columns and
    the subset size), in :func:`init_order`; the first scratch init in that order is the reference."""
    info, order = init_info(rows), {label: i for i, label in enumerate(init_order(rows))}
    values: dict[tuple[Variant, int], dict[str, list[float]]] = {}
    for row in rows:
        if row.get(metric) is not None:
            setting = values.setdefault((variant_of(row), row["subset"]), {})
            setting.setdefault(row["init"], []).append(row[metric])
    gains = []
    for (variant, subset), by_init in values.items():
        scratch = min((label for label in by_init if info[label].scratch), key=order.get, default=None)
        if scratch is None:
            continue
        base = float(np.mean(by_init[scratch]))
        gains += [Gain(label, variant, subset, float(np.mean(v)) - base, scratch)
                  for label, v in by_init.items() if not info[label].scratch]
    return sorted(gains, key=lambda g: (order[g.init], g.subset))


def axis_effects(rows: list[Row], column: str, reference: str) -> dict[str, tuple[float, int]]:
    """The per-axis average of a variant axis or the init: value -> (mean over every setting of the other axes and
    the subset size, of mean mIoU(value) - mean mIoU(reference), number of settings both have)."""
    others = [key for key in ("init", *(axis.column for axis in variant_axes()), "subset") if key != column]
    means: dict[tuple, dict[str, list[float]]] = {}
    for row in rows:
        setting = tuple(row.get(key) for key in others)
        means.setdefault(setting, {}).setdefault(row.get(column), []).append(row["miou"])
    effects: dict[str, list[float]] = {}
    for by_value in means.values():
        if reference not in by_value:
            continue
        base = float(np.mean(by_value[reference]))
        for value, values in by_value.items():
            if value != reference:
                effects.setdefault(value, []).append(float(np.mean(values)) - base)
    return {value: (float(np.mean(d)), len(d)) for value, d in effects.items()}


def pretraining_effects(rows: list[Row], column: str) -> dict:
    """The per-axis average of a pretraining axis: value -> (mean gain over scratch of every init pretrained with
    that value, over the variants and subset sizes it has a scratch init beside, number of such gains). Intermediate
    inits are left out (their step is measured apart). Empty when every value is one init: the init rows say it."""
    info = init_info(rows)
    by_value: dict = {}
    for gain in scratch_gains(rows):
        value = info[gain.init].pretraining.get(column)
        if value is not None and not info[gain.init].intermediate:
            by_value.setdefault(value, []).append(gain)
    if len(by_value) < 2 or all(len({g.init for g in gains}) == 1 for gains in by_value.values()):
        return {}
    return {value: (float(np.mean([g.gain for g in gains])), len(gains)) for value, gains in by_value.items()}
