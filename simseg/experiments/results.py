"""A sweep's results: the row each finished cell adds, ``results.csv`` / ``results.jsonl`` written from them, and
read back as typed rows (with ``sweep.json``).

Hand-written tables are welcome (the report works from them alone): only init, subset, seed and miou are required,
image counts may be written as ``1k``, and every problem is one line naming the file, the line and the fix.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from simseg.errors import SimsegError
from simseg.experiments.grid import Cell, cell_name
from simseg.files import atomic_write_text
from simseg.sizes import parse_size

Row = dict[str, Any]
REQUIRED = ("init", "subset", "seed", "miou")
_TEXT = ("cell", "init", "init_path", "base_init", "arch", "aug", "recipe", "run_dir")
_COUNTS = ("pretrain_images", "subset", "train_images", "test_images")  # image counts: a hand-written '1k' is fine
_INTS = ("seed", "epochs")
CLASSES = ("background", "pet", "boundary")
PER_CLASS = tuple(f"{kind}_{name}" for kind in ("iou", "dice", "precision", "recall") for name in CLASSES)
COST = ("parameters", "encoder_parameters", "gflops", "inference_images_per_s")
_FLOATS = ("miou", "plain_miou", "pixel_accuracy", "mean_pixel_accuracy", "mean_dice", "fwiou", *PER_CLASS, *COST,
           "train_seconds", "images_per_s")


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
    """Typed rows (keys of :data:`simseg.experiments.grid.RESULT_COLUMNS`; absent or empty values None) of a
    sweep's results."""
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
    return [_typed_row(values, where) for where, values in raw]


def _typed_row(values: dict, where: str) -> Row:
    row = {column: _parse(column, values.get(column), where) for column in (*_TEXT, *_COUNTS, *_INTS, *_FLOATS)}
    row["intermediate"] = _parse_bool(values.get("intermediate"), where)
    for column in REQUIRED:
        if row[column] is None:
            raise SimsegError(f"{where} has an empty '{column}': fill it in (required: {', '.join(REQUIRED)})")
    if row["cell"] is None:
        row["cell"] = cell_name(row["init"], row["subset"], row["seed"], row["arch"], row["aug"], row["recipe"])
    return {column: row[column] for column in RESULT_COLUMNS}


def _parse(column: str, value: Any, where: str) -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if column in _TEXT:
        return str(value).strip()
    if column in _COUNTS:
        return parse_size(value, f"{where}: {column}")
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
        if column in _INTS:
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


RESULT_COLUMNS = (
    "cell", "arch", "aug", "recipe", "init", "init_path", "pretrain_images", "intermediate", "base_init", "subset",
    "seed",
    "miou", "plain_miou", "pixel_accuracy", "mean_pixel_accuracy", "mean_dice", "fwiou", *PER_CLASS, *COST,
    "train_seconds", "images_per_s", "epochs", "train_images", "test_images", "run_dir",
)
# metrics.json of runs made before model.arch named the model by its head
_ARCH_OF_HEAD = {"linear": "vit_linear", "linear_upsample": "vit_linear_upsample"}


def result_row(cell: Cell, metrics: dict, sweep_dir: Path) -> dict:
    """One results row (keys :data:`RESULT_COLUMNS`) from a cell and its run's ``metrics.json``."""
    per_class = {f"{kind}_{name}": (metrics.get(kind) or {}).get(name)
                 for kind in ("iou", "dice", "precision", "recall") for name in CLASSES}
    return {
        "cell": cell.name, "arch": metrics.get("arch") or _ARCH_OF_HEAD.get(metrics.get("head")),
        "aug": metrics.get("aug"), "recipe": metrics.get("recipe"), "init": cell.init.label,
        "init_path": cell.init.path,
        "pretrain_images": cell.init.pretrain_images, "intermediate": cell.init.intermediate,
        "base_init": cell.init.base_init, "subset": cell.subset, "seed": cell.seed,
        **{k: metrics.get(k) for k in ("miou", "plain_miou", "pixel_accuracy", "mean_pixel_accuracy", "mean_dice",
                                       "fwiou")},
        **per_class, **{k: metrics.get(k) for k in COST},
        **{k: metrics.get(k) for k in ("train_seconds", "images_per_s", "epochs", "train_images", "test_images")},
        "run_dir": cell.run_dir(sweep_dir).relative_to(sweep_dir).as_posix(),
    }


def write_results(sweep_dir: Path, rows: list[dict]) -> bool:
    """Rewrite ``results.csv`` and ``results.jsonl`` whole and atomically; False when they already hold ``rows``."""
    jsonl = "".join(json.dumps(row) + "\n" for row in rows)
    path = sweep_dir / "results.jsonl"
    if path.is_file() and path.read_text() == jsonl and (sweep_dir / "results.csv").is_file():
        return False
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else str(v).lower() if isinstance(v, bool) else v)
                         for k, v in row.items()})
    atomic_write_text(sweep_dir / "results.csv", text.getvalue())
    atomic_write_text(path, jsonl)
    return True
