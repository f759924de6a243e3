"""A sweep's validation set: how many images (``--val-size N|auto``), the labelled pool they come from, the check
that the subsets fit beside them, and the record that keeps one sweep folder on one validation set.

The validation images are one fixed draw from the labelled images left after the test set
(:func:`simseg.data.splits.validation_split`): the same for every subset, seed and init, so every cell chooses its
reported epoch on the same images and the cells stay comparable. ``auto`` holds out a tenth of the pool, at most
100 images; the synthetic sources, which grow with the subset, hold out 16.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from simseg.config.segment import SegmentConfig
from simseg.errors import SimsegError
from simseg.sizes import format_size, parse_size

AUTO_SHARE, AUTO_MOST, AUTO_SYNTHETIC = 10, 100, 16  # auto: pool // 10, at most 100; synthetic sources: 16
VAL_FLAG = "--val-size"
VAL_KEY = "data.val_size"


class LabelledPool(NamedTuple):
    """The labelled images a sweep's cells draw validation and training images from."""
    source: str  # the source's name, for messages
    test_images: int
    images: int  # left after the test set (the data's own training split when it gives one)


def labelled_pool(template: SegmentConfig) -> LabelledPool | None:
    """The pool of the template's labelled source, or None for a synthetic source (it grows with the subset)."""
    from simseg.data.pair_sources import open_segmentation_pairs
    from simseg.data.synthetic_pairs import SYNTHETIC_MODES

    if template.data.source in SYNTHETIC_MODES:
        return None
    source = open_segmentation_pairs(template.data)
    test_size = template.data.sizes()[0]
    given = source.given_split  # the data's own train/test split replaces the drawn test set (data.test_size)
    if given is not None and given.get("test") is not None:
        test_size = len(given["test"])
        pool = len(given["train"]) if given.get("train") is not None else len(source) - test_size
    else:
        pool = len(source) - test_size
    return LabelledPool(source.name, test_size, pool)


def auto_val_size(pool: LabelledPool | None) -> int:
    """``--val-size auto``: a tenth of the pool, at most 100; 16 for a synthetic source (``pool`` None)."""
    return AUTO_SYNTHETIC if pool is None else min(AUTO_MOST, pool.images // AUTO_SHARE)


def parse_val_size(text: str) -> int | str:
    """``auto`` or a size (``0``, ``50``, ``1k``) of ``--val-size``."""
    text = text.strip()
    return "auto" if text == "auto" else 0 if text == "0" else parse_size(text, VAL_FLAG)


def recorded_val_size(sweep: dict | None) -> int | None:
    """The validation size a sweep folder's ``sweep.json`` records: its grid's ``val_size``, else (sweeps made before
    it was recorded) its segmentation config's ``data.val_size``; None without a record."""
    if not sweep:
        return None
    if "val_size" in sweep.get("grid", {}):
        return int(sweep["grid"]["val_size"])
    text = ((sweep.get("segment_config") or {}).get("data") or {}).get("val_size")
    return None if text is None else 0 if str(text).strip() == "0" else parse_size(text, VAL_KEY)


def choose_val_size(flag: str | None, template: SegmentConfig, pool: LabelledPool | None, overrides: list[str],
                    sweep_file: Path, recorded: int | None) -> tuple[int, str]:
    """(validation images for every cell, the line that says so).

    ``--val-size`` decides; without it the template's own ``data.val_size`` when it holds out images (a config file
    or ``data.val_size=N``), else the size the sweep folder records (so a sweep made before the flag resumes as it
    ran), else ``auto``. The flag and ``data.val_size=N`` together, or a size other than the recorded one, are
    refused: every cell of a sweep must share one validation set."""
    given_key = any(item.partition("=")[0].strip() == VAL_KEY for item in overrides)
    if flag is not None and given_key:
        raise SimsegError(f"{VAL_KEY} is set by {VAL_FLAG} for every cell: drop {VAL_KEY}=... or {VAL_FLAG}")
    own = template.data.sizes()[2]
    if flag is not None:
        wanted, how = parse_val_size(flag), f"{VAL_FLAG} {flag}"
    elif own:
        wanted, how = own, f"{VAL_KEY}={own}"
    elif recorded is not None:
        wanted, how = recorded, f"as {sweep_file.name} records"
    else:
        wanted, how = "auto", f"{VAL_FLAG} auto"
    size = auto_val_size(pool) if wanted == "auto" else wanted
    if recorded is not None and size != recorded:
        raise SimsegError(f"{sweep_file} records a validation set of {recorded:,} images, and {how} asks for "
                          f"{size:,}: the cells of a sweep share one validation set; rerun with {VAL_FLAG} "
                          f"{recorded} or choose another --output-dir")
    if not size:
        return 0, f"sweep: no validation set ({VAL_FLAG} 0): every cell reports its last epoch"
    where = "the synthetic source's images" if pool is None else f"the {pool.images:,} labelled images of " \
        f"{pool.source} left after the test set"
    return size, (f"sweep: validation set of {size:,} images ({how}), one fixed draw from {where}, the same for "
                  f"every subset and seed; each cell reports its best epoch on it")


def check_subsets_fit(pool: LabelledPool | None, subsets: list[int], val_size: int) -> None:
    """Refuse, before anything runs, a validation set or a subset larger than the labelled images allow (a synthetic
    source, ``pool`` None, grows with them)."""
    if pool is None:
        return
    if val_size >= pool.images:
        raise SimsegError(f"{VAL_FLAG} {val_size:,} leaves no training images: {pool.source} has {pool.images:,} "
                          f"after the {pool.test_images:,}-image test set; choose {VAL_FLAG} auto "
                          f"({auto_val_size(pool):,} here) or 0")
    available = pool.images - val_size
    too_big = [s for s in subsets if s > available]
    if too_big:
        raise SimsegError(f"--subsets {format_size(too_big[0])} asks for {too_big[0]:,} labelled images but "
                          f"{pool.source} has {available:,} after the {pool.test_images:,}-image test set"
                          + (f" and {val_size:,} validation images" if val_size else "")
                          + f": use sizes up to {format_size(available)}"
                          + (f" or a smaller {VAL_FLAG}" if val_size else ""))
