"""The synthetic images as labelled pairs, in two label sets:

- ``data.source=synthetic`` (the default, the demo's): the shape / background / boundary trimap of
  :func:`simseg.data.synthetic.make_sample`, 3 classes (:data:`SYNTHETIC_TRIMAP`);
- ``data.source=synthetic-shapes``: each shape as its own class, 7 classes (:data:`SYNTHETIC_SHAPES`: background
  and the six :data:`~simseg.data.synthetic.SHAPE_CLASSES`), every pixel labelled. The trimap's boundary band
  (3 px either side of the edge) is split at the edge: its inner half belongs to the shape, its outer half to the
  background.

Both render the same images (the same seed gives the same pictures); only the masks differ.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
from PIL import Image

from simseg.data.label_set import IGNORE_INDEX, LabelSet, default_colours
from simseg.data.sources import SyntheticSource, digest
from simseg.data.synthetic import BACKGROUND, BOUNDARY, FOREGROUND, SHAPE_CLASSES

# The trimap's classes as ids 0 background, 1 shape, 2 boundary; their values are the trimap's own.
SYNTHETIC_TRIMAP = LabelSet(("background", "shape", "boundary"), ((0, 0, 0), (255, 153, 0), (255, 255, 255)),
                            (BACKGROUND, FOREGROUND, BOUNDARY), "synthetic shapes (trimap)")
SYNTHETIC_SHAPES = LabelSet(("background", *SHAPE_CLASSES), default_colours(1 + len(SHAPE_CLASSES)), (),
                            "synthetic shapes (7 classes)")
SYNTHETIC_MODES = {"synthetic": "trimap", "synthetic-shapes": "shapes"}  # data.source -> mode
_TRIMAP_TO_CLASS = np.full(256, IGNORE_INDEX, dtype=np.uint8)
_TRIMAP_TO_CLASS[[BACKGROUND, FOREGROUND, BOUNDARY]] = 0, 1, 2


def shape_classes(trimap: np.ndarray, label: int) -> np.ndarray:
    """(H, W) trimap of a sample whose shape is ``SHAPE_CLASSES[label]`` -> (H, W) uint8 ids: 0 background,
    ``label + 1`` the shape. A boundary pixel goes to the shape when it is nearer the trimap's shape pixels than its
    background pixels (the band is symmetric about the edge, so that is its inner half; a tie goes outside)."""
    from scipy.ndimage import distance_transform_edt

    ids = np.where(trimap == FOREGROUND, label + 1, 0).astype(np.uint8)
    band = trimap == BOUNDARY
    if band.any():
        to_shape = distance_transform_edt(trimap != FOREGROUND)
        to_background = distance_transform_edt(trimap != BACKGROUND)
        ids[band & (to_shape < to_background)] = label + 1
    return ids


class SyntheticPairsSource:
    """``count`` synthetic images with their masks as class ids (``mode`` ``trimap`` or ``shapes``, see the module
    docstring); ``groups`` are the shape names."""

    def __init__(self, count: int, seed: int, size: int, mode: str = "trimap"):
        if mode not in ("trimap", "shapes"):
            raise ValueError(f"synthetic pairs mode {mode!r}: trimap or shapes")
        self._source, self.mode = SyntheticSource(count, seed, size), mode
        self.name = f"synthetic({count})" if mode == "trimap" else f"synthetic-shapes({count})"
        self.names = [f"synthetic_{i:05d}" for i in range(count)]
        self.label_set = SYNTHETIC_TRIMAP if mode == "trimap" else SYNTHETIC_SHAPES
        self.given_split, self.notes, self.skipped = None, [], 0

    @cached_property
    def groups(self) -> list[str]:
        # make_sample's first draw is the label; repeated here so the split need not render every image
        # (tests/data/test_pets.py pins that the two agree)
        return [SHAPE_CLASSES[int(np.random.default_rng([self._source.seed, i]).integers(len(SHAPE_CLASSES)))]
                for i in range(len(self))]

    def __len__(self) -> int:
        return len(self._source)

    def pair(self, index: int) -> tuple[Image.Image, np.ndarray]:
        sample = self._source.sample(index)
        ids = _TRIMAP_TO_CLASS[sample.trimap] if self.mode == "trimap" else shape_classes(sample.trimap,
                                                                                          sample.label)
        return Image.fromarray(sample.image), ids

    def fingerprint(self) -> str:
        # the trimap mode keeps its old fingerprint, so caches built before the shapes mode stay valid
        return digest("pairs", self._source.fingerprint(), *(() if self.mode == "trimap" else ("shapes",)))
