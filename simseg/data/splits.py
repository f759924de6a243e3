"""Seeded, reproducible splits of labelled data: a fixed test set and a fixed validation set, then nested training
subsets stratified by group (breed or class), and the split files (one item name per line) a run folder keeps. A split
the data already has (train/test folders, ``data.train_list`` / ``data.test_list``) is used as given instead of
drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simseg.errors import SimsegError
from simseg.files import atomic_write_text
from simseg.sizes import format_size


def segmentation_splits(count: int, test_size: int, subset: int | None, seed: int, groups: list[str] | None,
                        val_size: int = 0, source_name: str = "the source", test_seed: int | None = None,
                        given: dict[str, list[int]] | None = None) -> dict[str, np.ndarray]:
    """Seeded index arrays ``test``, ``val`` and ``train`` over ``count`` items.

    ``given`` (a source's ``given_split``: ``test`` and optionally ``train`` index lists) is a split the data
    already has: see :func:`given_splits`, which then decides and ignores ``test_size``. Otherwise:

    ``test`` (sorted) is a draw of ``test_size`` items, stratified by ``groups`` when given; it depends only on
    (count, test_size, test_seed, groups), so every run of a sweep tests on the same images (``test_seed`` defaults
    to ``seed``; give it to keep one test set across training seeds). ``val`` is the first ``val_size`` items of one
    fixed stratified order of the other items (:func:`validation_split`): like the test set it depends on neither
    ``seed`` nor ``subset``, so every cell of a sweep chooses its epoch on the same images, and smaller validation
    sets are nested in larger ones. The items left are put in one ``seed``-drawn order that is stratified at every
    prefix, and ``train`` is its first ``subset`` items (all if None), so smaller subsets are nested in larger ones.
    With ``val_size`` 0 that order is the one runs made before the fixed validation set drew. Groups of one item are
    pooled for the test draw; when even that cannot be stratified (fewer test items than groups) the draw is plain
    random.
    """
    if groups is not None and len(groups) != count:
        raise ValueError(f"{len(groups)} groups for {count} items")
    if given is not None and given.get("test") is not None:
        return given_splits(count, given, subset, seed, groups, val_size, source_name, test_seed)
    from sklearn.model_selection import train_test_split  # seconds to import: only when a test set is drawn
    if not 1 <= test_size < count:
        raise SimsegError(f"data.test_size={test_size:,} asks for {test_size:,} test images but {source_name} has "
                          f"{count:,}: choose 1 <= data.test_size < {count:,}")
    test_seed = seed if test_seed is None else test_seed
    _, test = train_test_split(np.arange(count), test_size=test_size, random_state=test_seed,
                               stratify=_test_strata(groups, test_size))
    test = np.sort(test)
    left = count - test_size
    if not 0 <= val_size < left:
        raise SimsegError(f"data.val_size={val_size:,} leaves no training images in {source_name} ({left:,} left "
                          f"after the {test_size:,}-image test set): choose data.val_size < {left:,}")
    if subset is not None and not 1 <= subset <= left - val_size:
        held = f" (and {val_size:,} for validation)" if val_size else ""
        raise SimsegError(f"data.subset={format_size(subset)} asks for {subset:,} training images but {source_name} "
                          f"has only {left - val_size:,} left after the {test_size:,}-image test set{held}: choose "
                          f"data.subset <= {left - val_size:,}")
    val, rest = validation_split(np.setdiff1d(np.arange(count), test), val_size, test_seed, groups)
    train = _training_order(rest, seed, groups)[:subset]
    if np.intersect1d(test, np.concatenate([val, train])).size or np.intersect1d(val, train).size:
        raise AssertionError("the test, validation and training images overlap")  # kept under python -O
    return {"test": test, "train": train, "val": val}


def given_splits(count: int, given: dict[str, list[int]], subset: int | None, seed: int, groups: list[str] | None,
                 val_size: int = 0, source_name: str = "the source",
                 test_seed: int | None = None) -> dict[str, np.ndarray]:
    """The split the data gives: ``test`` exactly ``given["test"]``, in its order; the training pool
    ``given["train"]`` (every other item without it). ``val`` is the fixed validation draw from the pool
    (:func:`validation_split` with ``test_seed``, default ``seed``), as drawn splits take it; ``train`` is the rest of
    the pool in its given order when ``subset`` is None (so a run's ``train_images.txt`` given back reproduces that
    run), else the first ``subset`` items of the rest's ``seed``-drawn stratified order, nested as drawn subsets
    are."""
    test = np.asarray(given["test"], dtype=np.int64)
    train_given = given.get("train")
    pool = (np.asarray(train_given, dtype=np.int64) if train_given is not None
            else np.setdiff1d(np.arange(count), test))
    both = np.intersect1d(test, pool)
    if both.size:
        raise SimsegError(f"the given split of {source_name} puts {both.size:,} items in both the training and the "
                          f"test set (item {both[0]} first): fix data.train_list / data.test_list or the folders")
    if not len(test) or not len(pool):
        raise SimsegError(f"the given split of {source_name} has {len(pool):,} training and {len(test):,} test "
                          f"items: both need some; check data.train_list / data.test_list or the folders")
    if not 0 <= val_size < len(pool):
        raise SimsegError(f"data.val_size={val_size:,} leaves no training images in the {len(pool):,} that "
                          f"{source_name}'s split gives for training: choose data.val_size < {len(pool):,}")
    if subset is not None and not 1 <= subset <= len(pool) - val_size:
        raise SimsegError(f"data.subset={format_size(subset)} asks for {subset:,} training images but the split of "
                          f"{source_name} gives {len(pool) - val_size:,} (after {val_size:,} for validation): "
                          f"choose data.subset <= {len(pool) - val_size:,}")
    val, rest = validation_split(pool, val_size, seed if test_seed is None else test_seed, groups)
    train = pool[~np.isin(pool, val)] if subset is None else _training_order(rest, seed, groups)[:subset]
    return {"test": test, "train": train, "val": val}


def validation_split(pool: np.ndarray, val_size: int, test_seed: int,
                     groups: list[str] | None) -> tuple[np.ndarray, np.ndarray]:
    """(``val``, the rest of ``pool``): ``val`` is the first ``val_size`` items of one stratified order of ``pool``
    drawn with ``test_seed`` alone, so it is the same for every training seed and subset, and a smaller validation
    set is a prefix of a larger one. ``val_size`` 0 leaves ``pool`` whole, in its order, touching no generator."""
    if not val_size:
        return pool[:0], pool
    order = stratified_order(pool, None if groups is None else [groups[i] for i in pool],
                             np.random.default_rng([test_seed, 2]))
    val = order[:val_size]
    return val, pool[~np.isin(pool, val)]


def _training_order(pool: np.ndarray, seed: int, groups: list[str] | None) -> np.ndarray:
    """The ``seed``-drawn order of the training pool, stratified at every prefix: subsets are its prefixes."""
    return stratified_order(pool, None if groups is None else [groups[i] for i in pool],
                            np.random.default_rng([seed, 1]))


def given_split_from_lists(names: list[str], train_list: str, test_list: str) -> dict[str, list[int]] | None:
    """``{"test": [...], "train": [...]}`` indices into ``names`` of the names the list files hold (one a line,
    blank lines skipped; ``train`` only with a ``train_list``), in the files' order; None without a test list.
    A name the source lacks, or one listed twice, is an error naming the file and the name."""
    if not test_list:
        return None
    index = {name: i for i, name in enumerate(names)}
    split = {}
    for key, path in (("test", test_list), ("train", train_list)):
        if not path:
            continue
        try:
            listed = [line.strip() for line in Path(path).expanduser().read_text(encoding="utf-8-sig").splitlines()]
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or type(err).__name__
            raise SimsegError(f"data.{key}_list={path} cannot be read ({reason}): give a text file with one item "
                              f"name per line") from None
        listed = [n for n in listed if n]
        unknown = next((n for n in listed if n not in index), None)
        if unknown is not None:
            raise SimsegError(f"data.{key}_list={path} names {unknown!r}, which the data does not hold "
                              f"({sum(n not in index for n in listed):,} of its {len(listed):,} names are unknown): "
                              f"check the file and data.source")
        twice = next((n for n in listed if listed.count(n) > 1), None) if len(set(listed)) < len(listed) else None
        if twice is not None:
            raise SimsegError(f"data.{key}_list={path} names {twice!r} twice: list each item once")
        split[key] = [index[n] for n in listed]
    return split


def _test_strata(groups: list[str] | None, test_size: int) -> np.ndarray | None:
    """Group codes for stratifying the test draw with single-item groups pooled, or None if it cannot be done."""
    if groups is None:
        return None
    _, codes, sizes = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    codes = np.where(sizes[codes] < 2, -1, codes)  # train_test_split needs two members per group
    sizes = np.unique(codes, return_counts=True)[1]
    return codes if sizes.min() >= 2 and len(sizes) <= min(test_size, len(codes) - test_size) else None


def stratified_order(items: np.ndarray, labels: list[str] | None, rng: np.random.Generator) -> np.ndarray:
    """``items`` shuffled so that every prefix holds each label in about its overall share (within an item).

    Each group is shuffled, its k-th member gets the key (k + 0.5) / group size, and items are sorted by key, ties
    broken at random: the groups interleave like evenly spaced points on [0, 1].
    """
    if labels is None:
        return rng.permutation(items)
    codes = np.unique(np.asarray(labels), return_inverse=True)[1]
    key = np.empty(len(items))
    for code in range(codes.max() + 1):
        members = rng.permutation(np.flatnonzero(codes == code))
        key[members] = (np.arange(len(members)) + 0.5) / len(members)
    return items[np.lexsort((rng.random(len(items)), key))]


def save_split(path: str | Path, names: list[str]) -> None:
    """Write item names one per line (atomically), e.g. the test set into a run folder."""
    if any("\n" in n or "\r" in n for n in names):
        raise ValueError("split item names cannot contain line breaks")
    atomic_write_text(path, "".join(f"{n}\n" for n in names))


def load_split(path: str | Path) -> list[str]:
    """The item names :func:`save_split` wrote."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise SimsegError(f"split file {path} does not exist: check the run folder") from None
