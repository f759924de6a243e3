"""A sweep's results: the row each finished cell adds, ``results.csv`` / ``results.jsonl`` written from them, and
read back as typed rows (with ``sweep.json``).

Hand-written tables are welcome (the report works from them alone): only init, subset, seed and miou are required,
image counts may be written as ``1k``, and every problem is one line naming the file, the line and the fix.

Per-class figures follow the dataset's classes (its run folders' ``classes.json``): ``iou_<class>``, ``dice_<class>``,
``precision_<class>`` and ``recall_<class>`` for each class name, the name written by :func:`class_column`'s rule
(letters, digits, ``_ . -`` as they are, a space as ``+``, any other character percent-encoded in UTF-8: ``road
sign`` -> ``iou_road+sign``), which :func:`class_names` reverses. Pet runs therefore keep their ``iou_pet`` columns.
``boundary_iou`` is the Boundary IoU over every class (a contour measure), not ``iou_boundary``, the IoU of the
pets' class named "boundary".
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from simseg.data.label_set import read_run_label_set
from simseg.errors import SimsegError
from simseg.experiments.sweep.axes import init_axis, pretraining_axes, variant_axes, variant_of
from simseg.experiments.sweep.plan import Cell, cell_name
from simseg.files import atomic_write_text
from simseg.sizes import parse_size

Row = dict[str, Any]
REQUIRED = ("init", "subset", "seed", "miou")
_TEXT = ("cell", "init_path", "base_init", "run_dir")  # and the axes' columns (see _column_types)
_COUNTS = ("subset", "train_images", "test_images")  # image counts: a hand-written '1k' is fine
_INTS = ("seed", "epochs")
PER_CLASS_KINDS = ("iou", "dice", "precision", "recall")  # metrics.json keys that map each class name to a value
COST = ("parameters", "encoder_parameters", "gflops", "inference_images_per_s")
_SCORES = ("miou", "boundary_iou", "plain_miou", "plain_boundary_iou", "pixel_accuracy", "mean_pixel_accuracy",
           "mean_dice", "fwiou")
_RUN = ("train_seconds", "images_per_s", "epochs", "train_images", "test_images")
_FLOATS = (*_SCORES, *COST, "train_seconds", "images_per_s")


def class_column(kind: str, name: str) -> str:
    """The column of one class's figure, e.g. ``("iou", "road sign")`` -> ``iou_road+sign``: letters, digits and
    ``_ . -`` stay, a space becomes ``+`` and every other character its UTF-8 bytes as ``%XX``, so any class name
    makes one plain column that spreadsheets, pandas and Markdown take, and :func:`class_names` reads back."""
    return f"{kind}_" + "".join(c if c.isalnum() or c in "_.-" else "+" if c == " " else
                                "".join(f"%{byte:02X}" for byte in c.encode()) for c in name)


def class_of_column(column: str) -> tuple[str, str] | None:
    """``iou_road+sign`` -> ``("iou", "road sign")`` (:func:`class_column` reversed; a hand-written ``iou_road sign``
    reads the same); None for a column that is not a per-class figure."""
    kind, sep, encoded = column.partition("_")
    return (kind, unquote_plus(encoded)) if sep and encoded and kind in PER_CLASS_KINDS else None


def class_names(columns: Iterable[str]) -> tuple[str, ...]:
    """The class names of the per-class columns among ``columns``, in the order they first appear; ``()`` when
    there are none."""
    return tuple(dict.fromkeys(found[1] for column in columns if (found := class_of_column(column))))


def result_columns(classes: Sequence[str] = ()) -> tuple[str, ...]:
    """The results table's columns, in order: the cell, its variant axes' columns, the init and its pretraining axes'
    columns, subset and seed, then the run's figures, with four per-class columns for each name of ``classes``."""
    per_class = tuple(class_column(kind, name) for kind in PER_CLASS_KINDS for name in classes)
    return ("cell", *(axis.column for axis in variant_axes()), init_axis().column, "init_path",
            *(axis.column for axis in pretraining_axes()), "intermediate", "base_init", "subset", "seed",
            *_SCORES, *per_class, *COST, *_RUN, "run_dir")


