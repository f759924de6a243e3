"""The synthetic shapes (``data.source=synthetic-shapes``: background + six shapes) written to disk in each layout a
user may bring, so every format has a working example (``simseg data synthetic --out DIR --layout LAYOUT``)::

    mask-folder   images/NAME.png + masks/NAME.png (class ids 0..6) + classes.json (names, colours)
    palette       images/NAME.png + masks/NAME.png (palette PNG: ids as indices, colours in the palette)
                  + classes.json (names only: {"title": ..., "names": [...]})
    colour        images/NAME.png + masks/NAME.png (RGB, each class in its colour) + classes.json (names,
                  "#rrggbb" colours: the file colour masks need)
    binary        images/NAME.png + masks/NAME_mask.png (0 background, 255 any shape: the 2-class case), no class
                  file: read with data.label_map=0:0,255:1
    hf            a datasets save_to_disk folder: columns image, mask (Image), name, classes (the ids in each mask, a
                  list of ClassLabel whose names are the classes)

``split`` puts the last quarter of the images in a test split (``images/test/`` + ``masks/test/``, the rest under
``train/``; a ``DatasetDict`` with train and test for hf). The folder is written beside ``out`` and renamed into
place when complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from simseg.data.class_file import colour_code
from simseg.data.synthetic_pairs import SYNTHETIC_SHAPES, SyntheticPairsSource
from simseg.errors import SimsegError

LAYOUTS = ("mask-folder", "palette", "colour", "binary", "hf")


def held_out_count(count: int) -> int:
    """Images in the test split of ``count``: a quarter, at least one."""
    return max(1, count // 4)


def write_synthetic(out: str | Path, layout: str, count: int = 120, size: int = 96, seed: int = 0,
                    split: bool = False) -> Path:
    """Write ``count`` synthetic ``size`` px images of ``seed`` with their 7-class masks to ``out`` in ``layout``;
    ``out`` must not exist or be empty."""
    if layout not in LAYOUTS:
        raise SimsegError(f"--layout {layout} is unknown; choose one of {', '.join(LAYOUTS)}")
    if count < (2 if split else 1) or size < 32:
        raise SimsegError(f"--count {count} and --size {size}: need at least {2 if split else 1} images of at least "
                          f"32 px")
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SimsegError(f"--out {out} exists and is not an empty folder: choose another or delete it")
    out.parent.mkdir(parents=True, exist_ok=True)
    source = SyntheticPairsSource(count, seed, size, "shapes")
    first_test = count - held_out_count(count)
    parts = {"train": range(first_test), "test": range(first_test, count)} if split else {"": range(count)}
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(work, 0o777 & ~umask)  # mkdtemp's folder is owner-only; the result should be as readable as any folder
    try:
        if layout == "hf":
            _write_dataset(work, source, parts)
        else:
            _write_folders(work, layout, source, parts)
        if out.exists():
            out.rmdir()
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


def segment_command(out: Path, layout: str, count: int, split: bool) -> str:
    """The command that segments on what :func:`write_synthetic` wrote."""
    keys = [f"data.source={out}"]
    if not split:
        keys.append(f"data.test_size={held_out_count(count)}")
    if layout == "binary":
        keys.append("data.label_map=0:0,255:1")
    return "simseg segment " + " ".join(keys)


def _class_records(colours_as_codes: bool) -> list[dict]:
    return [{"name": name, "colour": colour_code(colour) if colours_as_codes else list(colour)}
            for name, colour in zip(SYNTHETIC_SHAPES.names, SYNTHETIC_SHAPES.colours)]


def _mask_image(ids: np.ndarray, layout: str) -> Image.Image:
    """(H, W) class ids as ``layout`` stores them."""
    if layout == "palette":
        mask = Image.fromarray(ids, mode="P")
        mask.putpalette(SYNTHETIC_SHAPES.palette())
        return mask
    if layout == "colour":
        return Image.fromarray(np.asarray(SYNTHETIC_SHAPES.colours, dtype=np.uint8)[ids], mode="RGB")
    if layout == "binary":
        return Image.fromarray(np.where(ids > 0, 255, 0).astype(np.uint8), mode="L")
    return Image.fromarray(ids, mode="L")


def _write_folders(root: Path, layout: str, source: SyntheticPairsSource, parts: dict[str, range]) -> None:
    suffix = "_mask" if layout == "binary" else ""
    for part, indices in parts.items():
        for folder in ("images", "masks"):
            (root / folder / part).mkdir(parents=True, exist_ok=True)
        for index in indices:
            image, ids = source.pair(index)
            name = source.names[index]
            image.save(root / "images" / part / f"{name}.png")
            _mask_image(ids, layout).save(root / "masks" / part / f"{name}{suffix}.png")
    title = SYNTHETIC_SHAPES.title
    record = {"mask-folder": {"title": title, "classes": _class_records(False)},
              "palette": {"title": title, "names": list(SYNTHETIC_SHAPES.names)},
              "colour": {"title": title, "classes": _class_records(True)}}.get(layout)
    if record is not None:
        (root / "classes.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _write_dataset(root: Path, source: SyntheticPairsSource, parts: dict[str, range]) -> None:
    import datasets

    listed = datasets.Sequence(datasets.ClassLabel(names=list(SYNTHETIC_SHAPES.names)))  # the names ride here
    features = datasets.Features({"image": datasets.Image(), "mask": datasets.Image(), "name": datasets.Value("string"),
                                  "classes": listed})
    tables = {}
    for part, indices in parts.items():
        rows: dict[str, list] = {"image": [], "mask": [], "name": [], "classes": []}
        for index in indices:
            image, ids = source.pair(index)
            rows["image"].append(image)
            rows["mask"].append(Image.fromarray(ids, mode="L"))
            rows["name"].append(source.names[index])
            rows["classes"].append(np.unique(ids).tolist())
        tables[part] = datasets.Dataset.from_dict(rows, features=features)
    dataset = tables[""] if "" in tables else datasets.DatasetDict(tables)
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # one line says what was written, not a bar per split
    try:
        dataset.save_to_disk(str(root))
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
