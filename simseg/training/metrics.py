"""Segmentation metrics from one confusion matrix accumulated over every scored pixel of a split.

Accumulate per batch, then compute once (metrics of the summed matrix, not a mean of per-batch metrics)::

    confusion = torch.zeros(C, C, dtype=torch.long, device=accelerator.device)
    for batch in loader:
        pred = model(...)["logits"].argmax(1)                                   # (B, H, W)
        pred, target = accelerator.gather_for_metrics((pred, batch["mask"]))    # drops the sampler's padding
        confusion += confusion_matrix(pred, target, C, ignore_index=IGNORE)
    metrics = segmentation_metrics(confusion, class_names)                      # plain floats, JSON-ready

Absent-class policy (one rule for every per-class number): a per-class value whose denominator is zero is
undefined; it is stored as ``None`` and left out of the mean over classes. So

- a class absent from both target and prediction has IoU, Dice and accuracy ``None``;
- a class in the target but never predicted has IoU 0, Dice 0 and accuracy 0 (counted in the means);
- a class predicted but absent from the target has IoU 0 and Dice 0 (counted), but accuracy (recall, pixels of the
  class found / pixels of the class) ``None``: no pixel of it was there to be found.

A mean over no defined class, and every figure of an empty matrix, is ``None`` too.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = None) -> Tensor:
    """Pixel counts ``confusion[t, p]`` = pixels of target class ``t`` predicted as ``p``.

    ``pred`` and ``target``: integer class ids of the same shape, e.g. (B, H, W). Pixels whose target equals
    ``ignore_index`` are not counted. Returns a LongTensor (num_classes, num_classes) on ``pred``'s device.

    A pure function rather than ``torchmetrics.classification.MulticlassConfusionMatrix`` (which the tests use as
    the reference): it composes with ``accelerator.gather_for_metrics``, which drops the samples that distributed
    sampling repeats to even out the last batch. The torchmetrics object syncs its state itself under DDP (a sum
    over processes at ``compute()``) but would count those repeated images twice.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    # An id outside [0, C) would land in another cell of the flattened matrix, so check (one sync per batch).
    if pred.numel() and bool(((pred < 0) | (pred >= num_classes) | (target < 0) | (target >= num_classes)).any()):
        raise ValueError(f"class ids must lie in [0, {num_classes}) (or equal ignore_index={ignore_index} in target); "
                         f"found pred {pred.min().item()}..{pred.max().item()}, "
                         f"target {target.min().item()}..{target.max().item()}")
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.view(num_classes, num_classes)  # (C_target, C_pred)


def segmentation_metrics(confusion: Tensor, class_names: list[str]) -> dict:
    """Every figure of ``confusion`` (C, C), rows = target, columns = prediction, as plain Python values.

    Returns ``miou``, ``iou`` (name -> value), ``pixel_accuracy``, ``mean_pixel_accuracy``, ``class_accuracy``
    (name -> recall), ``recall`` (the same, under its detection name), ``precision`` (name -> share of the pixels
    predicted as the class that are it), ``dice`` (name -> value), ``mean_dice``, ``fwiou`` (IoU weighted by each
    class's share of target pixels) and ``confusion`` (nested list of ints). Undefined values are ``None``; see the
    module docstring.
    """
    num_classes = len(class_names)
    if confusion.shape != (num_classes, num_classes):
        raise ValueError(f"confusion {tuple(confusion.shape)} does not match {num_classes} class names")
    counts = confusion.detach().cpu().to(torch.float64)  # float64: exact for any realistic pixel count
    true_pos = counts.diagonal()
    in_target = counts.sum(1)  # (C,) support: pixels of each class in the target
    in_pred = counts.sum(0)  # (C,) pixels predicted as each class
    union = in_target + in_pred - true_pos
    total = counts.sum()

    iou = _ratio(true_pos, union)
    dice = _ratio(2 * true_pos, in_target + in_pred)  # zero exactly where union is zero
    class_accuracy = _ratio(true_pos, in_target)
    # Classes absent from the target weigh 0; nansum so that a class absent everywhere (NaN IoU) adds nothing.
    fwiou = (in_target * iou).nansum() / total if total > 0 else torch.tensor(math.nan)

    return {
        "miou": _value(iou.nanmean()),
        "iou": _per_class(iou, class_names),
        "pixel_accuracy": _value(true_pos.sum() / total if total > 0 else torch.tensor(math.nan)),
        "mean_pixel_accuracy": _value(class_accuracy.nanmean()),
        "class_accuracy": _per_class(class_accuracy, class_names),
        "precision": _per_class(_ratio(true_pos, in_pred), class_names),
        "recall": _per_class(class_accuracy, class_names),
        "dice": _per_class(dice, class_names),
        "mean_dice": _value(dice.nanmean()),
        "fwiou": _value(fwiou),
        "confusion": confusion.detach().cpu().long().tolist(),
    }


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """Elementwise ``numerator / denominator``, NaN where the denominator is 0 (the value is undefined)."""
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1), torch.full_like(numerator, math.nan))


def _value(x: Tensor) -> float | None:
    """A 0-d tensor as a float, NaN as None (JSON has no NaN)."""
    value = float(x)
    return None if math.isnan(value) else value


def _per_class(values: Tensor, class_names: list[str]) -> dict[str, float | None]:
    return {name: _value(v) for name, v in zip(class_names, values)}


def classification_metrics(confusion: torch.Tensor, classes: list[str]) -> dict:
    """``top1``, ``mean_class_accuracy``, ``class_accuracy`` (name -> recall; None for a class absent from the test
    set) and ``confusion`` (nested ints) of a (K_target, K_pred) confusion matrix."""
    figures = segmentation_metrics(confusion, classes)  # the same matrix arithmetic, counted over images
    return {"top1": figures["pixel_accuracy"], "mean_class_accuracy": figures["mean_pixel_accuracy"],
            "class_accuracy": figures["class_accuracy"], "confusion": figures["confusion"]}


TARGET_FRACTIONS = (0.5, 0.8, 0.9, 0.95)


def time_to_target(history: list[dict], fractions: tuple[float, ...] = TARGET_FRACTIONS) -> dict:
    """Training seconds at which a run's score first reached each fraction of its final value, from its
    ``metrics.jsonl`` lines (each with ``seconds``, and ``val_miou`` or ``test_miou`` on evaluated epochs).

    The score is the validation mIoU when the run has one, else the test mIoU of the evaluated epochs (``basis``
    says which: choose nothing by the test figures). Returns ``{"basis", "final", "seconds": {fraction: s}}``, a
    fraction the run never reached (impossible for <= 1 of the final) mapped to None; ``{}`` without scores."""
    basis = "val_miou" if any(r.get("val_miou") is not None for r in history) else "test_miou"
    elapsed, curve = 0.0, []
    for record in history:
        elapsed += record["seconds"]
        if record.get(basis) is not None:
            curve.append((elapsed, record[basis]))
    if not curve:
        return {}
    final = curve[-1][1]
    first = {f: next((t for t, score in curve if score >= f * final), None) for f in fractions}
    return {"basis": basis, "final": final, "seconds": {str(f): first[f] for f in fractions}}
