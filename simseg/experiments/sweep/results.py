"""A sweep's results: the row each finished cell adds, ``results.csv`` / ``results.jsonl`` written from them, and
read back as typed rows (with ``sweep.json``).

The figure columns name their view and where they were scored (``miou_plain``, ``miou_tta``, ``miou_plain_input``,
``scored_at``; the scheme and the one mapping from a ``metrics.json`` are :mod:`simseg.experiments.sweep.columns`).
``val_images`` and ``val_miou`` (the best validation epoch's mIoU; empty without validation) say what chose the
reported epoch, and ``labels_used`` every label a cell's choices used: its training subset plus the validation images.

Hand-written tables are welcome (the report works from them alone): only init, subset, seed and miou_plain are
required, image counts may be written as ``1k``, and every problem is one line naming the file, the line and the fix.
Tables in the columns of earlier versions (``miou``, ``plain_miou``, ``iou_pet``, ...) are read through
:func:`upgrade_old_columns`.

Per-class figures follow the dataset's classes (its run folders' ``classes.json``): ``iou_<class>_<view>``,
``dice_``, ``precision_`` and ``recall_`` likewise for each class name, the name written by :func:`class_column`'s
rule (letters, digits, ``_ . -`` as they are, a space as ``+``, any other character percent-encoded in UTF-8: ``road
sign`` -> ``iou_road+sign_plain``), which :func:`class_names` reverses. ``boundary_iou_plain`` is the Boundary IoU
over every class (a contour measure), not ``iou_boundary_plain``, the IoU of the pets' class named "boundary".
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from simseg.data.label_set import read_run_label_set
from simseg.errors import SimsegError
from simseg.experiments.sweep.axes import config_value, init_axis, pretraining_axes, variant_axes, variant_of
from simseg.experiments.sweep.columns import (
    INPUT_COLUMNS,
    MAIN_SCORE,
    PER_CLASS_KINDS,
    SCORE_COLUMNS,
    SCORED_AT,
    SCORES,
    VIEWS,
    Row,
    as_reported,
    class_column,
    class_columns,
    class_names,
    class_of_column,
    metric_column,
    metric_figures,
    upgrade_old_columns,
)
from simseg.experiments.sweep.plan import Cell, cell_name
from simseg.files import atomic_write_text
from simseg.sizes import parse_size

__all__ = ["COST", "INPUT_COLUMNS", "MAIN_SCORE", "PER_CLASS_KINDS", "REQUIRED", "SCORED_AT", "SCORES",
           "SCORE_COLUMNS", "VALIDATION", "VIEWS", "Row", "as_reported", "class_column", "class_columns", "class_names",
           "class_of_column", "metric_column", "metric_figures", "read_results", "read_sweep", "result_columns",
           "result_row", "results_path", "upgrade_old_columns", "write_results"]

REQUIRED = ("init", "subset", "seed", MAIN_SCORE)
COST = ("parameters", "encoder_parameters", "gflops", "inference_images_per_s")
VALIDATION = ("val_images", "labels_used", "val_miou")
_TEXT = ("cell", "init_path", "base_init", "run_dir", "scored_at")  # and the axes' columns (see _column_types)
_COUNTS = ("subset", "train_images", "test_images", "val_images", "labels_used")  # a hand-written '1k' is fine
_INTS = ("seed", "epochs")
_RUN = ("train_seconds", "images_per_s", "epochs", "train_images", "test_images")
_FLOATS = (*COST, "train_seconds", "images_per_s", "val_miou")


def result_columns(classes: Sequence[str] = ()) -> tuple[str, ...]:
    """The results table's columns, in order: the cell, its variant axes' columns, the init and its pretraining axes'
    columns, subset, seed and the validation columns, then the run's figures (where they were scored, each score in
    both views, the input-size mIoU, the per-class columns of ``classes``), cost and run figures."""
    return ("cell", *(axis.column for axis in variant_axes()), init_axis().column, "init_path",
            *(axis.column for axis in pretraining_axes()), "intermediate", "base_init", "subset", "seed",
            *VALIDATION, "scored_at", *SCORE_COLUMNS, *INPUT_COLUMNS, *class_columns(classes), *COST, *_RUN,
            "run_dir")


def _column_types(classes: Sequence[str]) -> dict[str, str]:
    """Column -> ``text``, ``count``, ``int`` or ``float`` (``intermediate`` is read apart, as a bool)."""
    axes = (*variant_axes(), init_axis(), *pretraining_axes())
    figures = (*SCORE_COLUMNS, *INPUT_COLUMNS, *class_columns(classes))
    return {**dict.fromkeys(_TEXT, "text"), **dict.fromkeys(_COUNTS, "count"), **dict.fromkeys(_INTS, "int"),
            **dict.fromkeys(_FLOATS, "float"), **dict.fromkeys(figures, "float"),
            **{axis.column: "count" if axis.counts_images else "int" if axis.whole_numbers else "text"
               for axis in axes}}


def results_path(sweep_dir: Path) -> Path:
    """``results.csv`` if present, else ``results.jsonl``; a one-line error when the sweep has neither."""
    if not sweep_dir.is_dir():
        raise SimsegError(f"sweep folder {sweep_dir} does not exist: run `simseg sweep ... --output-dir {sweep_dir}` "
                          f"first, or give the folder it wrote")
    for name in ("results.csv", "results.jsonl"):
        if (sweep_dir / name).is_file():
            return sweep_dir / name
    raise SimsegError(f"{sweep_dir} has no results.csv or results.jsonl: run `simseg sweep ... --output-dir "
                      f"{sweep_dir}` first (results appear as soon as one cell finishes)")


def _missing_required(columns: Iterable[str]) -> str | None:
    """The first required column that ``columns`` (today's or an old table's) lack."""
    present = set(columns)
    return next((column for column in REQUIRED
                 if column not in present and not (column == MAIN_SCORE and "miou" in present)), None)


def _required_text() -> str:
    return f"{', '.join(REQUIRED)} (or miou, as older tables name it)"


def read_results(sweep_dir: str | Path) -> list[Row]:
    """Typed rows (keys :func:`result_columns` of the class names the file's per-class columns hold; absent or empty
    values None) of a sweep's results; tables in older columns are renamed by :func:`upgrade_old_columns`."""
    path = results_path(Path(sweep_dir))
    raw: list[tuple[str, dict]] = []  # (where, values) for error messages
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as file:  # -sig: spreadsheets prepend a byte-order mark
            reader = csv.DictReader(file)
            missing = _missing_required((name or "").strip() for name in reader.fieldnames or [])
            if missing:
                raise SimsegError(f"{path} has no '{missing}' column: add it (required columns: {_required_text()})")
            for values in reader:
                raw.append((f"{path} line {reader.line_num}",
                            {(k or "").strip(): v for k, v in values.items() if k is not None}))
    else:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                values = json.loads(line)
            except json.JSONDecodeError as err:
                raise SimsegError(f"{path} line {number} is not JSON ({err.msg}): fix or delete that line") from None
            if not isinstance(values, dict):
                raise SimsegError(f"{path} line {number} is not a JSON object: write one object per line")
            missing = _missing_required(values)
            if missing:
                raise SimsegError(f"{path} line {number} has no '{missing}' key: add it (required: "
                                  f"{_required_text()})")
            raw.append((f"{path} line {number}", values))
    if not raw:
        raise SimsegError(f"{path} has no rows: no cell has finished yet; rerun `simseg report` when one has")
    upgraded = [(where, upgrade_old_columns(values)) for where, values in raw]
    classes = class_names(key for _, values in upgraded for key in values)
    return [_typed_row({_canonical(key): value for key, value in values.items()}, where, classes)
            for where, values in upgraded]


