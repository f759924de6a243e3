"""A trained run's own test set, read again from the data its config names, and scored the way the run scored it.

The items are the names in the run's ``test_images.txt`` (the split the run drew), transformed by the run's
evaluation transform: the photo resized to img_size x img_size, its mask resized with nearest. Scoring at that size
with :mod:`simseg.training.metrics` is what the segment stage did, so a model that is the run's own reproduces its
``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import DataLoader

from simseg.data.label_set import IGNORE_INDEX, LabelSet
from simseg.data.loaders import TransformedItems
from simseg.data.pair_sources import PairSource, open_segmentation_pairs
from simseg.data.transforms import eval_transform
from simseg.errors import SimsegError
from simseg.inference.trained_run import TrainedRun
from simseg.training.metrics import confusion_matrix, segmentation_metrics


def own_test_pairs(run: TrainedRun) -> tuple[PairSource, list[int]]:
    """The source the run was trained on and the indices of its test items there (in ``test_images.txt`` order);
    one line when the data is gone or no longer holds them."""
    source = open_segmentation_pairs(run.cfg.data)
    found = source.label_set.num_classes
    if found != run.classes.num_classes:  # masks of other classes would be scored against the wrong names
        raise SimsegError(f"{source.name} holds {found} classes but the run at {run.run_dir} predicts "
                          f"{run.classes.num_classes} ({', '.join(run.classes.names)}): point data.source at the "
                          f"data the run was trained on")
    where = {name: i for i, name in enumerate(source.names)}
    names = run.test_names()
    missing = [n for n in names if n not in where]
    if missing:
        raise SimsegError(f"{len(missing):,} of the run's {len(names):,} test images (e.g. {missing[0]}) are not in "
                          f"{source.name} any more: point data.source at the data the run was trained on")
    return source, [where[n] for n in names]


def own_test_loader(run: TrainedRun, batch_size: int = 8) -> DataLoader:
    """(images (B, 3, S, S), masks (B, S, S)) batches of the run's test set, preprocessed as the run evaluated it."""
    source, indices = own_test_pairs(run)
    transform = eval_transform(run.cfg.model.img_size, run.cfg.aug.mean, run.cfg.aug.std, op="resize")
    return DataLoader(TransformedItems(source, indices, transform, targets="masks"), batch_size=batch_size)


def score_test_set(probabilities: Callable[[torch.Tensor], torch.Tensor], loader: DataLoader,
                   classes: LabelSet) -> dict:
    """The segmentation metrics (:func:`segmentation_metrics`, by ``classes.names``) of the classes argmax of
    ``probabilities(images)`` over every labelled test pixel at the model's input size (255 in a mask: not
    counted)."""
    confusion = torch.zeros(classes.num_classes, classes.num_classes, dtype=torch.long)
    for images, masks in loader:
        confusion += confusion_matrix(probabilities(images).argmax(1).cpu(), masks, classes.num_classes, IGNORE_INDEX)
    return segmentation_metrics(confusion, list(classes.names))
