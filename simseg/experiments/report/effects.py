"""Which rows the report compares, found from the rows' axis columns (never from parsing labels): the variants the
rows span, per-variant init labels, each init beside the scratch init of its own variant, and the settings behind the
per-axis averages ("effect of pretraining", "effect of the model", each pretraining value's gain over scratch). The
comparisons are measured (gain, interval) by :mod:`simseg.experiments.report.gains`."""

from __future__ import annotations

from typing import NamedTuple

from simseg.experiments.report.summary import init_info, init_order
from simseg.experiments.sweep.axes import Axis, Variant, reference_value, variant_axes, variant_of
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


class Pair(NamedTuple):
    """The rows of two arms at one setting (every other axis and the subset size equal), compared seed by seed by
    :mod:`simseg.experiments.report.gains`."""
    arm: list[Row]
    reference: list[Row]


class ScratchPair(NamedTuple):
    """An init and the scratch init of the same variant, at one subset size."""
    init: str
    variant: Variant
    subset: int
    scratch: str  # the label of the scratch init it is measured against
    pair: Pair


def scratch_pairs(rows: list[Row], metric: str) -> list[ScratchPair]:
    """Every (init, variant, subset) that has a scratch init beside it (rows grouped by the variant axes' columns and
    the subset size; rows without ``metric`` left out), in :func:`init_order`; the first scratch init in that order
    is the reference."""
    info, order = init_info(rows), {label: i for i, label in enumerate(init_order(rows))}
    groups: dict[tuple[Variant, int], dict[str, list[Row]]] = {}
    for row in rows:
        if row.get(metric) is not None:
            groups.setdefault((variant_of(row), row["subset"]), {}).setdefault(row["init"], []).append(row)
    found = []
    for (variant, subset), by_init in groups.items():
        scratch = min((label for label in by_init if info[label].scratch), key=order.get, default=None)
        if scratch is not None:
            found += [ScratchPair(label, variant, subset, scratch, Pair(arm, by_init[scratch]))
                      for label, arm in by_init.items() if not info[label].scratch]
    return sorted(found, key=lambda p: (order[p.init], p.subset))


def value_key(value: str) -> tuple:
    """Sort key of an axis's values as text: numbers by size (``96`` before ``128``), then the rest by name."""
    return (0, float(value), "") if value.replace(".", "", 1).isdigit() else (1, 0.0, value)


def axis_reference(rows: list[Row], axis: Axis, sweep: dict | None = None) -> str | None:
    """The value an axis's others are measured against: for the init, the first scratch init in
    :func:`init_order`; for another axis, :func:`~simseg.experiments.sweep.axes.reference_value` among the values in
    the sweep's order (``sweep.json``'s grid, then the rest sorted), with the sweep template's value when the axis
    takes its reference from it. None when the rows hold fewer than two values."""
    values = {str(r[axis.column]) for r in rows if r.get(axis.column) is not None}
    if len(values) < 2:
        return None
    if axis.kind == "init":
        info, order = init_info(rows), init_order(rows)
        return next((label for label in order if info[label].scratch), order[0])
    swept = [str(v) for v in ((sweep or {}).get("grid") or {}).get(axis.grid_key) or []]
    ordered = [v for v in dict.fromkeys(swept) if v in values] + sorted(values - set(swept), key=value_key)
    template = (sweep or {}).get("segment_config") or {}
    for part in axis.config_key.split("."):
        template = template.get(part) if isinstance(template, dict) else None
    return str(reference_value(axis, ordered, template))


def axis_pairs(rows: list[Row], column: str, reference: str, metric: str) -> dict[str, list[Pair]]:
    """A variant axis or the init: value -> its :class:`Pair` with ``reference`` at every setting of the other axes
    and the subset size that both values ran at (rows without ``metric`` left out), values in sorted order."""
    others = [key for key in ("init", *(axis.column for axis in variant_axes()), "subset") if key != column]
    settings: dict[tuple, dict[str, list[Row]]] = {}
    for row in rows:
        if row.get(metric) is not None and row.get(column) is not None:
            setting = tuple(row.get(key) for key in others)
            settings.setdefault(setting, {}).setdefault(str(row[column]), []).append(row)
    pairs: dict[str, list[Pair]] = {}
    for by_value in settings.values():
        if reference in by_value:
            for value, arm in by_value.items():
                if value != reference:
                    pairs.setdefault(value, []).append(Pair(arm, by_value[reference]))
    return dict(sorted(pairs.items(), key=lambda item: value_key(item[0])))


def pretraining_pairs(rows: list[Row], column: str, metric: str) -> dict:
    """A pretraining axis: value -> the scratch pairs (:func:`scratch_pairs`) of every init pretrained with that
    value, over the variants and subset sizes it has a scratch init beside. Intermediate inits are left out (their
    step is measured apart). Empty when every value is one init: the init rows say it."""
    info = init_info(rows)
    by_value: dict = {}
    for found in scratch_pairs(rows, metric):
        value = info[found.init].pretraining.get(column)
        if value is not None and not info[found.init].intermediate:
            by_value.setdefault(value, []).append(found)
    if len(by_value) < 2 or all(len({p.init for p in found}) == 1 for found in by_value.values()):
        return {}
    return {value: [p.pair for p in found] for value, found in sorted(by_value.items())}
