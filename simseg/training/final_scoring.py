"""The final test evaluation of a segmentation run: one pass over the test set that scores each image both at the
model's input size and at its mask's own (native) size, for the plain view and, when asked, the TTA view.

Per image and view, the model's class probabilities at its input size (S, S) are

    plain   the softmax of the logits (the input-size labels are the logits' argmax, as every epoch scores them)
    tta     the mean probabilities of :func:`simseg.training.tta.tta_probabilities`

and they are scored

    input   argmax at (S, S) against the mask resized with nearest to (S, S): what the epochs' test mIoU measures
    native  resized bilinearly (align_corners=False) to the mask's own (H, W), then argmax, against the mask as the
            source stores it: exactly :meth:`simseg.inference.segmenter.Segmenter.predict_batch` with
            ``resolution="original"``, so a user who predicts on the test photos gets these figures

Under several processes each one scores a contiguous share of the test items (``split_between_processes``, no
repeated items) and the per-image counts, with the items' positions, and the confusion matrices are gathered to
every process (``gather_object``): the result is the same as on one process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from accelerate.utils import gather_object
from torch.utils.data import DataLoader, Dataset, Subset

from simseg.data.label_set import IGNORE_INDEX
from simseg.training.boundary import boundary_counts, boundary_iou
from simseg.training.engine import out_of_memory_is_one_line
from simseg.training.image_scores import image_boundary_counts, iou_counts_of, scores_key
from simseg.training.metrics import confusion_matrix, segmentation_metrics
from simseg.training.tta import tta_probabilities


class ScoringItems(Dataset):
    """Item p: test item ``indices[p]`` as the model sees it, ``inputs[p]`` = (image (3, S, S) float, mask (S, S)
    int64), with its mask at its own size from ``source.pair`` ((H, W) uint8 tensor, 255 ignored) and ``p``."""


    def __init__(self, inputs: Dataset, source, indices: Sequence[int]):
        if len(inputs) != len(indices):
            raise ValueError(f"{len(inputs)} evaluation items for {len(indices)} test indices")
        self.inputs, self.source, self.indices = inputs, source, [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, p: int):
        image, mask = self.inputs[p]
        native = np.ascontiguousarray(self.source.pair(self.indices[p])[1])  # (H, W) uint8 class ids
        return image, mask, torch.from_numpy(native), p


def collate_test_items(items: list) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[int]]:
    """(images (B, 3, S, S), masks (B, S, S), native masks [(H_i, W_i)], positions) of :class:`ScoringItems`' items:
    the native masks differ in size, so they stay a list."""
    images, masks, natives, positions = zip(*items)
    return torch.stack(images), torch.stack(masks), list(natives), list(positions)


@dataclass
class FinalScores:
    """What one pass scored, over every test item, for each view (``plain``, ``tta``) at each size (``native``,
    ``input``): the confusion matrices (C, C), the Boundary IoU band counts (2, C), and the per-image counts of
    :mod:`simseg.training.image_scores` ({:func:`scores_key`: (N, C, 2) int64}, rows in test-item order)."""


    confusion: dict[tuple[str, str], torch.Tensor]
    bands: dict[tuple[str, str], torch.Tensor]
    counts: dict[str, np.ndarray]

    @property
    def views(self) -> list[str]:
        return list(dict.fromkeys(view for view, _ in self.confusion))

    def figures(self, view: str, at: str, class_names: Sequence[str]) -> dict:
        """:func:`segmentation_metrics` (``confusion`` included) and :func:`boundary_iou` of one view at one size."""
        names = list(class_names)
        return {**segmentation_metrics(self.confusion[view, at], names), **boundary_iou(self.bands[view, at], names)}


@torch.no_grad()
def evaluate_test_set(model, items: ScoringItems, accelerator, num_classes: int,
                      tta: tuple[list[float], bool] | None, batch_size: int, workers: int = 0) -> FinalScores:
    """Score ``items`` with ``model`` (``{"logits": (B, C, S, S)}``; an unprepared module, hence the explicit
    autocast) in one pass: the plain view, and with ``tta`` = (scales, flip) the TTA view too, each at input and
    native size. This process scores its share of the items; the returned scores are every process's."""
    views = {"plain": None, **({"tta": tta} if tta is not None else {})}
    mine = Subset(items, _share(len(items), accelerator))
    loader = DataLoader(mine, batch_size=batch_size, num_workers=workers, collate_fn=collate_test_items)
    model.eval()
    confusion = {(v, at): torch.zeros(num_classes, num_classes, dtype=torch.long) for v in views
                 for at in ("native", "input")}
    input_bands = {v: torch.zeros(2, num_classes, dtype=torch.long) for v in views}
    rows = {scores_key(v, at, kind): [] for v in views for at, kind in
            (("native", "iou"), ("input", "iou"), ("native", "boundary"))}
    positions: list[int] = []
    device = accelerator.device
    for images, masks, natives, where in loader:
        images, masks = images.to(device), masks.to(device)
        probabilities, labels = {}, {}
        with accelerator.autocast(), out_of_memory_is_one_line("while scoring the test set", len(images)):
            for view, views_of_tta in views.items():
                if views_of_tta is None:
                    logits = model(images=images)["logits"]
                    probabilities[view], labels[view] = logits.float().softmax(1), logits.argmax(1)  # (B, C, S, S)
                else:
                    probabilities[view] = tta_probabilities(model, images, *views_of_tta).float()
                    labels[view] = probabilities[view].argmax(1)  # (B, S, S)
        for view in views:
            per_image = torch.stack([confusion_matrix(p, m, num_classes, IGNORE_INDEX)
                                     for p, m in zip(labels[view], masks)])  # (B, C, C)
            confusion[view, "input"] += per_image.sum(0).cpu()
            input_bands[view] += boundary_counts(labels[view], masks, num_classes, IGNORE_INDEX).cpu()
            rows[scores_key(view, "input", "iou")].append(iou_counts_of(per_image).cpu())
        for i, native in enumerate(natives):
            native = native.to(device).long()  # (H, W)
            for view in views:
                pred = native_labels(probabilities[view][i:i + 1], native.shape)
                image_confusion = confusion_matrix(pred, native, num_classes, IGNORE_INDEX)
                confusion[view, "native"] += image_confusion.cpu()
                rows[scores_key(view, "native", "iou")].append(iou_counts_of(image_confusion)[None].cpu())
                rows[scores_key(view, "native", "boundary")].append(
                    image_boundary_counts(pred, native, num_classes, IGNORE_INDEX)[None].cpu())
        positions += where
    local = {"positions": positions, "confusion": confusion, "input_bands": input_bands,
             "rows": {k: torch.cat(v).numpy() if v else np.zeros((0, num_classes, 2), np.int64)
                      for k, v in rows.items()}}
    return _combine(gather_object([local]), views)


