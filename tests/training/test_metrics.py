import json

import pytest
import torch

from simseg.training.metrics import confusion_matrix, segmentation_metrics

NAMES = ["pet", "background", "border"]


def pixels_from(confusion: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred, target) 1-d tensors holding exactly ``confusion[t][p]`` pixels of each (target, pred) pair."""
    pairs = [(p, t) for t, row in enumerate(confusion) for p, n in enumerate(row) for _ in range(n)]
    pred, target = zip(*pairs)
    return torch.tensor(pred), torch.tensor(target)


def test_hand_computed_3x3():
    confusion = torch.tensor([[5, 1, 0],
                              [2, 3, 1],
                              [0, 1, 7]])
    m = segmentation_metrics(confusion, NAMES)
    # true positives (diagonal) 5, 3, 7; target pixels (row sums) 6, 6, 8; predicted (column sums) 7, 5, 8; total 20
    # union = target + predicted - tp = 6+7-5=8, 6+5-3=8, 8+8-7=9
    assert m["iou"] == pytest.approx({"pet": 5 / 8, "background": 3 / 8, "border": 7 / 9})
    assert m["miou"] == pytest.approx((5 / 8 + 3 / 8 + 7 / 9) / 3)  # = 16/27
    assert m["miou"] == pytest.approx(16 / 27)
    assert m["pixel_accuracy"] == pytest.approx(15 / 20)  # (5+3+7) / 20
    assert m["class_accuracy"] == pytest.approx({"pet": 5 / 6, "background": 3 / 6, "border": 7 / 8})
    assert m["mean_pixel_accuracy"] == pytest.approx((5 / 6 + 3 / 6 + 7 / 8) / 3)  # = 53/72
    assert m["recall"] == m["class_accuracy"]
    assert m["precision"] == pytest.approx({"pet": 5 / 7, "background": 3 / 5, "border": 7 / 8})  # tp / predicted
    # dice = 2 tp / (target + predicted) = 10/13, 6/11, 14/16
    assert m["dice"] == pytest.approx({"pet": 10 / 13, "background": 6 / 11, "border": 14 / 16})
    assert m["mean_dice"] == pytest.approx((10 / 13 + 6 / 11 + 14 / 16) / 3)
    # fwiou = sum(target_c * iou_c) / total = (6*5/8 + 6*3/8 + 8*7/9) / 20 = (6 + 56/9) / 20 = 11/18
    assert m["fwiou"] == pytest.approx(11 / 18)
    assert m["confusion"] == confusion.tolist()


def test_class_absent_from_target_and_prediction_is_none_and_left_out_of_means():
    m = segmentation_metrics(torch.tensor([[4, 0, 0], [0, 0, 0], [1, 0, 5]]), NAMES)
    assert m["iou"]["background"] is None and m["dice"]["background"] is None
    assert m["class_accuracy"]["background"] is None
    # pet: tp 4, union 4+5-4 = 5; border: tp 5, union 6+5-5 = 6
    assert m["miou"] == pytest.approx((4 / 5 + 5 / 6) / 2)
    assert m["mean_dice"] == pytest.approx((8 / 9 + 10 / 11) / 2)
    assert m["mean_pixel_accuracy"] == pytest.approx((4 / 4 + 5 / 6) / 2)
    assert m["fwiou"] == pytest.approx((4 * 4 / 5 + 6 * 5 / 6) / 10)


def test_class_in_target_never_predicted_counts_as_zero():
    m = segmentation_metrics(torch.tensor([[3, 0, 0], [1, 0, 0], [0, 0, 2]]), NAMES)
    assert m["iou"]["background"] == 0.0 and m["dice"]["background"] == 0.0
    assert m["class_accuracy"]["background"] == 0.0
    assert m["miou"] == pytest.approx((3 / 4 + 0 + 1) / 3)  # pet: tp 3, union 3+4-3 = 4
    assert m["mean_pixel_accuracy"] == pytest.approx((1 + 0 + 1) / 3)


def test_class_predicted_but_absent_from_target_counts_as_zero_iou():
    m = segmentation_metrics(torch.tensor([[3, 1, 0], [0, 0, 0], [0, 0, 2]]), NAMES)
    assert m["iou"]["background"] == 0.0 and m["dice"]["background"] == 0.0
    assert m["miou"] == pytest.approx((3 / 4 + 0 + 1) / 3)
    assert m["class_accuracy"]["background"] is None  # recall: no background pixel existed to be found
    assert m["mean_pixel_accuracy"] == pytest.approx((3 / 4 + 1) / 2)


def test_perfect_prediction_is_one_everywhere():
    target = torch.randint(0, 3, (2, 16, 16), generator=torch.Generator().manual_seed(0))
    m = segmentation_metrics(confusion_matrix(target, target, 3), NAMES)
    for key in ("miou", "pixel_accuracy", "mean_pixel_accuracy", "mean_dice", "fwiou"):
        assert m[key] == pytest.approx(1.0), key
    for key in ("iou", "dice", "class_accuracy"):
        assert all(v == pytest.approx(1.0) for v in m[key].values()), key


def test_confusion_matrix_counts_rows_target_columns_prediction():
    table = [[5, 1, 0], [2, 3, 1], [0, 1, 7]]
    pred, target = pixels_from(table)
    assert confusion_matrix(pred, target, 3).tolist() == table
    assert confusion_matrix(pred, target, 3).dtype == torch.long


def test_confusion_matrix_matches_torchmetrics():
    from torchmetrics.classification import MulticlassConfusionMatrix  # 2 s to import: only in the test that uses it

    gen = torch.Generator().manual_seed(1)
    pred, target = torch.randint(0, 3, (4, 24, 24), generator=gen), torch.randint(0, 4, (4, 24, 24), generator=gen)
    target[target == 3] = 255  # some ignored pixels
    reference = MulticlassConfusionMatrix(num_classes=3, ignore_index=255)
    assert torch.equal(confusion_matrix(pred, target, 3, ignore_index=255), reference(pred, target))


def test_two_batches_accumulate_to_one_batch_of_both():
    gen = torch.Generator().manual_seed(2)
    pred, target = torch.randint(0, 3, (6, 8, 8), generator=gen), torch.randint(0, 3, (6, 8, 8), generator=gen)
    summed = confusion_matrix(pred[:2], target[:2], 3) + confusion_matrix(pred[2:], target[2:], 3)
    assert torch.equal(summed, confusion_matrix(pred, target, 3))
    assert segmentation_metrics(summed, NAMES) == segmentation_metrics(confusion_matrix(pred, target, 3), NAMES)


def test_ignored_pixels_do_not_count():
    target = torch.tensor([[0, 1, 255], [2, 255, 255]])
    pred = torch.tensor([[0, 1, 2], [2, 0, 1]])  # predictions under ignored pixels are wrong but must not matter
    confusion = confusion_matrix(pred, target, 3, ignore_index=255)
    assert confusion.sum() == 3
    assert confusion.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert segmentation_metrics(confusion, NAMES)["miou"] == 1.0


def test_out_of_range_ids_are_rejected():
    with pytest.raises(ValueError, match="class ids"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 3]), 3)  # e.g. a 1-based trimap not shifted
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(torch.zeros(2, 2, dtype=torch.long), torch.zeros(4, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="class names"):
        segmentation_metrics(torch.zeros(3, 3, dtype=torch.long), ["a", "b"])


def test_output_is_json_serialisable():
    for confusion in ([[5, 1, 0], [2, 3, 1], [0, 1, 7]], [[4, 0, 0], [0, 0, 0], [1, 0, 5]], [[0] * 3] * 3):
        m = segmentation_metrics(torch.tensor(confusion), NAMES)
        assert json.loads(json.dumps(m, allow_nan=False)) == m  # NaN would fail with allow_nan=False
        assert all(type(v) in (float, type(None)) for v in m["iou"].values())


def test_empty_matrix_is_all_none():
    m = segmentation_metrics(torch.zeros(3, 3, dtype=torch.long), NAMES)
    assert m["miou"] is None and m["pixel_accuracy"] is None and m["fwiou"] is None and m["mean_dice"] is None


def test_time_to_target_reads_the_first_epoch_past_each_fraction_of_the_final_score():
    from simseg.training.metrics import time_to_target

    history = [{"seconds": 10, "test_miou": 0.2}, {"seconds": 10}, {"seconds": 10, "test_miou": 0.45},
               {"seconds": 10, "test_miou": 0.38}, {"seconds": 10, "test_miou": 0.4}]
    target = time_to_target(history, (0.5, 0.9, 1.0, 1.2))
    assert target == {"basis": "test_miou", "final": 0.4,
                      "seconds": {"0.5": 10.0, "0.9": 30.0, "1.0": 30.0, "1.2": None}}
    with_val = [{"seconds": 5, "test_miou": 0.9, "val_miou": 0.1}, {"seconds": 5, "test_miou": 0.1, "val_miou": 0.2}]
    assert time_to_target(with_val, (0.9,)) == {"basis": "val_miou", "final": 0.2, "seconds": {"0.9": 10.0}}
    assert time_to_target([{"seconds": 3}]) == {}