def _canonical(column: str) -> str:
    """A per-class column as :func:`class_column` writes it (hand-written tables may spell a name plainly)."""
    found = class_of_column(column)
    return class_column(*found) if found else column


def _typed_row(values: dict, where: str, classes: Sequence[str]) -> Row:
    row = {column: _parse(kind, column, values.get(column), where)
           for column, kind in _column_types(classes).items()}
    row["intermediate"] = _parse_bool(values.get("intermediate"), where)
    for column in REQUIRED:
        if row[column] is None:
            raise SimsegError(f"{where} has an empty '{column}': fill it in (required: {_required_text()})")
    if row["cell"] is None:
        row["cell"] = cell_name(row["init"], row["subset"], row["seed"], variant_of(row))
    return {column: row[column] for column in result_columns(classes)}


def _parse(kind: str, column: str, value: Any, where: str) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if kind == "text":
        return str(value).strip()
    if kind == "count":  # no validation images is a count too
        return 0 if str(value).strip() == "0" else parse_size(value, f"{where}: {column}")
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
        if kind == "int":
            if number != int(number):
                raise ValueError
            return int(number)
        return number
    except (TypeError, ValueError):
        raise SimsegError(f"{where}: {column}={value!r} is not a number: fix that value") from None


def _parse_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = "" if value is None else str(value).strip().lower()
    if text in ("", "false", "0", "no"):
        return False
    if text in ("true", "1", "yes"):
        return True
    raise SimsegError(f"{where}: intermediate={value!r} is not true or false: write true or false")


