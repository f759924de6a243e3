"""Labelled image/trimap pairs for the segmentation stage (the splits they are drawn into: :mod:`simseg.data.splits`).

Trimap mapping. Oxford-IIIT Pet trimaps store 1 = pet, 2 = background, 3 = boundary (not classified); the
segmentation stage predicts class ids::

    Oxford trimap value   class id   class name
    1                     1          pet
    2                     0          background
    3                     2          boundary

Any other value in a trimap is an error naming the file. A mask whose size differs from its image is an error too,
never resized: Oxford trimaps always match their images pixel for pixel, so a mismatch means a wrong or damaged pair,
and resizing it would quietly train on misaligned labels.
"""

from __future__ import annotations

import io
import re
import zlib
from functools import cached_property
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from simseg.data.sources import (
    DatasetSource,
    SyntheticSource,
    digest,
    files_fingerprint,
    is_table_folder,
    looks_local,
    read_rgb,
)
from simseg.data.label_set import IGNORE_INDEX, PETS, LabelSet
from simseg.data.synthetic import SHAPE_CLASSES
from simseg.errors import SimsegError

BACKGROUND, PET, BOUNDARY = 0, 1, 2
CLASS_NAMES = PETS.names
# The synthetic images' trimaps use the Oxford values for their shape, the background and the band between them.
SYNTHETIC_TRIMAP = LabelSet(("background", "shape", "boundary"), PETS.colours, PETS.values, "synthetic shapes (trimap)")
_UNMAPPED = IGNORE_INDEX
_OXFORD_TO_CLASS = np.full(256, _UNMAPPED, dtype=np.uint8)  # lookup table indexed by the trimap value
_OXFORD_TO_CLASS[[1, 2, 3]] = PET, BACKGROUND, BOUNDARY
CLASS_TO_OXFORD = np.array([2, 1, 3], dtype=np.uint8)  # indexed by class id: the trimap value that means it
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
_MASK_NAMES = ("mask", "masks", "trimap", "trimaps", "annotation", "annotations", "label", "labels",
               "segmentation", "segmentation_mask")
_NAME_COLUMNS = ("file_name", "filename", "image_id", "name", "id")


def trimap_to_classes(trimap: np.ndarray, name: str = "trimap") -> np.ndarray:
    """(H, W) Oxford trimap (values 1/2/3) -> (H, W) uint8 class ids; ``name`` identifies the file in the error."""
    classes = _OXFORD_TO_CLASS[trimap if trimap.dtype == np.uint8 else np.clip(trimap, 0, 255).astype(np.uint8)]
    bad = np.unique(trimap[classes == _UNMAPPED]).tolist()
    if not bad:
        return classes
    shown = ", ".join(map(str, bad[:8])) + (", ..." if len(bad) > 8 else "")
    raise SimsegError(f"trimap {name} holds values {shown} besides the Oxford trimap values 1 (pet), 2 (background) "
                      f"and 3 (boundary): replace the file or remove the pair")


class PairSource(Protocol):
    """Labelled pairs: ``names`` are stable item names (image stem, a dataset's name column or row number),
    ``groups`` the breed or shape class per item for stratified splits (None where unknown)."""

    name: str
    names: list[str]
    groups: list[str] | None
    label_set: LabelSet
    """The classes the masks' ids stand for."""

    def __len__(self) -> int: ...

    def pair(self, index: int) -> tuple[Image.Image, np.ndarray]:
        """(RGB image, (H, W) uint8 class ids) of item ``index``; the mask is the image's size."""
        ...

    def fingerprint(self) -> str:
        """As :meth:`simseg.data.sources.ImageSource.fingerprint`: changes when any pair does."""
        ...


def _mask_array(image: Image.Image, name: str) -> np.ndarray:
    """The stored values of a single-channel mask image (a palette image gives its indices, not its colours)."""
    if image.mode in ("RGB", "RGBA", "LA"):  # saved as grey colours: accept if every channel is equal
        rgb = np.asarray(image.convert("RGB"))
        if (rgb != rgb[..., :1]).any():
            raise SimsegError(f"trimap {name} is a colour image: save it with one channel of values 1/2/3")
        return rgb[..., 0]
    return np.asarray(image)


def _labelled(image: Image.Image, trimap: np.ndarray, name: str) -> tuple[Image.Image, np.ndarray]:
    """(image, class ids of ``trimap``), refusing a trimap of another size than its image."""
    if trimap.shape != (image.height, image.width):
        raise SimsegError(f"trimap {name} is {trimap.shape[1]}x{trimap.shape[0]} but its image is "
                          f"{image.width}x{image.height}: the pair does not match; replace one of them")
    return image, trimap_to_classes(trimap, name)


