"""The final test pass on a fixed toy model: native labels are the resized probabilities' argmax, every count agrees
with its confusion matrix, and scoring in shares on several processes gives what one process gives."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from PIL import Image

from simseg.data.label_set import IGNORE_INDEX
from simseg.training import final_scoring
from simseg.training.boundary import boundary_counts
from simseg.training.final_scoring import ScoringItems, evaluate_test_set, native_labels
from simseg.training.image_scores import iou_counts_of
from simseg.training.metrics import confusion_matrix

C, S = 3, 8
SIZES = [(8, 8), (13, 10), (5, 17), (16, 16), (9, 11)]  # (H, W) of each item's own mask: up, down, other aspects


class ToyModel(torch.nn.Module):
    """Logits (B, C, H, W) from a fixed 1x1 convolution of the image."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, C, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]])[:, :, None, None])
            self.conv.bias.zero_()

    def forward(self, images):
        return {"logits": self.conv(images)}


class ToySource:
    """Pairs whose masks are at their own sizes (a gradient of classes, a strip ignored)."""

    def __init__(self):
        gen = np.random.default_rng(0)
        self.masks = [gen.integers(0, C, size, dtype=np.uint8) for size in SIZES]
        for mask in self.masks:
            mask[0, :] = IGNORE_INDEX

    def pair(self, index):
        height, width = self.masks[index].shape
        return Image.new("RGB", (width, height)), self.masks[index]


def toy_items() -> ScoringItems:
    gen = torch.Generator().manual_seed(0)
    source = ToySource()
    inputs = [(torch.randn(3, S, S, generator=gen),
               F.interpolate(torch.from_numpy(m)[None, None].float(), size=(S, S), mode="nearest")[0, 0].long())
              for m in source.masks]
    return ScoringItems(inputs, source, list(range(len(SIZES))))


class OneProcessOf:
    """What evaluate_test_set asks of an Accelerator, as process ``index`` of ``count``: its share, no gathering."""

    device = torch.device("cpu")

    def __init__(self, index: int, count: int):
        self.index, self.count = index, count

    def autocast(self):
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def split_between_processes(self, items):
        per, extra = divmod(len(items), self.count)
        start = self.index * per + min(self.index, extra)
        yield items[start:start + per + (self.index < extra)]


def test_native_scores_are_the_resized_probabilities_argmax_against_each_mask_at_its_own_size():
    items, model = toy_items(), ToyModel()
    scored = evaluate_test_set(model, items, Accelerator(cpu=True), C, None, batch_size=2)
    expected = torch.zeros(C, C, dtype=torch.long)
    for p, (image, _, native, _) in enumerate(items[i] for i in range(len(items))):
        probabilities = model(image[None])["logits"].softmax(1)
        resized = F.interpolate(probabilities, size=native.shape, mode="bilinear", align_corners=False)
        pred = resized[0].argmax(0)
        assert torch.equal(native_labels(probabilities, tuple(native.shape)), pred)
        image_confusion = confusion_matrix(pred, native.long(), C, IGNORE_INDEX)
        expected += image_confusion
        assert scored.counts["iou_native_plain"][p].tolist() == iou_counts_of(image_confusion).tolist()
        assert (scored.counts["boundary_native_plain"][p].tolist()
                == boundary_counts(pred[None], native[None].long(), C, IGNORE_INDEX).T.tolist())
    assert torch.equal(scored.confusion["plain", "native"], expected)
    assert expected.sum() == sum((h - 1) * w for h, w in SIZES)  # every labelled pixel at its own size
    assert scored.confusion["plain", "input"].sum() == sum(int((m != IGNORE_INDEX).sum()) for _, m in items.inputs)
    for at in ("native", "input"):  # the per-image counts add up to the split's
        assert np.array_equal(scored.counts[f"iou_{at}_plain"].sum(0),
                              iou_counts_of(scored.confusion["plain", at]).numpy())
    assert np.array_equal(scored.bands["plain", "native"].T.numpy(), scored.counts["boundary_native_plain"].sum(0))
    figures = scored.figures("plain", "native", ["a", "b", "c"])
    assert set(figures["iou"]) == {"a", "b", "c"} and figures["boundary_iou"] is not None
    assert scored.views == ["plain"] and set(scored.counts) == {"iou_native_plain", "iou_input_plain",
                                                                "boundary_native_plain"}


def test_shares_scored_on_several_processes_combine_into_the_one_process_result(monkeypatch):
    items, model, tta = toy_items(), ToyModel(), ([1.0, 2.0], True)
    whole = evaluate_test_set(model, items, OneProcessOf(0, 1), C, tta, batch_size=2)
    assert whole.views == ["plain", "tta"] and "boundary_native_tta" in whole.counts
    assert not torch.equal(whole.confusion["plain", "native"], whole.confusion["tta", "native"])

    shares = []  # each process's scores as it hands them to gather_object, gathered here instead
    monkeypatch.setattr(final_scoring, "_combine", lambda gathered, views: shares.extend(gathered))
    for index in range(3):  # 5 items on 3 processes: shares of 2, 2 and 1
        evaluate_test_set(model, items, OneProcessOf(index, 3), C, tta, batch_size=1)
    monkeypatch.undo()
    assert [g["positions"] for g in shares] == [[0, 1], [2, 3], [4]]
    combined = final_scoring._combine(shares[::-1], {"plain": None, "tta": tta})  # in any order
    with pytest.raises(RuntimeError, match=r"scored positions \[0, 1, 4\], not each test item once"):
        final_scoring._combine([shares[0], shares[2]], {"plain": None, "tta": tta})
    for key in whole.confusion:
        assert torch.equal(combined.confusion[key], whole.confusion[key]), key
        assert torch.equal(combined.bands[key], whole.bands[key]), key
    for key in whole.counts:
        assert np.array_equal(combined.counts[key], whole.counts[key]), key
