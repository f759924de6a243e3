"""Pretraining's unlabelled images: any source (folder, ``datasets`` dataset, table files, image cache,
``synthetic``) or the union of several, opened as an :class:`~simseg.data.sources.ImageSource`; the images a list
excludes (``data.exclude``) left out; and the held-out / training split."""

from __future__ import annotations

import hashlib
import re
import zlib
from pathlib import Path

import numpy as np

from simseg.data.image_cache import ImageCache, is_cache, open_cache
from simseg.data.mask_folder import find_mask_folder
from simseg.data.pets import OxfordPetsSource
from simseg.data.sources import (
    DatasetSource,
    FolderSource,
    ImageSource,
    NamedSource,
    SubsetSource,
    SyntheticSource,
    UnionSource,
    is_table_folder,
    looks_local,
)
from simseg.data.synthetic_pairs import SYNTHETIC_MODES
from simseg.errors import SimsegError
from simseg.sizes import format_size, parse_size

_COMMENT = re.compile(r"(^|\s)#.*$")  # '#' at a line's start or after a space, as in requirements files


def open_image_source(data_cfg, stream: str) -> ImageSource:
    """The source named by ``data_cfg.source`` (an image cache made by ``simseg data cache`` included), or the union
    of the sources it lists (:class:`~simseg.data.sources.UnionSource`, items in the order listed).

    ``stream`` separates the synthetic images of different stages, so the demo never pretrains on the images it
    later tests segmentation on.
    """
    sources = list(data_cfg.source) if isinstance(data_cfg.source, (list, tuple)) else [data_cfg.source]
    if not sources:
        raise SimsegError("data.source is an empty list: name at least one source (a folder, a dataset, an image "
                          "cache or synthetic)")
    if not all(isinstance(s, str) and s.strip() for s in sources):
        raise SimsegError(f"data.source names an empty source ({sources!r}): drop it, or the stray comma")
    twice = next((s for s in sources if sources.count(s) > 1), None)
    if twice is not None:
        raise SimsegError(f"data.source lists {twice} twice: its images would count double; list each source once")
    parts = [_open_one(source, data_cfg, stream) for source in sources]
    return parts[0] if len(parts) == 1 else UnionSource(parts)


def _open_one(source: str, data_cfg, stream: str) -> ImageSource:
    if source in SYNTHETIC_MODES:  # synthetic-shapes labels the same pictures otherwise: their images are these
        seed = zlib.crc32(f"{stream}:{data_cfg.synthetic_seed}".encode())
        return SyntheticSource(data_cfg.synthetic_size, seed, data_cfg.synthetic_image_size)
    path = Path(source).expanduser()
    if is_cache(path):
        return open_cache(path)
    if path.is_dir() and not is_table_folder(path):
        # An Oxford-IIIT Pet folder's or a mask folder's unlabelled images are its photos: its masks are images too,
        # but not photos (a mask folder's train/ and test/ both count; data.exclude leaves its test images out).
        pets, masks = OxfordPetsSource.find_root(path), find_mask_folder(path)
        return FolderSource(pets / "images" if pets is not None else masks[0] if masks is not None else path)
    if path.exists() or looks_local(source):
        if not path.exists():
            raise SimsegError(f"data.source {source} does not exist: check the path")
        return DatasetSource.from_local(path, data_cfg.split, data_cfg.image_column)
    return DatasetSource.from_hub(source, data_cfg.split, data_cfg.image_column)


def open_pretraining_images(data_cfg, stream: str) -> tuple[ImageSource, dict]:
    """The images pretraining may use: :func:`open_image_source` less those ``data_cfg.exclude`` names, and the
    record of what was left out for the run folder (``{}`` without ``data.exclude``)::

        {"exclude": path, "exclude_sha256": of the file, "listed": names in it, "excluded": items dropped,
         "excluded_names": the listed names found in the source, sorted}
    """
    source = open_image_source(data_cfg, stream)
    if not data_cfg.exclude:
        return source, {}
    names, sha256 = read_exclude_file(data_cfg.exclude)
    kept, found = exclude_items(source, names)
    dropped = len(source) - len(kept)
    if not len(kept):
        raise SimsegError(f"data.exclude={data_cfg.exclude} names every image of {source.name}: nothing is left to "
                          f"pretrain on; check the file")
    if dropped:  # with nothing dropped the source stays itself, and so does its automatic cache
        source = SubsetSource(source, kept, f"{source.name} without {dropped:,} excluded")
    return source, {"exclude": data_cfg.exclude, "exclude_sha256": sha256, "listed": len(names), "excluded": dropped,
                    "excluded_names": found}


def read_exclude_file(path: str, key: str = "data.exclude") -> tuple[set[str], str]:
    """The image names a list file gives (one a line; blank lines and ``#`` comments skipped), and the file's
    SHA-256. ``key`` names the setting in the one-line error for a file that cannot be read."""
    try:
        data = Path(path).expanduser().read_bytes()
        text = data.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or type(err).__name__
        raise SimsegError(f"{key}={path} cannot be read ({reason}): give a text file with one image name per line, "
                          f"or set {key}= to exclude nothing") from None
    names = {line for line in (_COMMENT.sub("", raw).strip() for raw in text.splitlines()) if line}
    return names, hashlib.sha256(data).hexdigest()


def exclude_items(source: NamedSource, names: set[str], key: str = "data.exclude") -> tuple[np.ndarray, list[str]]:
    """The indices of ``source`` that ``names`` leave in (ascending), and the names that matched an item, sorted.
    A name matches an item whose name (``Abyssinian_107``) or file name (``Abyssinian_107.jpg``) it equals. Image
    caches keep no names, so they are refused."""
    parts = source.parts if isinstance(source, UnionSource) else [source]
    for part in parts:
        if isinstance(part, ImageCache):
            raise SimsegError(f"{key} cannot be applied to the image cache {part.path}: it keeps no image names; "
                              f"exclude when building the cache (`simseg data cache SOURCE --exclude FILE`) or point "
                              f"data.source at the image folder")
    keep, found = np.ones(len(source), dtype=bool), set()
    for index in range(len(source) if names else 0):
        matched = names.intersection((source.item_name(index), source.item_file_name(index)))
        if matched:
            keep[index] = False
            found |= matched
    return np.flatnonzero(keep), sorted(found)


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
