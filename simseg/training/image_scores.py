"""Per-image test scores: each test image's intersection and union per class, kept beside ``metrics.json`` in
``test_scores.npz`` so that a reader can resample the test set (a bootstrap interval, a paired comparison of two
runs) without the model.

Summed over the images, the counts give exactly the run's figures: ``metrics.json``'s per-class IoU is
``sum(intersection) / sum(union)`` over every test image, as the confusion matrix of every test pixel gives it
(:mod:`simseg.training.metrics`), and its Boundary IoU likewise of the band counts (:mod:`simseg.training.boundary`).

The file (one row per test item, in ``test_images.txt`` order)::

    names                  (N,)        str    the test items' names
    classes                (C,)        str    the class names, by id
    iou_native_plain       (N, C, 2)   int64  [intersection, union] pixels per class, scored at the mask's own size
    iou_input_plain        (N, C, 2)   int64  the same at the model's input size (the mask resized with nearest)
    boundary_native_plain  (N, C, 2)   int64  [intersection, union] of each class's Boundary IoU band, own size
    iou_native_tta, iou_input_tta, boundary_native_tta      the same for the TTA view (runs with eval.tta only)

Read it with :func:`read_test_scores`; runs from before the file existed give None.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from simseg.data.label_set import IGNORE_INDEX
from simseg.errors import SimsegError
from simseg.files import atomic_write
from simseg.training.boundary import boundary_counts
from simseg.training.metrics import confusion_matrix

SCORES_FILE = "test_scores.npz"
VIEWS = ("plain", "tta")  # one plain forward pass; the mean probabilities of the eval.tta views
RESOLUTIONS = ("native", "input")  # the mask's own size; the model's input size
KINDS = ("iou", "boundary")  # the class's pixels; its Boundary IoU band (scored at native size only)


def scores_key(view: str = "plain", at: str = "native", kind: str = "iou") -> str:
    """The array name of one set of counts in the file, e.g. ``iou_native_plain``."""
    for value, allowed, what in ((view, VIEWS, "view"), (at, RESOLUTIONS, "at"), (kind, KINDS, "kind")):
        if value not in allowed:
            raise ValueError(f"{what}={value!r}: choose one of {', '.join(allowed)}")
    return f"{kind}_{at}_{view}"


def iou_counts_of(confusion: Tensor) -> Tensor:
    """[intersection, union] per class of confusion matrices (..., C, C) (rows target, columns prediction):
    (..., C, 2) int64. Intersection is the diagonal, union the class's target pixels plus its predicted pixels less
    the intersection."""
    confusion = confusion.long()
    intersection = confusion.diagonal(dim1=-2, dim2=-1)  # (..., C)
    union = confusion.sum(-1) + confusion.sum(-2) - intersection
    return torch.stack([intersection, union], dim=-1)


def iou_counts(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """[intersection, union] pixels per class of one image: ``pred`` and ``target`` (H, W) class ids, target pixels
    equal to ``ignore_index`` counted nowhere. Returns (C, 2) int64; a class in neither has (0, 0)."""
    return iou_counts_of(confusion_matrix(pred, target, num_classes, ignore_index))


def iou_counts_batch(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """:func:`iou_counts` of each image of a batch: ``pred``, ``target`` (B, H, W) -> (B, C, 2) int64."""
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be (B, H, W)")
    return torch.stack([iou_counts(p, t, num_classes, ignore_index) for p, t in zip(pred, target)]) if len(pred) \
        else torch.zeros(0, num_classes, 2, dtype=torch.long, device=pred.device)


def image_boundary_counts(pred: Tensor, target: Tensor, num_classes: int,
                          ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Boundary IoU band [intersection, union] per class of one image (H, W): (C, 2) int64, the band as wide as
    this image's own diagonal makes it (:func:`simseg.training.boundary.boundary_counts`, transposed from its
    (2, C))."""
    return boundary_counts(pred[None], target[None], num_classes, ignore_index).T.contiguous()


def boundary_counts_batch(pred: Tensor, target: Tensor, num_classes: int,
                          ignore_index: int = IGNORE_INDEX) -> Tensor:
    """:func:`image_boundary_counts` of each image of a batch: ``pred``, ``target`` (B, H, W) -> (B, C, 2)."""
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must both be (B, H, W)")
    return torch.stack([image_boundary_counts(p, t, num_classes, ignore_index) for p, t in zip(pred, target)]) \
        if len(pred) else torch.zeros(0, num_classes, 2, dtype=torch.long, device=pred.device)


def write_test_scores(run_dir: Path, names: list[str], classes: list[str], counts: dict[str, np.ndarray]) -> Path:
    """``run_dir/test_scores.npz`` of ``counts`` ({:func:`scores_key`: (N, C, 2)}), written atomically; the path."""
    shape = (len(names), len(classes), 2)
    for key, array in counts.items():
        if np.shape(array) != shape:
            raise ValueError(f"{key} is {np.shape(array)}, not (images, classes, 2) = {shape}")
    arrays = {key: np.asarray(array, dtype=np.int64) for key, array in counts.items()}
    path = Path(run_dir) / SCORES_FILE
    atomic_write(path, lambda file: np.savez(file, names=np.array(names, dtype=str),
                                             classes=np.array(classes, dtype=str), **arrays))
    return path


@dataclass(frozen=True)
class ImageScores:
    """The contents of a run's ``test_scores.npz``: item ``names`` (N), ``classes`` (C) and the count arrays."""


    names: list[str]
    classes: list[str]
    arrays: dict[str, np.ndarray]

    def counts(self, view: str = "plain", at: str = "native", kind: str = "iou") -> np.ndarray | None:
        """(N, C, 2) int64 [intersection, union] per image and class of ``view`` (plain, tta) scored ``at``
        (native: the mask's own size; input: the model's input size) for ``kind`` (iou; boundary, native only);
        None where the run did not score it (no TTA, or boundary at input)."""
        return self.arrays.get(scores_key(view, at, kind))


def read_test_scores(run_dir: str | Path) -> ImageScores | None:
    """The per-image test scores of a run folder; None when it has no ``test_scores.npz`` (runs from before the
    file). A damaged file is one line naming it."""
    path = Path(run_dir) / SCORES_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as file:
            loaded = {key: file[key] for key in file.files}
        names, classes = [str(n) for n in loaded.pop("names")], [str(c) for c in loaded.pop("classes")]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise SimsegError(f"{path} is damaged ({type(err).__name__}): delete it; the run's metrics.json still holds "
                          f"its figures, only the per-image scores are lost") from None
    known = {scores_key(v, a, k) for v in VIEWS for a in RESOLUTIONS for k in KINDS}
    shape = (len(names), len(classes), 2)
    bad = next((k for k, a in loaded.items() if k not in known or a.shape != shape or a.dtype.kind not in "iu"), None)
    if bad is not None or scores_key() not in loaded:
        what = f"{bad} is not (images, classes, 2) integer counts" if bad else f"it has no {scores_key()}"
        raise SimsegError(f"{path} is damaged ({what}): delete it; the run's metrics.json still holds its figures, "
                          f"only the per-image scores are lost")
    return ImageScores(names, classes, {k: a.astype(np.int64) for k, a in loaded.items()})
