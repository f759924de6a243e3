"""Label maps as files people open: palette PNGs of class ids (or of the dataset's own mask values) and overlays.

A palette PNG stores one byte per pixel plus a colour table, so an image viewer shows the classes in colour while a
program reads the stored values back with ``np.array(Image.open(path))``. The colours are those of every other
simseg picture: the run's :class:`~simseg.data.label_set.LabelSet` (``classes.json``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from simseg.data.label_set import IGNORE_COLOUR, LabelSet

LABEL_VALUES = ("classes", "source")


def stored_values(label_set: LabelSet, values: str = "classes") -> np.ndarray:
    """The value written for each class id, indexed by id: the id itself (``classes``), or the value the dataset's
    own masks store for the class (``source``, ``label_set.values``)."""
    if values not in LABEL_VALUES:
        raise ValueError(f"label values {values!r}: choose one of {LABEL_VALUES}")
    return np.asarray(label_set.values if values == "source" else range(label_set.num_classes), dtype=np.int64)


def label_image(labels: np.ndarray, label_set: LabelSet, values: str = "classes") -> Image.Image:
    """uint8 (H, W) class ids -> a palette ("P") image whose stored bytes are the class ids (``values="classes"``)
    or the dataset's own mask values ``label_set.values[id]`` (``values="source"``), each shown in its class's colour.

    A dataset whose masks store values above 255 (16-bit index PNGs) cannot be written as a palette PNG: with
    ``values="source"`` its maps are single-channel 16-bit images (mode ``"I;16"``) holding those values, without
    colours, as the dataset's own masks are. The choice depends on the label set alone, so every map of a run has
    the same format.
    """
    table = stored_values(label_set, values)  # (C,) indexed by class id
    if table.max() > 255:
        return Image.fromarray(np.ascontiguousarray(table[labels], dtype=np.uint16))  # uint16 -> mode "I;16"
    colours = np.zeros((256, 3), dtype=np.uint8)
    colours[label_set.ignore_index] = IGNORE_COLOUR
    colours[table] = np.asarray(label_set.colours, dtype=np.uint8)  # a class's value shown in its colour
    image = Image.fromarray(np.ascontiguousarray(table[labels], dtype=np.uint8), mode="P")
    image.putpalette(colours.ravel().tolist())
    return image


def blend(photo: Image.Image, labels: np.ndarray, colours: Sequence[Sequence[int]], alpha: float = 0.5) -> Image.Image:
    """The RGB ``photo`` with each pixel of class 1 and above mixed ``alpha`` of the way to its class's colour
    (``colours[id]``, RGB 0-255); class 0, usually the background, is left as it is."""
    if labels.shape != (photo.height, photo.width):
        raise ValueError(f"labels {labels.shape} do not cover the photo ({photo.height}, {photo.width})")
    pixels = np.asarray(photo, dtype=np.float32)  # (H, W, 3)
    shown = np.asarray(colours, dtype=np.float32)[labels]  # (H, W, 3)
    weight = np.where(labels[..., None] > 0, alpha, 0.0).astype(np.float32)
    return Image.fromarray(np.rint(pixels * (1 - weight) + shown * weight).astype(np.uint8))
