"""Image sources shared by all stages: an image folder, a Hugging Face ``datasets`` dataset, or ``synthetic``; and
two views of sources: the union of several (:class:`UnionSource`) and some items of one (:class:`SubsetSource`).

A source is an indexable collection of RGB PIL images with a way to name each item in error messages, and a
fingerprint that changes when its items do. Splitting (held-out validation, seeded subsets) works on indices, so
every source behaves the same.
"""

from __future__ import annotations

import bisect
import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from simseg.errors import SimsegError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
_DATASET_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_TABLE_EXTENSIONS = (".parquet", ".arrow")


class ImageSource(Protocol):
    name: str

    def __len__(self) -> int: ...

    def image(self, index: int) -> Image.Image:
        """The RGB image at ``index``; a :class:`SimsegError` naming the item if it cannot be read."""
        ...

    def fingerprint(self) -> str:
        """A digest of what the source holds that changes when any item does (names, file sizes and modification
        times; a dataset's own fingerprint; a synthetic seed): a cache made from it is reused while it holds."""
        ...


class NamedSource(ImageSource, Protocol):
    """A source whose items have names (every source but an image cache, which keeps none): what lists of images to
    leave out (``data.exclude``) are matched against."""

    def item_name(self, index: int) -> str:
        """The item's name without its image extension (``Abyssinian_107``), as split lists write it."""
        ...

    def item_file_name(self, index: int) -> str:
        """The item's file name (``Abyssinian_107.jpg``); its :meth:`item_name` when the item is no file."""
        ...


def digest(*parts: object) -> str:
    """SHA-256 of the parts, one per line: a fingerprint of things that have no files."""
    return hashlib.sha256("".join(f"{part}\n" for part in parts).encode()).hexdigest()


def files_fingerprint(paths: Iterable[Path]) -> str:
    """A fingerprint of files by path, size and modification time (a replaced or edited file changes it; the
    contents are not read)."""
    sha = hashlib.sha256()
    for path in paths:
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise SimsegError(f"{path} disappeared while reading the data: restore it or point data.source at the "
                              f"data as it is now") from None
        sha.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return sha.hexdigest()


def image_stem(file_name: str) -> str:
    """``file_name`` without an image extension (``a.b.jpg`` -> ``a.b``; ``a.b`` stays): names that are no files keep
    their dots."""
    return file_name[: file_name.rfind(".")] if file_name.lower().endswith(IMAGE_EXTENSIONS) else file_name


def looks_local(source: str) -> bool:
    """Whether ``source`` is meant as a local path (so a missing one is an error, never a hub look-up)."""
    return source.startswith(("/", "./", "../", "~")) or source.lower().endswith(IMAGE_EXTENSIONS + _TABLE_EXTENSIONS)


def is_table_folder(path: Path) -> bool:
    """Whether folder ``path`` holds a ``datasets`` dataset (``save_to_disk`` output, or parquet/arrow files and no
    images) rather than image files."""
    if any((path / marker).exists() for marker in _DATASET_MARKERS):
        return True
    return any(p.suffix in _TABLE_EXTENSIONS for p in path.iterdir()) and not any(
        p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir())


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image as 8-bit RGB: greyscale, palette, RGBA (alpha dropped) and CMYK through PIL's own conversion;
    16-bit and 32-bit greyscale scaled from their full range, which PIL's ``convert`` would clip to white."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        grey = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    return image.convert("RGB")  # a copy even when it is RGB already: the caller may close the file's image


def read_rgb(path: Path, upright: bool = False) -> Image.Image:
    """Decode an image file to RGB (:func:`to_rgb`), or fail in one line naming it. ``upright`` applies the EXIF
    orientation the camera recorded, so the pixels are the way a viewer shows the photo; training data is read as
    stored, the way its masks were drawn."""
    try:
        with Image.open(path) as image:
            if upright:
                ImageOps.exif_transpose(image, in_place=True)
            return to_rgb(image)
    except FileNotFoundError:
        raise SimsegError(f"image {path} disappeared while reading the data: restore it or rebuild the "
                          f"file list") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise SimsegError(f"image {path} cannot be read ({err.__class__.__name__}): delete or replace "
                          f"the file") from None


