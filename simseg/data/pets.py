"""Oxford-IIIT Pet's image/trimap pairs, the one dataset whose classes simseg knows by name (the other sources and the
front door that picks one: :mod:`simseg.data.pair_sources`).

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

import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from simseg.data.label_set import IGNORE_INDEX, PETS
from simseg.data.sources import files_fingerprint, read_rgb
from simseg.data.stem_pairs import files_by_stem, refuse_unpaired
from simseg.errors import SimsegError

BACKGROUND, PET, BOUNDARY = 0, 1, 2
CLASS_NAMES = PETS.names
_UNMAPPED = IGNORE_INDEX
_OXFORD_TO_CLASS = np.full(256, _UNMAPPED, dtype=np.uint8)  # lookup table indexed by the trimap value
_OXFORD_TO_CLASS[[1, 2, 3]] = PET, BACKGROUND, BOUNDARY
CLASS_TO_OXFORD = np.array([2, 1, 3], dtype=np.uint8)  # indexed by class id: the trimap value that means it
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def trimap_to_classes(trimap: np.ndarray, name: str = "trimap") -> np.ndarray:
    """(H, W) Oxford trimap (values 1/2/3) -> (H, W) uint8 class ids; ``name`` identifies the file in the error."""
    classes = _OXFORD_TO_CLASS[trimap if trimap.dtype == np.uint8 else np.clip(trimap, 0, 255).astype(np.uint8)]
    bad = np.unique(trimap[classes == _UNMAPPED]).tolist()
    if not bad:
        return classes
    shown = ", ".join(map(str, bad[:8])) + (", ..." if len(bad) > 8 else "")
    raise SimsegError(f"trimap {name} holds values {shown} besides the Oxford trimap values 1 (pet), 2 (background) "
                      f"and 3 (boundary): replace the file or remove the pair")


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
        self.given_split, self.notes = None, []  # Oxford's own split lists are not read: data.test_list can give one
        images = files_by_stem(found / "images", _IMAGE_EXTENSIONS)
        trimaps = files_by_stem(found / "annotations" / "trimaps", (".png",))
        no_trimap = [images[s] for s in images if s not in trimaps]
        no_image = [trimaps[s] for s in trimaps if s not in images]
        if not skip_unpaired:
            refuse_unpaired(no_trimap, no_image, found, mask="trimap")
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

    def __len__(self) -> int:
        return len(self.names)

    def pair(self, index: int) -> tuple[Image.Image, np.ndarray]:
        return _labelled(read_rgb(self.image_files[index]), _read_trimap(self.trimap_files[index]),
                         str(self.trimap_files[index]))

    def fingerprint(self) -> str:
        return files_fingerprint([*self.image_files, *self.trimap_files])
