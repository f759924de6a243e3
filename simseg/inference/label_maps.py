"""Label maps as files people open: palette PNGs (class ids, or the Oxford trimap values) and overlays.

A palette PNG stores one byte per pixel, the class id, plus a colour table, so an image viewer shows the classes in
colour while a program reads the ids back with ``np.array(Image.open(path))``. The colours are those of every
other simseg picture (the run's :class:`~simseg.data.label_set.LabelSet`; on pets background black, pet orange,
boundary white).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from simseg.data.pets import CLASS_TO_OXFORD
from simseg.data.label_set import PETS

PALETTE = PETS.colours
LABEL_VALUES = ("classes", "oxford")


def label_image(labels: np.ndarray, palette: Sequence[Sequence[int]] = PALETTE, values: str = "classes") -> Image.Image:
    """uint8 (H, W) class ids -> a palette ("P") image. ``values="oxford"`` stores the dataset's own trimap values
    (1 pet, 2 background, 3 boundary) instead, each still shown in its class's colour."""
    if values not in LABEL_VALUES:
        raise ValueError(f"label values {values!r}: choose one of {LABEL_VALUES}")
    stored = CLASS_TO_OXFORD[labels] if values == "oxford" else labels
    colours = np.zeros((256, 3), dtype=np.uint8)
    order = CLASS_TO_OXFORD if values == "oxford" else np.arange(len(palette))
    colours[order[:len(palette)]] = np.asarray(palette, dtype=np.uint8)
    image = Image.fromarray(np.ascontiguousarray(stored, dtype=np.uint8), mode="P")
    image.putpalette(colours.ravel().tolist())
    return image


def blend(photo: Image.Image, labels: np.ndarray, palette: Sequence[Sequence[int]] = PALETTE,
          alpha: float = 0.5) -> Image.Image:
    """The RGB ``photo`` with each non-background pixel mixed ``alpha`` of the way to its class's colour."""
    if labels.shape != (photo.height, photo.width):
        raise ValueError(f"labels {labels.shape} do not cover the photo ({photo.height}, {photo.width})")
    pixels = np.asarray(photo, dtype=np.float32)  # (H, W, 3)
    colours = np.asarray(palette, dtype=np.float32)[labels]  # (H, W, 3)
    weight = np.where(labels[..., None] > 0, alpha, 0.0).astype(np.float32)
    return Image.fromarray(np.rint(pixels * (1 - weight) + colours * weight).astype(np.uint8))