def native_labels(probabilities: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, C, S, S) probabilities -> (H, W) labels at ``size`` = (H, W): resized bilinearly first, then argmax, as
    :meth:`~simseg.inference.segmenter.Segmenter.predict_batch` does with ``resolution="original"``."""
    if probabilities.shape[-2:] != tuple(size):
        probabilities = F.interpolate(probabilities, size=tuple(size), mode="bilinear", align_corners=False)
    return probabilities[0].argmax(0)


def _share(count: int, accelerator) -> list[int]:
    """This process's contiguous share of positions ``0 .. count-1`` (the shares cover each position once)."""
    with accelerator.split_between_processes(list(range(count))) as share:
        return list(share)


def _combine(gathered: list[dict], views: dict) -> FinalScores:
    """One :class:`FinalScores` of every process's scores: matrices summed, per-image rows in item order."""
    positions = np.concatenate([np.asarray(g["positions"], dtype=np.int64) for g in gathered])
    order = np.argsort(positions, kind="stable")
    if not np.array_equal(positions[order], np.arange(len(positions))):
        raise RuntimeError(f"the processes scored positions {sorted(positions.tolist())}, not each test item once")
    confusion = {key: sum(g["confusion"][key] for g in gathered) for key in gathered[0]["confusion"]}
    bands = {(view, "input"): sum(g["input_bands"][view] for g in gathered) for view in views}
    counts = {key: np.concatenate([g["rows"][key] for g in gathered])[order] for key in gathered[0]["rows"]}
    for view in views:  # the native bands are per image (each image's own band width): their sum is the split's
        bands[view, "native"] = torch.from_numpy(counts[scores_key(view, "native", "boundary")].sum(0).T.copy())
    return FinalScores(confusion, bands, counts)
