"""Reading one mask: a file or PIL image -> (H, W) uint8 class ids, 255 = ignored. Pure functions; which classes
there are and how values map to them (:class:`MaskMapping`) is decided once per source by
:mod:`simseg.data.mask_classes`.

What each kind of mask means::

    single-channel PNG, 8 or 16 bit   stored values, mapped value -> id (identity by default; 255 ignored)
    palette PNG ("P")                 its indices, mapped the same way (the palette only colours pictures)
    RGB with equal channels           a grey image saved as colour: read as single-channel
    RGB colour PNG                    colours, mapped exactly through the class file's colours
    JPEG                              only with data.mask_threshold (binarised to 0/255 first) and data.label_map

A value or colour without a class is an error naming the file, the values and the key that maps them: masks are
never guessed at, since a silent guess (0/255 read as "background + ignored", labels shifted by one) trains a model
that looks fine and is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from simseg.data.class_file import colour_code
from simseg.data.label_set import IGNORE_INDEX, Colour
from simseg.errors import SimsegError

MASK_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif")
JPEG_EXTENSIONS = (".jpg", ".jpeg")
_UNMAPPED = -1


@dataclass(frozen=True, eq=False)
class MaskMapping:
    """Stored mask value or colour -> class id (255 = ignored).

    ``values``: value -> id; a value not listed is an error, except 255, which stays ignored. ``colours``: colour ->
    id for colour masks (empty: colour masks are refused). ``threshold``: binarise single-channel masks first (>=
    threshold -> 255, else 0). ``fix``: how the user maps a value this mapping lacks, for the error.
    """

    values: dict[int, int]
    colours: dict[Colour, int] = field(default_factory=dict)
    threshold: int | None = None
    fix: str = "set data.label_map (VALUE:ID, e.g. 7:255 to ignore 7) or give a class file (data.classes)"
    table: np.ndarray = field(init=False, repr=False)
    """(65536,) int16: the class id of each stored value, -1 where none."""

    def __post_init__(self):
        table = np.full(65536, _UNMAPPED, dtype=np.int16)
        table[IGNORE_INDEX] = IGNORE_INDEX
        for value, class_id in self.values.items():
            table[value] = class_id
        object.__setattr__(self, "table", table)

    def describe(self) -> str:
        """A canonical text of the mapping, for fingerprints: another mapping of the same files is other data."""
        return repr((sorted(self.values.items()), sorted(self.colours.items()), self.threshold))


def read_mask_file(path: Path) -> Image.Image:
    """The mask image at ``path``, loaded; a one-line error naming it when it cannot be read."""
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except FileNotFoundError:
        raise SimsegError(f"mask {path} disappeared while reading the data: restore it") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise SimsegError(f"mask {path} cannot be read ({type(err).__name__}): delete or replace the file") from None


def stored_values(mask: Image.Image | np.ndarray, where: str) -> tuple[np.ndarray, str]:
    """What a mask stores: ``(values (H, W), "index" | "palette")`` or ``(colours (H, W, 3) uint8, "colour")``."""
    if not isinstance(mask, Image.Image):
        values = np.asarray(mask)
        if values.ndim != 2 or values.dtype.kind not in "iub":
            raise SimsegError(f"mask {where} is a {values.dtype} array of shape {values.shape}: store (H, W) "
                              f"integer class ids")
        return values.astype(np.uint8) if values.dtype == bool else values, "index"
    mode = mask.mode
    if mode == "P":
        return np.asarray(mask), "palette"
    if mode in ("L", "I", "1") or mode.startswith("I;16"):
        values = np.asarray(mask)
        return (values.astype(np.uint8) if values.dtype == bool else values), "index"
    if mode in ("LA", "PA"):
        return stored_values(mask.convert(mode[0]), where)
    if mode == "F":
        raise SimsegError(f"mask {where} stores floating-point values: save it as an 8- or 16-bit PNG of class ids")
    rgb = np.asarray(mask.convert("RGB"))  # RGBA's alpha says nothing about the class
    if (rgb == rgb[..., :1]).all():  # a grey image saved as colour
        return rgb[..., 0], "index"
    return rgb, "colour"


def is_jpeg(mask: Image.Image | np.ndarray, where: str) -> bool:
    return getattr(mask, "format", None) == "JPEG" or where.lower().endswith(JPEG_EXTENSIONS)


def refuse_jpeg(where: str) -> SimsegError:
    return SimsegError(f"mask {where} is a JPEG, whose lossy edges hold in-between values: set "
                       f"data.mask_threshold=128 and data.label_map=0:0,255:1 (or your values), or save PNG masks")


def decode_mask(mask: Image.Image | np.ndarray, mapping: MaskMapping, where: str) -> np.ndarray:
    """(H, W) uint8 class ids of ``mask`` (255 = ignored) through ``mapping``; ``where`` names it in errors."""
    if mapping.threshold is None and is_jpeg(mask, where):
        raise refuse_jpeg(where)
    values, kind = stored_values(mask, where)
    if kind == "colour":
        if mapping.threshold is not None:  # a JPEG's colour noise: threshold its brightness
            values, kind = values.mean(axis=2), "index"
        else:
            return _decode_colours(values, mapping, where)
    if values.dtype.kind == "i" and values.size and (values.min() < 0 or values.max() > 65535):
        raise SimsegError(f"mask {where} holds values outside 0..65535: store class ids in an 8- or 16-bit PNG")
    if mapping.threshold is not None:
        values = np.where(values >= mapping.threshold, 255, 0).astype(np.uint8)
    ids = mapping.table[values]
    if (ids == _UNMAPPED).any():
        bad = np.unique(values[ids == _UNMAPPED]).tolist()
        shown = ", ".join(map(str, bad[:8])) + (", ..." if len(bad) > 8 else "")
        raise SimsegError(f"mask {where} holds value{'s' * (len(bad) > 1)} {shown}, which no class has: "
                          f"{mapping.fix}")
    return ids.astype(np.uint8)


def _decode_colours(rgb: np.ndarray, mapping: MaskMapping, where: str) -> np.ndarray:
    if not mapping.colours:
        raise SimsegError(f"mask {where} is a colour image and no class file gives colours: list each class's "
                          f"\"colour\" in a class file (data.classes=FILE), or save masks of class ids")
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    found, inverse = np.unique(packed, return_inverse=True)
    lookup = {(r << 16) | (g << 8) | b: i for (r, g, b), i in mapping.colours.items()}
    ids = np.array([lookup.get(int(c), _UNMAPPED) for c in found], dtype=np.int16)
    if (ids == _UNMAPPED).any():
        bad = [colour_code(((c >> 16) & 255, (c >> 8) & 255, c & 255)) for c in found[ids == _UNMAPPED].tolist()]
        shown = ", ".join(bad[:6]) + (", ..." if len(bad) > 6 else "")
        raise SimsegError(f"mask {where} holds colour{'s' * (len(bad) > 1)} {shown}, which no class of the class file "
                          f"has: add {'them' if len(bad) > 1 else 'it'} to the class file (\"colour\" of a class, or "
                          f"\"ignore\")")
    return ids[inverse.reshape(packed.shape)].astype(np.uint8)


def check_size(mask: np.ndarray, image: Image.Image, where: str) -> np.ndarray:
    """``mask`` if it is ``image``'s size; an error naming the file otherwise (never resized: a mismatch means a
    wrong or damaged pair, and resizing it would train on misaligned labels)."""
    if mask.shape != (image.height, image.width):
        raise SimsegError(f"mask {where} is {mask.shape[1]}x{mask.shape[0]} but its image is "
                          f"{image.width}x{image.height}: the pair does not match; replace one of them")
    return mask
