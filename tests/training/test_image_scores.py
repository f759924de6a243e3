"""Per-image test counts against hand counts, and test_scores.npz: round trip, runs without it, damaged files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simseg.errors import SimsegError
from simseg.training.boundary import boundary_counts
from simseg.training.image_scores import (
    SCORES_FILE,
    boundary_counts_batch,
    image_boundary_counts,
    iou_counts,
    iou_counts_batch,
    iou_counts_of,
    read_test_scores,
    write_test_scores,
)
from simseg.training.metrics import confusion_matrix

X = 255  # an ignored pixel


def test_iou_counts_by_hand_with_ignored_pixels_and_an_absent_class():
    target = torch.tensor([[0, 0, 1, 1],
                           [0, X, 1, 1],
                           [X, X, 0, 0]])
    pred = torch.tensor([[0, 1, 1, 1],
                         [0, 1, 1, 0],
                         [1, 1, 0, 0]])
    counts = iou_counts(pred, target, 3)
    # class 0: target at 5 labelled pixels, predicted at 5 of the labelled ones, 4 of them right -> union 6;
    # class 1: target 4, predicted 4 labelled (the ignored pixels predicted 1 do not count), 3 right -> union 5;
    # class 2: in neither -> (0, 0)
    assert counts.dtype == torch.long and counts.tolist() == [[4, 6], [3, 5], [0, 0]]


def test_iou_counts_of_a_confusion_matrix_and_their_sum_over_images_is_the_splits():
    gen = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 4, (5, 6, 7), generator=gen)
    target = torch.randint(0, 4, (5, 6, 7), generator=gen)
    target[0, :2] = X
    target[1] = X  # an image with no labelled pixel counts nothing
    per_image = iou_counts_batch(pred, target, 4)
    assert per_image.shape == (5, 4, 2) and per_image[1].sum() == 0
    assert torch.equal(per_image[2], iou_counts(pred[2], target[2], 4))
    total = confusion_matrix(pred, target, 4, X)  # rows target, columns prediction
    assert torch.equal(per_image.sum(0), iou_counts_of(total))
    assert torch.equal(iou_counts_of(total)[:, 0], total.diagonal())
    assert torch.equal(iou_counts_of(total)[:, 1], total.sum(0) + total.sum(1) - total.diagonal())
    assert iou_counts_batch(pred[:0], target[:0], 4).shape == (0, 4, 2)


def test_boundary_counts_per_image_are_boundary_counts_of_each_image_as_class_rows():
    gen = torch.Generator().manual_seed(1)
    pred = torch.randint(0, 3, (3, 12, 9), generator=gen)
    target = torch.randint(0, 3, (3, 12, 9), generator=gen)
    target[1, 3:6] = X
    per_image = boundary_counts_batch(pred, target, 3)
    assert per_image.shape == (3, 3, 2)
    for i in range(3):
        assert torch.equal(per_image[i], boundary_counts(pred[i:i + 1], target[i:i + 1], 3).T)
        assert torch.equal(per_image[i], image_boundary_counts(pred[i], target[i], 3))
    assert torch.equal(per_image.sum(0), boundary_counts(pred, target, 3).T)  # same size: same band width
    assert not torch.equal(per_image[0], per_image[1])


def counts(n: int, c: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    union = rng.integers(0, 50, (n, c))
    return np.stack([rng.integers(0, union + 1), union], axis=-1)  # (N, C, 2), intersection <= union


def test_the_file_round_trips_and_says_what_was_not_scored(tmp_path):
    names, classes = ["cat_1", "dog_7", "cat_3"], ["background", "pet", "boundary"]
    plain = {"iou_native_plain": counts(3, 3, 0), "iou_input_plain": counts(3, 3, 1),
             "boundary_native_plain": counts(3, 3, 2)}
    assert write_test_scores(tmp_path, names, classes, plain) == tmp_path / SCORES_FILE
    scores = read_test_scores(tmp_path)
    assert scores.names == names and scores.classes == classes
    assert np.array_equal(scores.counts(), plain["iou_native_plain"]) and scores.counts().dtype == np.int64
    assert np.array_equal(scores.counts(at="input"), plain["iou_input_plain"])
    assert np.array_equal(scores.counts(kind="boundary"), plain["boundary_native_plain"])
    assert scores.counts("tta") is None and scores.counts(at="input", kind="boundary") is None
    with pytest.raises(ValueError, match="view='mean'"):
        scores.counts("mean")
    assert [p.name for p in tmp_path.iterdir()] == [SCORES_FILE]  # no temporary file left

    tta = {**plain, **{k.replace("plain", "tta"): counts(3, 3, 10 + i) for i, k in enumerate(plain)}}
    write_test_scores(tmp_path, names, classes, tta)
    scores = read_test_scores(tmp_path)
    assert np.array_equal(scores.counts("tta", "input"), tta["iou_input_tta"])
    assert np.array_equal(scores.counts("tta", kind="boundary"), tta["boundary_native_tta"])
    with pytest.raises(ValueError, match=r"is \(3, 2, 2\), not \(images, classes, 2\) = \(3, 3, 2\)"):
        write_test_scores(tmp_path, names, classes, {"iou_native_plain": counts(3, 2, 0)})


def test_a_run_without_the_file_gives_none_and_a_damaged_file_is_one_line(tmp_path):
    assert read_test_scores(tmp_path) is None  # runs from before the file
    path = tmp_path / SCORES_FILE
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(SimsegError, match=f"{path} is damaged .*: delete it") as err:
        read_test_scores(tmp_path)
    assert "\n" not in str(err.value)
    np.savez(path, names=np.array(["a", "b"]), classes=np.array(["x"]), iou_native_plain=np.zeros((3, 1, 2), int))
    with pytest.raises(SimsegError, match=r"iou_native_plain is not \(images, classes, 2\) integer counts"):
        read_test_scores(tmp_path)
    np.savez(path, names=np.array(["a"]), classes=np.array(["x"]), iou_input_plain=np.zeros((1, 1, 2), int))
    with pytest.raises(SimsegError, match="it has no iou_native_plain"):
        read_test_scores(tmp_path)
    np.savez(path, classes=np.array(["x"]), iou_native_plain=np.zeros((1, 1, 2), int))
    with pytest.raises(SimsegError, match=r"damaged \(KeyError\)"):
        read_test_scores(tmp_path)