class FolderSource:
    """Every image below ``root``: ImageFolder layout (class folders; labels ignored here) or a flat folder.

    Extensions .jpg/.jpeg/.png/.webp in any case; files are sorted so indices are stable across machines.
    """

    def __init__(self, root: Path):
        self.root = root
        self.name = str(root)
        files = []
        for folder, subfolders, names in os.walk(root, followlinks=True):
            subfolders.sort()
            files += [Path(folder) / n for n in sorted(names)
                      if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")]
        if not files:
            raise SimsegError(f"data.source {root} holds no images ({', '.join(IMAGE_EXTENSIONS)}): check the folder")
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def image(self, index: int) -> Image.Image:
        return read_rgb(self.files[index])

    def item_name(self, index: int) -> str:
        return self.files[index].stem

    def item_file_name(self, index: int) -> str:
        return self.files[index].name

    def fingerprint(self) -> str:
        return files_fingerprint(self.files)


class DatasetSource:
    """A Hugging Face ``datasets`` dataset: saved with ``save_to_disk``, parquet/arrow files, or a hub name.

    Items are named by the first of :data:`NAME_COLUMNS` the dataset has (its file name without directories), else
    by their row number.
    """

    NAME_COLUMNS = ("image_id", "file_name", "filename")
    """Columns that name an image rather than describe it (a class-name column would name many images alike)."""

    def __init__(self, dataset, column: str, name: str):
        self.dataset, self.column, self.name = dataset, column, name
        self._file_names: list[str] | None = None  # read on first use: one column, without decoding any image

    @classmethod
    def from_local(cls, path: Path, split: str, image_column: str) -> DatasetSource:
        import datasets

        try:
            if path.is_dir() and any((path / marker).exists() for marker in _DATASET_MARKERS):
                dataset = datasets.load_from_disk(str(path))
            else:
                files = ([str(path)] if not path.is_dir() else
                         sorted(str(p) for p in path.iterdir() if p.suffix in _TABLE_EXTENSIONS))
                kind = "parquet" if files[0].endswith(".parquet") else "arrow"
                dataset = datasets.load_dataset(kind, data_files=files, split="train")
        except SimsegError:
            raise
        except Exception as err:  # datasets raises many types; the user needs the path and the reason
            raise SimsegError(f"data.source {path} is not a readable datasets dataset ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}): save it with save_to_disk or "
                              f"give parquet files") from None
        return cls._pick(dataset, split, image_column, str(path))

    @classmethod
    def from_hub(cls, name: str, split: str, image_column: str) -> DatasetSource:
        import datasets

        try:
            dataset = datasets.load_dataset(name, split=split)
        except Exception as err:  # offline, unknown name, gated: all end the same way for the user
            raise SimsegError(f"data.source '{name}' is not a local path and could not be loaded from the hub "
                              f"({type(err).__name__}): check the path, or the name and network for hub "
                              f"datasets") from None
        return cls._pick(dataset, split, image_column, name)

    @classmethod
    def _pick(cls, dataset, split: str, image_column: str, name: str) -> DatasetSource:
        import datasets

        if isinstance(dataset, datasets.DatasetDict):
            if split not in dataset:
                raise SimsegError(f"data.split='{split}' is not in {name}; it has {', '.join(dataset)}")
            dataset = dataset[split]
        if len(dataset) == 0:
            raise SimsegError(f"data.source {name} is empty")
        if image_column:
            if image_column not in dataset.column_names:
                raise SimsegError(f"data.image_column='{image_column}' is not a column of {name}; it has "
                                  f"{', '.join(dataset.column_names)}")
            column = image_column
        else:
            images = [k for k, v in dataset.features.items() if isinstance(v, datasets.Image)]
            if not images:
                raise SimsegError(f"{name} has no column of Image type: set data.image_column "
                                  f"(columns: {', '.join(dataset.column_names)})")
            column = images[0]
        return cls(dataset, column, name)

    def __len__(self) -> int:
        return len(self.dataset)

    def image(self, index: int) -> Image.Image:
        try:
            value = self.dataset[int(index)][self.column]
            if isinstance(value, dict):  # undecoded Image feature: {"bytes": ..., "path": ...}
                import io
                value = Image.open(io.BytesIO(value["bytes"])) if value.get("bytes") else Image.open(value["path"])
            return to_rgb(value)
        except SimsegError:
            raise
        except Exception as err:
            raise SimsegError(f"{self.name}[{index}] column '{self.column}' cannot be read as an image "
                              f"({type(err).__name__}): fix or drop that row") from None

    def item_name(self, index: int) -> str:
        return image_stem(self.item_file_name(index))

    def item_file_name(self, index: int) -> str:
        if self._file_names is None:
            import datasets

            column = next((c for c in self.NAME_COLUMNS if isinstance(self.dataset.features.get(c), datasets.Value)),
                          None)
            self._file_names = ([] if column is None else
                                [str(value).replace("\\", "/").rsplit("/", 1)[-1] for value in self.dataset[column]])
        return self._file_names[index] if self._file_names else str(int(index))

    def fingerprint(self) -> str:
        # datasets fingerprints every table it loads or derives (the attribute has no public accessor)
        return digest("dataset", self.name, len(self), self.column, self.dataset._fingerprint)


class SyntheticSource:
    """``count`` images generated on the fly from (seed, index): same seed, same images, nothing on disk."""

    def __init__(self, count: int, seed: int, size: int):
        self.count, self.seed, self.size = count, seed, size
        self.name = f"synthetic({count})"

    def __len__(self) -> int:
        return self.count

    def sample(self, index: int):
        from simseg.data.synthetic import make_sample

        return make_sample(self.seed, int(index), self.size)

    def image(self, index: int) -> Image.Image:
        return Image.fromarray(self.sample(index).image)

    def item_name(self, index: int) -> str:
        return f"synthetic_{int(index)}"

    def item_file_name(self, index: int) -> str:
        return self.item_name(index)

    def fingerprint(self) -> str:
        return digest("synthetic", self.count, self.seed, self.size)


class UnionSource:
    """Several sources as one: the items of the first, then those of the second, and so on."""

    def __init__(self, parts: Sequence[ImageSource]):
        self.parts = list(parts)
        self.name = " + ".join(part.name for part in self.parts)
        self.starts = [0]  # index of each part's first item, then the total
        for part in self.parts:
            self.starts.append(self.starts[-1] + len(part))

    def __len__(self) -> int:
        return self.starts[-1]

    def locate(self, index: int) -> tuple[ImageSource, int]:
        """The part that holds item ``index``, and the item's index in it."""
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} of {len(self)}")
        part = bisect.bisect_right(self.starts, index) - 1
        return self.parts[part], index - self.starts[part]

    def image(self, index: int) -> Image.Image:
        part, index = self.locate(index)
        return part.image(index)

    def item_name(self, index: int) -> str:
        part, index = self.locate(index)
        return part.item_name(index)

    def item_file_name(self, index: int) -> str:
        part, index = self.locate(index)
        return part.item_file_name(index)

    def fingerprint(self) -> str:
        return digest("union", *(part.fingerprint() for part in self.parts))


class SubsetSource:
    """Items ``kept`` (indices into ``source``) of a source, renumbered from 0: a view, nothing is copied."""

    def __init__(self, source: ImageSource, kept: Sequence[int], name: str):
        self.source, self.name = source, name
        self.kept = np.asarray(kept, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.kept)

    def image(self, index: int) -> Image.Image:
        return self.source.image(int(self.kept[index]))

    def item_name(self, index: int) -> str:
        return self.source.item_name(int(self.kept[index]))

    def item_file_name(self, index: int) -> str:
        return self.source.item_file_name(int(self.kept[index]))

    def fingerprint(self) -> str:
        # Which items are kept is part of what the view holds: an automatic cache of the whole source (whose
        # indices mean other items) is never taken for the view's.
        kept = hashlib.sha256(self.kept.astype("<i8").tobytes()).hexdigest()
        return digest("subset", self.source.fingerprint(), kept)
