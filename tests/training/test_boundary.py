"""Boundary IoU against hand counts and the authors' reference erosion (cv2.erode with a 3x3 kernel d times on a
zero-padded mask, which scipy's binary_erosion with border_value=0 reproduces)."""

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from scipy.ndimage import binary_erosion
from torch.utils.data import DataLoader, TensorDataset

from simseg.training.boundary import band_width, boundary_band, boundary_counts, boundary_iou
from simseg.training.engine import evaluate_confusion, reset_accelerate_state
from simseg.training.metrics import confusion_matrix

NAMES = ["background", "thing", "other"]


def square(top: int, left: int, side: int = 4, size: int = 8) -> torch.Tensor:
    """(1, size, size) class ids: 1 inside a ``side`` square at (top, left), 0 elsewhere."""
    mask = torch.zeros(1, size, size, dtype=torch.long)
    mask[0, top:top + side, left:left + side] = 1
    return mask


def reference_band(mask: np.ndarray, d: int) -> np.ndarray:
    """The boundary_iou API's mask_to_boundary: the mask minus its erosion, the image border counting as contour."""
    eroded = binary_erosion(mask, structure=np.ones((3, 3), bool), iterations=d, border_value=0)
    return mask & ~eroded


def test_band_width_is_two_percent_of_the_diagonal_at_least_one():
    assert band_width(8, 8) == 1  # 0.02 * 11.3 = 0.23 rounds to 0 -> 1
    assert band_width(224, 224) == 6  # 0.02 * 316.8 = 6.34
    assert band_width(100, 100) == 3  # 2.83
    assert band_width(100, 100, dilation_ratio=0.05) == 7  # 7.07


def test_band_of_a_square_is_its_outer_ring_and_the_image_border_is_a_contour():
    band = boundary_band(square(2, 2).bool(), 1)[0]
    ring = torch.zeros(8, 8, dtype=torch.bool)
    ring[2:6, 2:6] = True
    ring[3:5, 3:5] = False  # a 4x4 square keeps its 2x2 middle
    assert torch.equal(band, ring)
    full = torch.ones(1, 8, 8, dtype=torch.bool)
    border = torch.ones(8, 8, dtype=torch.bool)
    border[2:6, 2:6] = False  # d = 2: the two outermost rings of the image
    assert torch.equal(boundary_band(full, 2)[0], border)


def test_bands_match_the_reference_erosion():
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 20, 17, generator=gen) > 0.4
    masks[0] = True
    for d in (1, 2, 3):
        expected = np.stack([reference_band(m, d) for m in masks.numpy()])
        assert np.array_equal(boundary_band(masks, d).numpy(), expected), d


def test_shifted_square_by_hand():
    counts = boundary_counts(square(2, 3), square(2, 2), 3)  # prediction one column to the right of the target
    # thing: each ring has 12 pixels; shared: rows 2 and 5 at columns 3..5 = 6 -> union 18
    # background: the target's background (48 pixels) is all band at d=1 on 8x8; the prediction's background band
    # is 42 pixels (all but column 1, rows 1..6), 4 of which (column 2, rows 2..5) lie in the target's square
    # -> intersection 38, union 48 + 42 - 38 = 52. "other" is nowhere: union 0, undefined
    assert counts.tolist() == [[38, 6, 0], [52, 18, 0]]
    figures = boundary_iou(counts, NAMES)
    assert figures["boundary_iou_per_class"] == pytest.approx({"background": 38 / 52, "thing": 1 / 3, "other": None})
    assert figures["boundary_iou"] == pytest.approx((38 / 52 + 1 / 3) / 2)  # "other" left out of the mean


def test_identical_masks_score_one_and_disjoint_masks_zero():
    target = torch.cat([square(1, 1), square(3, 2)])
    counts = boundary_counts(target, target, 3)
    assert boundary_iou(counts, NAMES) == {"boundary_iou": 1.0,
                                           "boundary_iou_per_class": {"background": 1.0, "thing": 1.0, "other": None}}
    disjoint = boundary_iou(boundary_counts(square(0, 0, 3) * 2, square(5, 5, 3), 3), NAMES)["boundary_iou_per_class"]
    assert disjoint["thing"] == 0.0 and disjoint["other"] == 0.0  # in one band each, never in both