def _column_types(classes: Sequence[str]) -> dict[str, str]:
    """Column -> ``text``, ``count``, ``int`` or ``float`` (``intermediate`` is read apart, as a bool)."""
    axes = (*variant_axes(), init_axis(), *pretraining_axes())
    per_class = (class_column(kind, name) for kind in PER_CLASS_KINDS for name in classes)
    return {**dict.fromkeys(_TEXT, "text"), **dict.fromkeys(_COUNTS, "count"), **dict.fromkeys(_INTS, "int"),
            **dict.fromkeys(_FLOATS, "float"), **dict.fromkeys(per_class, "float"),
            **{axis.column: "count" if axis.counts_images else "text" for axis in axes}}


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


def read_results(sweep_dir: str | Path) -> list[Row]:
    """Typed rows (keys :func:`result_columns` of the class names the file's per-class columns hold; absent or empty
    values None) of a sweep's results."""
    path = results_path(Path(sweep_dir))
    raw: list[tuple[str, dict]] = []  # (where, values) for error messages
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as file:  # -sig: spreadsheets prepend a byte-order mark
            reader = csv.DictReader(file)
            columns = [(name or "").strip() for name in reader.fieldnames or []]
            for column in REQUIRED:
                if column not in columns:
                    raise SimsegError(f"{path} has no '{column}' column: add it (required columns: "
                                      f"{', '.join(REQUIRED)})")
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
            missing = next((column for column in REQUIRED if column not in values), None)
            if missing:
                raise SimsegError(f"{path} line {number} has no '{missing}' key: add it (required: "
                                  f"{', '.join(REQUIRED)})")
            raw.append((f"{path} line {number}", values))
    if not raw:
        raise SimsegError(f"{path} has no rows: no cell has finished yet; rerun `simseg report` when one has")
    classes = class_names(key for _, values in raw for key in values)
    return [_typed_row({_canonical(key): value for key, value in values.items()}, where, classes)
            for where, values in raw]


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
            raise SimsegError(f"{where} has an empty '{column}': fill it in (required: {', '.join(REQUIRED)})")
    if row["cell"] is None:
        row["cell"] = cell_name(row["init"], row["subset"], row["seed"], variant_of(row))
    return {column: row[column] for column in result_columns(classes)}


def _parse(kind: str, column: str, value: Any, where: str) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if kind == "text":
        return str(value).strip()
    if kind == "count":
        return parse_size(value, f"{where}: {column}")
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


def result_row(cell: Cell, metrics: dict, sweep_dir: Path) -> dict:
    """One results row (keys :func:`result_columns` of the run's class names) from a cell and its run's
    ``metrics.json``; the classes are the run folder's ``classes.json`` (pets for a run made before runs recorded
    them). A variant axis's column holds what the run recorded, else the cell's value (else what older runs recorded
    in its place)."""
    variant = dict(cell.variant)
    classes = read_run_label_set(cell.run_dir(sweep_dir)).names
    per_class = {class_column(kind, name): (metrics.get(kind) or {}).get(name)
                 for kind in PER_CLASS_KINDS for name in classes}
    row = {
        "cell": cell.name, init_axis().column: cell.init.label, "init_path": cell.init.path,
        **{axis.column: metrics.get(axis.column) or variant.get(axis.column)
           or (axis.old_metrics(metrics) if axis.old_metrics else None) for axis in variant_axes()},
        **{axis.column: cell.init.pretrained_with(axis.column) for axis in pretraining_axes()},
        "intermediate": cell.init.intermediate, "base_init": cell.init.base_init, "subset": cell.subset,
        "seed": cell.seed, **{k: metrics.get(k) for k in (*_SCORES, *COST, *_RUN)}, **per_class,
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