def _read_trimap(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return _mask_array(image, str(path))
    except SimsegError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise SimsegError(f"trimap {path} cannot be read ({err.__class__.__name__}): delete or replace "
                          f"the file") from None


class OxfordPetsSource:
    """Oxford-IIIT Pet as torchvision lays it out: ``images/NAME.jpg`` with ``annotations/trimaps/NAME.png``.

    ``root`` is that folder or a parent holding ``oxford-iiit-pet/``. Images (.jpg/.jpeg/.png in any case) and
    trimaps (.png) pair by stem; hidden files (``.*``, including macOS ``._*``) are ignored. Unpaired files are an
    error unless ``skip_unpaired``, which skips them and counts them in ``skipped``.
    """

    def __init__(self, root: Path, skip_unpaired: bool = False):
        found = self.find_root(Path(root))
        if found is None:
            raise SimsegError(f"data.source {root} is not an Oxford-IIIT Pet folder: it needs images/ and "
                              f"annotations/trimaps/ (or an oxford-iiit-pet/ folder holding them)")
        self.root, self.name, self.label_set = found, str(found), PETS
        images = self._stems(found / "images", _IMAGE_EXTENSIONS)
        trimaps = self._stems(found / "annotations" / "trimaps", (".png",))
        no_trimap = [images[s] for s in images if s not in trimaps]
        no_image = [trimaps[s] for s in trimaps if s not in images]
        if (no_trimap or no_image) and not skip_unpaired:
            first = f"{no_trimap[0]} has no trimap" if no_trimap else f"{no_image[0]} has no image"
            raise SimsegError(f"{first} ({len(no_trimap):,} images without a trimap and {len(no_image):,} trimaps "
                              f"without an image in {found}): add the missing files or set data.skip_unpaired=true "
                              f"to skip them")
        self.skipped = len(no_trimap) + len(no_image)
        self.names = sorted(s for s in images if s in trimaps)
        if not self.names:
            raise SimsegError(f"data.source {found} holds no image/trimap pairs: check images/ and "
                              f"annotations/trimaps/")
        self.image_files = [images[s] for s in self.names]
        self.trimap_files = [trimaps[s] for s in self.names]
        self.groups = [re.sub(r"_\d+$", "", s) for s in self.names]  # breed: american_bulldog_151 -> american_bulldog

    @staticmethod
    def find_root(path: Path) -> Path | None:
        """``path`` or ``path/oxford-iiit-pet``, whichever holds images/ and annotations/trimaps/; else None."""
        for root in (path, path / "oxford-iiit-pet"):
            if (root / "images").is_dir() and (root / "annotations" / "trimaps").is_dir():
                return root
        return None

    @staticmethod
    def _stems(folder: Path, extensions: tuple[str, ...]) -> dict[str, Path]:
        stems: dict[str, Path] = {}
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") or path.suffix.lower() not in extensions:
                continue
            if path.stem in stems:
                raise SimsegError(f"{stems[path.stem]} and {path.name} share the name {path.stem}: keep one")
            stems[path.stem] = path
        return stems

    def __len__(self) -> int:
        return len(self.names)

    def pair(self, index: int) -> tuple[Image.Image, np.ndarray]:
        return _labelled(read_rgb(self.image_files[index]), _read_trimap(self.trimap_files[index]),
                         str(self.trimap_files[index]))

    def fingerprint(self) -> str:
        return files_fingerprint([*self.image_files, *self.trimap_files])


class DatasetPairsSource:
    """A ``datasets`` dataset with an image column and a mask column of Oxford trimap values 1/2/3.

    Empty column names are detected: the image is the first Image column not named like a mask, the mask an Image
    column named mask/trimap/annotation/label(s)/segmentation, else the other Image column. ``names`` come from a
    unique string column file_name/filename/image_id/name/id, else the row number; ``groups`` from the first
    ClassLabel column (e.g. the breed), else None.
    """

    def __init__(self, dataset, image_column: str, mask_column: str, name: str):
        import datasets

        features, columns = dataset.features, dataset.column_names
        for key, column in (("image_column", image_column), ("mask_column", mask_column)):
            if column and column not in columns:
                raise SimsegError(f"data.{key}='{column}' is not a column of {name}; it has {', '.join(columns)}")
        pictures = [k for k in columns if isinstance(features[k], datasets.Image)]
        if not image_column and not pictures:
            raise SimsegError(f"{name} has no column of Image type: set data.image_column "
                              f"(columns: {', '.join(columns)})")
        maskish = [k for k in pictures if k.lower() in _MASK_NAMES]
        image_column = image_column or next((k for k in pictures if k not in maskish), pictures[0])
        others = [k for k in maskish + pictures if k != image_column]
        if mask_column == image_column or not (mask_column or others):
            raise SimsegError(f"{name} has no mask column besides '{image_column}': set data.mask_column "
                              f"(columns: {', '.join(columns)})")
        self.dataset, self.name, self.label_set = dataset, name, PETS
        self.image_column, self.mask_column = image_column, mask_column or others[0]
        self._images = DatasetSource(dataset.select_columns([image_column]), image_column, name)
        self._masks = dataset.select_columns([self.mask_column])
        names = next((list(dataset[k]) for k in _NAME_COLUMNS
                      if k in columns and getattr(features[k], "dtype", None) == "string"), None)
        unique = names is not None and len(set(names)) == len(names)
        self.names = [str(v) for v in names] if unique else [str(i) for i in range(len(dataset))]
        labels = next((k for k in columns if isinstance(features[k], datasets.ClassLabel)), None)
        self.groups = [features[labels].int2str(int(v)) for v in dataset[labels]] if labels else None

    def __len__(self) -> int:
        return len(self.dataset)

    def pair(self, index: int) -> tuple[Image.Image, np.ndarray]:
        image, where = self._images.image(index), f"{self.name}[{index}] column '{self.mask_column}'"
        try:
            value = self._masks[int(index)][self.mask_column]
            if isinstance(value, dict):  # undecoded Image feature: {"bytes": ..., "path": ...}
                value = Image.open(io.BytesIO(value["bytes"])) if value.get("bytes") else Image.open(value["path"])
            values = _mask_array(value, where) if isinstance(value, Image.Image) else np.asarray(value)
        except SimsegError:
            raise
        except Exception as err:
            raise SimsegError(f"{where} cannot be read as a mask ({type(err).__name__}): fix or drop that "
                              f"row") from None
        return _labelled(image, values, where)

    def fingerprint(self) -> str:
        return digest("pairs", self._images.fingerprint(), self.mask_column)


class SyntheticPairsSource:
    """``count`` synthetic images with their trimaps as class ids; ``groups`` are the shape names."""

    def __init__(self, count: int, seed: int, size: int):
        self._source = SyntheticSource(count, seed, size)
        self.name = f"synthetic({count})"
        self.names = [f"synthetic_{i:05d}" for i in range(count)]
        self.label_set = SYNTHETIC_TRIMAP

    @cached_property
    def groups(self) -> list[str]:
        # make_sample's first draw is the label; repeated here so the split need not render every image
        # (tests/test_pets.py pins that the two agree)
        return [SHAPE_CLASSES[int(np.random.default_rng([self._source.seed, i]).integers(len(SHAPE_CLASSES)))]
                for i in range(len(self))]

    def __len__(self) -> int:
        return len(self._source)

    def pair(self, index: int) -> tuple[Image.Image, np.ndarray]:
        sample = self._source.sample(index)
        return _labelled(Image.fromarray(sample.image), sample.trimap, self.names[index])

    def fingerprint(self) -> str:
        return digest("pairs", self._source.fingerprint())


SYNTHETIC_POOL = 10_000  # synthetic images besides the test set (rendered only when used)


def open_segmentation_pairs(data_cfg, stream: str = "segment") -> PairSource:
    """The image/trimap pairs a segmentation stage's ``data`` section names (see :func:`open_pairs_source`)."""
    test_size, subset, val_size = data_cfg.sizes()
    # A synthetic source's size must not depend on the subset, or the test set and the nesting would change with it.
    synthetic_count = test_size + max(SYNTHETIC_POOL, val_size + (subset or 0))
    return open_pairs_source(data_cfg.source, stream=stream, synthetic_count=synthetic_count,
                             synthetic_seed=data_cfg.synthetic_seed, synthetic_size=data_cfg.synthetic_image_size,
                             skip_unpaired=data_cfg.skip_unpaired, split=data_cfg.split,
                             image_column=data_cfg.image_column, mask_column=data_cfg.mask_column)


def open_pairs_source(source: str, *, stream: str, synthetic_count: int, synthetic_seed: int, synthetic_size: int,
                      skip_unpaired: bool, split: str, image_column: str, mask_column: str) -> PairSource:
    """The pair source named by ``source``; ``stream`` separates the synthetic images of different stages."""
    if source == "synthetic":
        seed = zlib.crc32(f"{stream}:{synthetic_seed}".encode())  # the rule of data.open_image_source
        return SyntheticPairsSource(synthetic_count, seed, synthetic_size)
    path = Path(source).expanduser()
    if path.is_dir() and OxfordPetsSource.find_root(path) is not None:
        return OxfordPetsSource(path, skip_unpaired)
    if path.is_dir() and not is_table_folder(path):
        raise SimsegError(f"data.source {source} is neither an Oxford-IIIT Pet folder (images/ and "
                          f"annotations/trimaps/, or a parent of oxford-iiit-pet/) nor a datasets dataset: "
                          f"check the folder")
    if not path.exists() and looks_local(source):
        raise SimsegError(f"data.source {source} does not exist: check the path")
    # DatasetSource loads the dataset and picks the split; the columns are chosen again here, with the mask's in view
    loaded = (DatasetSource.from_local(path, split, image_column) if path.exists() else
              DatasetSource.from_hub(source, split, image_column))
    return DatasetPairsSource(loaded.dataset, image_column, mask_column, loaded.name)