def test_a_class_never_predicted_counts_as_zero():
    figures = boundary_iou(boundary_counts(torch.zeros(1, 8, 8, dtype=torch.long), square(2, 2), 3), NAMES)
    assert figures["boundary_iou_per_class"]["thing"] == 0.0
    assert figures["boundary_iou"] == pytest.approx((figures["boundary_iou_per_class"]["background"] + 0.0) / 2)


def test_ignored_pixels_are_in_neither_band_and_make_no_contour():
    target = torch.full((1, 12, 12), 255, dtype=torch.long)  # an unlabelled strip between thing and background
    target[0, :, :4] = 1
    target[0, :, 8:] = 0
    # d = 1 on 12x12. Each labelled part's band: its image-border pixels (a column of 12 and 3 pixels of the top
    # and bottom rows = 18), plus its column beside the strip (10 more) when the predicted edge lies right there.
    # No pixel of the strip counts, whatever the prediction put there.
    for edge, unions in ((4, [18, 28, 0]), (6, [18, 18, 0]), (8, [28, 18, 0])):
        pred = torch.zeros(1, 12, 12, dtype=torch.long)
        pred[0, :, :edge] = 1  # wherever the edge lies inside the strip, every labelled pixel is right
        counts = boundary_counts(pred, target, 3)
        assert counts.tolist() == [unions, unions], edge
        assert boundary_iou(counts, NAMES)["boundary_iou_per_class"] == {"background": 1.0, "thing": 1.0,
                                                                        "other": None}, edge
    assert boundary_counts(pred, torch.full_like(pred, 255), 3).sum() == 0  # nothing labelled, nothing counted


def test_batch_counts_are_the_sum_of_each_image_s_and_match_the_reference():
    gen = torch.Generator().manual_seed(1)
    pred = torch.randint(0, 3, (5, 16, 16), generator=gen)
    target = torch.randint(0, 3, (5, 16, 16), generator=gen)
    batch = boundary_counts(pred, target, 3, ignore_index=None)
    assert torch.equal(batch, sum(boundary_counts(pred[i:i + 1], target[i:i + 1], 3) for i in range(5)))
    d = band_width(16, 16)
    for c in range(3):
        truth = np.stack([reference_band(m, d) for m in (target == c).numpy()])
        guess = np.stack([reference_band(m, d) for m in (pred == c).numpy()])
        assert batch[:, c].tolist() == [(truth & guess).sum(), (truth | guess).sum()]


def test_shape_checks():
    with pytest.raises(ValueError, match="same shape|both be"):
        boundary_counts(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5), 2)
    with pytest.raises(ValueError, match="class names"):
        boundary_iou(torch.zeros(2, 3, dtype=torch.long), ["a", "b"])
    assert boundary_iou(torch.zeros(2, 3, dtype=torch.long), NAMES)["boundary_iou"] is None


class Fixed(torch.nn.Module):
    """Predicts the given (N, H, W) ids for the images whose first pixel holds their index."""

    def __init__(self, pred: torch.Tensor, classes: int):
        super().__init__()
        self.logits = torch.nn.functional.one_hot(pred, classes).permute(0, 3, 1, 2).float()

    def forward(self, images):
        return {"logits": self.logits[images[:, 0, 0, 0].long()]}


def test_evaluation_returns_the_confusion_and_the_boundary_counts_of_the_same_predictions():
    reset_accelerate_state()
    accelerator = Accelerator(cpu=True)
    gen = torch.Generator().manual_seed(2)
    pred, masks = torch.randint(0, 3, (5, 16, 16), generator=gen), torch.randint(0, 3, (5, 16, 16), generator=gen)
    masks[:, :2] = 255
    images = torch.arange(5).float()[:, None, None, None].expand(5, 3, 16, 16)
    loader = accelerator.prepare(DataLoader(TensorDataset(images, masks), batch_size=2))
    model = Fixed(pred, 3)
    confusion, counts = evaluate_confusion(model, loader, accelerator, 3, boundary=True)
    assert torch.equal(confusion, confusion_matrix(pred, masks, 3, 255))
    assert torch.equal(counts, boundary_counts(pred, masks, 3))
    assert torch.equal(evaluate_confusion(model, loader, accelerator, 3), confusion)  # the default: the matrix alone
