"""The check before training: every mask of a run read once, its pixels counted per class, kept with the image cache.

Reading each item's pair through its source checks what the source checks (values, sizes, pairing), so a bad file is
named before the first epoch rather than when an epoch first draws it. The counts then say how the classes are spread
over the splits, and warn about a class the model will barely see::

    survey = survey_masks(source, items, run_dir / "data_cache")              # reads only what it has not read
    lines, warnings = survey.class_table(source.label_set, {"train": train, "test": test})
    shares = {split: survey.shares(its_items) for split, its_items in splits.items()}   # for classes.json

The counts are stored in ``folder`` as one .npz per source, keyed by the source's fingerprint and its label set: a
later run reuses them, extends them when it asks for items not counted yet (reading only those), and counts again
from scratch when the source or its classes changed.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock
from tqdm import tqdm

from simseg.data.label_set import LabelSet
from simseg.errors import SimsegError
from simseg.files import atomic_write

RARE_SHARE = 0.001  # a class under 0.1% of the training pixels is warned about


@dataclass
class MaskSurvey:
    """Per surveyed item (source index, ascending in ``items``): ``pixels`` (N, C+1) int64, the pixels of each class
    id 0..C-1 and, last, the ignored ones; ``sizes`` (N, 2) int64 (height, width); ``names`` the class names."""

    items: np.ndarray
    pixels: np.ndarray
    sizes: np.ndarray
    names: tuple[str, ...]

    def rows(self, items: Sequence[int]) -> np.ndarray:
        """Row of each of ``items``; a KeyError names one that was not surveyed."""
        items = np.asarray(items, dtype=np.int64)
        rows = np.searchsorted(self.items, items)
        held = rows < len(self.items)
        held[held] = self.items[rows[held]] == items[held]
        if not held.all():
            raise KeyError(f"item {items[~held][0]} was not surveyed")
        return rows

    def counts(self, items: Sequence[int]) -> np.ndarray:
        """(len(items), C+1) pixel counts: class ids 0..C-1, then ignored."""
        return self.pixels[self.rows(items)]

    def dominant_groups(self, items: Sequence[int]) -> list[str]:
        """Each item's most frequent class among ids >= 1 it holds (class 0's name when it holds none): the strata
        of a split for sources without breeds. Not the plain most frequent class, which would be the background
        (class 0) in nearly every image and so stratify nothing; ties go to the lower id."""
        objects = self.counts(items)[:, 1:len(self.names)]  # (N, C-1)
        if not objects.shape[1]:
            return [self.names[0]] * len(objects)
        return [self.names[b + 1] if row[b] > 0 else self.names[0] for b, row in zip(objects.argmax(1), objects)]

    def shares(self, items: Sequence[int]) -> dict[str, dict]:
        """Per class name: ``pixel_share`` (of the labelled, non-ignored pixels of ``items``; None when they hold
        none) and ``images`` (how many of ``items`` hold at least one pixel of it)."""
        labelled = self.counts(items)[:, :len(self.names)]  # (N, C)
        total = int(labelled.sum())
        return {name: {"pixel_share": float(labelled[:, c].sum() / total) if total else None,
                       "images": int((labelled[:, c] > 0).sum())} for c, name in enumerate(self.names)}

    def class_table(self, label_set: LabelSet, splits: dict[str, Sequence[int]]) -> tuple[list[str], list[str]]:
        """(lines of a plain-text table with a row per class: id, name, and for each split its share of the split's
        labelled pixels and the images holding it, then the ignored pixels' share of all; warning lines). The first
        split is the training subset: a class absent from it, or under 0.1% of its labelled pixels, is warned about.
        """
        if label_set.names != self.names:
            raise ValueError(f"label set {label_set.names} is not the surveyed one {self.names}")
        figures = {split: self.shares(items) for split, items in splits.items()}
        width = max(len("(ignored)"), *map(len, self.names))
        columns = [(f"{split} pixels", f"{split} images") for split in splits]

        def row(first: str, name: str, cells: list[tuple[str, str]]) -> str:
            return (f"{first:>3}  {name:<{width}}" + "".join(f"  {a:>{len(ha)}}  {b:>{len(hb)}}"
                                                               for (a, b), (ha, hb) in zip(cells, columns))).rstrip()

        lines = [row("id", "class", columns)]
        for c, name in enumerate(self.names):
            cells = [figures[split][name] for split in splits]
            lines.append(row(str(c), name, [(_percent(f["pixel_share"]), f"{f['images']:,}") for f in cells]))
        lines.append(row("", "(ignored)", [(_percent(_ignored_share(self.counts(items))), "")
                                           for items in splits.values()]))
        split, items = next(iter(splits.items()))
        warnings = []
        for c, name in enumerate(self.names):
            share, images = figures[split][name]["pixel_share"], figures[split][name]["images"]
            if images == 0:
                warnings.append(f"class {c} '{name}' is in none of the {len(items):,} {split} images: the model never "
                                f"sees it, so its IoU will stay 0; label images that show it, or drop the class")
            elif share is not None and share < RARE_SHARE:
                warnings.append(f"class {c} '{name}' is only {share:.3%} of the labelled pixels of the {len(items):,} "
                                f"{split} images (under {RARE_SHARE:.1%}): its IoU will likely stay 0; label more "
                                f"images that show it")
        return lines, warnings


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share:.2%}"


def _ignored_share(counts: np.ndarray) -> float | None:
    total = int(counts.sum())
    return float(counts[:, -1].sum() / total) if total else None


def survey_path(folder: Path, source) -> Path:
    """The survey file of ``source`` in ``folder``: a readable name, then a hash of the source's name."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", Path(source.name).name or source.name).strip("-")[:40] or "source"
    return Path(folder) / f"masks-{slug}-{hashlib.sha256(source.name.encode()).hexdigest()[:8]}.npz"


def survey_masks(source, items: Sequence[int], folder: str | Path, progress: bool = True,
                 say: Callable[[str], None] = print) -> MaskSurvey:
    """The :class:`MaskSurvey` of ``source`` holding ``items``, from the survey file in ``folder`` when it holds them,
    else extended by reading the missing items' pairs (a bar "checking masks"), or made anew when the file's
    fingerprint or label set is not the source's. A pair the source refuses raises its SimsegError, naming the file.
    """
    label_set = source.label_set
    key = json.dumps([source.fingerprint(), label_set.to_json()], sort_keys=True)
    path = survey_path(Path(folder).expanduser(), source)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SimsegError(f"cannot create the data cache folder {path.parent} ({err.strerror}): set "
                          f"data.cache_dir to a writable folder") from None
    wanted = np.unique(np.asarray(items, dtype=np.int64))
    with FileLock(str(path) + ".lock"):
        old = _load(path, key, label_set.names, say)
        todo = wanted if old is None else np.setdiff1d(wanted, old.items)
        if old is not None and not len(todo):
            say(f"masks checked before: {len(old.items):,} in {path}, reused")
            return old
        pixels = np.zeros((len(todo), label_set.num_classes + 1), dtype=np.int64)
        sizes = np.zeros((len(todo), 2), dtype=np.int64)
        for row, index in enumerate(tqdm(todo, desc="checking masks", unit="mask", disable=not progress)):
            mask = np.asarray(source.pair(int(index))[1])  # (H, W) uint8 class ids; the source checks its values
            pixels[row] = _class_pixels(mask, label_set, source.names[index])
            sizes[row] = mask.shape
        if old is not None:
            todo, pixels, sizes = (np.concatenate([a, b]) for a, b in ((old.items, todo), (old.pixels, pixels),
                                                                         (old.sizes, sizes)))
        order = np.argsort(todo, kind="stable")
        survey = MaskSurvey(todo[order], pixels[order], sizes[order], label_set.names)
        atomic_write(path, lambda file: np.savez(file, key=np.array(key), items=survey.items, pixels=survey.pixels,
                                                  sizes=survey.sizes))
        say(f"masks checked: {len(todo) - (0 if old is None else len(old.items)):,} read, {len(todo):,} counted in "
            f"{path}")
        return survey


def _class_pixels(mask: np.ndarray, label_set: LabelSet, name: str) -> np.ndarray:
    """(C+1,) pixels of each class id, then of the ignore value, in one (H, W) mask."""
    counts = np.bincount(mask.ravel().astype(np.int64), minlength=max(256, label_set.ignore_index + 1))
    num = label_set.num_classes
    stray = [v for v in np.flatnonzero(counts) if v >= num and v != label_set.ignore_index]
    if stray:  # a source lets through only class ids and the ignore value: this is a reader's bug
        raise SimsegError(f"the mask of {name} holds class id {stray[0]} but {label_set.title or 'the data'} has "
                          f"{num} classes (ids 0..{num - 1}, {label_set.ignore_index} ignored): check the class file")
    return np.append(counts[:num], counts[label_set.ignore_index])


def _load(path: Path, key: str, names: tuple[str, ...], say: Callable[[str], None]) -> MaskSurvey | None:
    """The stored survey if it was made from this key (source fingerprint and label set); else None."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            if str(stored["key"]) != key:
                say(f"mask survey {path}: the source or its classes changed; checking the masks again")
                return None
            return MaskSurvey(stored["items"], stored["pixels"], stored["sizes"], names)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        say(f"mask survey {path} cannot be read; checking the masks again")
        return None