def read_sweep(sweep_dir: Path) -> dict | None:
    """``sweep.json`` as a dict, or None when the results were written by hand."""
    path = sweep_dir / "sweep.json"
    if not path.is_file():
        return None
    try:
        sweep = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SimsegError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}): fix or delete it") from None
    if not isinstance(sweep, dict):
        raise SimsegError(f"{path} is not a JSON object: fix or delete it")
    return sweep


def result_row(cell: Cell, metrics: dict, sweep_dir: Path, config=None) -> dict:
    """One results row (keys :func:`result_columns` of the run's class names) from a cell, its run's ``metrics.json``
    (through :func:`metric_figures`) and, when given, its resolved ``config``; the classes are the run folder's
    ``classes.json`` (pets for a run made before runs recorded them). A variant axis's column holds what the run
    recorded, else the cell's value, else the config's, else what older runs recorded in its place."""
    variant = dict(cell.variant)
    classes = read_run_label_set(cell.run_dir(sweep_dir)).names
    figures = metric_figures(metrics, classes)
    val_images = figures["val_images"]

    def axis_value(axis):  # as text, as variants hold it (an input size 160 -> "160")
        value = (metrics.get(axis.column) or variant.get(axis.column)
                 or (config_value(config, axis.config_key) if config is not None else None)
                 or (axis.old_metrics(metrics) if axis.old_metrics else None))
        return None if value is None else str(value)

    row = {
        "cell": cell.name, init_axis().column: cell.init.label, "init_path": cell.init.path,
        **{axis.column: axis_value(axis) for axis in variant_axes()},
        **{axis.column: cell.init.pretrained_with(axis.column) for axis in pretraining_axes()},
        "intermediate": cell.init.intermediate, "base_init": cell.init.base_init, "subset": cell.subset,
        "seed": cell.seed, **figures, "labels_used": None if val_images is None else cell.subset + val_images,
        **{k: metrics.get(k) for k in (*COST, *_RUN)},
        "run_dir": cell.run_dir(sweep_dir).relative_to(sweep_dir).as_posix(),
    }
    return {column: row[column] for column in result_columns(classes)}


def write_results(sweep_dir: Path, rows: list[dict]) -> bool:
    """Rewrite ``results.csv`` and ``results.jsonl`` whole and atomically; False when they already hold ``rows``.
    The CSV's per-class columns are those of every class the rows hold (one label set per sweep, so the same)."""
    jsonl = "".join(json.dumps(row) + "\n" for row in rows)
    path = sweep_dir / "results.jsonl"
    if path.is_file() and path.read_text() == jsonl and (sweep_dir / "results.csv").is_file():
        return False
    text = io.StringIO()
    columns = result_columns(class_names(key for row in rows for key in row))
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else str(v).lower() if isinstance(v, bool) else v)
                         for k, v in row.items()})
    atomic_write_text(sweep_dir / "results.csv", text.getvalue())
    atomic_write_text(path, jsonl)
    return True
