"""Pretraining's unlabelled images: any source (folder, ``datasets`` dataset, table files, image cache,
``synthetic``) opened as an :class:`~simseg.data.sources.ImageSource`, and the held-out / training split."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from simseg.data.image_cache import is_cache, open_cache
from simseg.data.sources import DatasetSource, FolderSource, ImageSource, SyntheticSource, is_table_folder, looks_local
from simseg.errors import SimsegError
from simseg.sizes import format_size, parse_size


def open_image_source(data_cfg, stream: str) -> ImageSource:
    """The source named by ``data_cfg.source`` (an image cache made by ``simseg data cache`` included).

    ``stream`` separates the synthetic images of different stages, so the demo never pretrains on the images it
    later tests segmentation on.
    """
    source = data_cfg.source
    if source == "synthetic":
        seed = zlib.crc32(f"{stream}:{data_cfg.synthetic_seed}".encode())
        return SyntheticSource(data_cfg.synthetic_size, seed, data_cfg.synthetic_image_size)
    path = Path(source).expanduser()
    if is_cache(path):
        return open_cache(path)
    if path.is_dir() and not is_table_folder(path):
        return FolderSource(path)
    if path.exists() or looks_local(source):
        if not path.exists():
            raise SimsegError(f"data.source {source} does not exist: check the path")
        return DatasetSource.from_local(path, data_cfg.split, data_cfg.image_column)
    return DatasetSource.from_hub(source, data_cfg.split, data_cfg.image_column)


def split_indices(count: int, val_size: int, subset: int | None, seed: int,
                  source_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, val) index arrays.

    The validation images are held out first, so they are the same for every subset size of one seed, and the
    training subset is a prefix of one permutation, so smaller subsets are nested in larger ones.
    """
    if val_size >= count:
        raise SimsegError(f"data.val_size={val_size} leaves no training images in {source_name} ({count:,} images)")
    order = np.random.default_rng(seed).permutation(count)
    val, rest = order[:val_size], order[val_size:]
    if subset is not None:
        if subset > len(rest):
            raise SimsegError(
                f"data.subset={format_size(subset)} asks for {subset:,} training images but {source_name} has "
                f"{count:,} "
                f"({len(rest):,} after holding out {val_size} for validation): choose a smaller data.subset")
        rest = rest[:subset]
    return rest, val


def pretraining_split(source: ImageSource, data_cfg, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`split_indices` of ``source`` with the sizes a pretraining data section asks for."""
    subset = parse_size(data_cfg.subset, "data.subset") if data_cfg.subset else None
    return split_indices(len(source), resolve_val_size(data_cfg, len(source)), subset, seed, source.name)


def default_val_size(count: int) -> int:
    """min(1% of the images, 500), at least one."""
    return max(1, min(round(0.01 * count), 500))


def resolve_val_size(data_cfg, count: int) -> int:
    return default_val_size(count) if data_cfg.val_size is None else parse_size(data_cfg.val_size, "data.val_size")
