"""A run's classes (classes.json) drive what predict writes: palette PNGs in the run's colours, ``--label-values
source`` as the exact values the class file gives, predictions.jsonl's header, the Segmenter's names and colours,
and the test set's scoring (unlabelled pixels left out)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from simseg.data.label_set import LabelSet
from simseg.errors import SimsegError
from simseg.inference.label_maps import blend, label_image
from simseg.inference.own_test_set import own_test_pairs, score_test_set
from simseg.inference.segmenter import Segmenter
from simseg.inference.trained_run import load_trained_run
from tests.helpers import write_images
from tests.inference.conftest import SEVEN, TWO, predict, records


def palette_of(image: Image.Image) -> np.ndarray:
    return np.array(image.getpalette()).reshape(-1, 3)  # (256, 3)


@pytest.mark.parametrize("classes", [TWO, SEVEN], ids=["2 classes", "7 classes"])
def test_predict_writes_the_runs_colours_and_its_datas_own_values(classes, finished_run, tmp_path):
    run = finished_run(classes=classes)
    write_images(tmp_path / "in", [f"p{i}.png" for i in range(4)], size=(40, 30))
    ids_out, values_out = tmp_path / "ids", tmp_path / "values"
    assert predict(str(run), str(tmp_path / "in"), "--out", str(ids_out)) == 0
    assert predict(str(run), str(tmp_path / "in"), "--out", str(values_out), "--label-values", "source") == 0
    values, colours, seen = np.array(classes.values), np.array(classes.colours), set()
    for i in range(4):
        by_id, by_value = Image.open(ids_out / f"p{i}.png"), Image.open(values_out / f"p{i}.png")
        assert by_id.mode == by_value.mode == "P" and by_id.size == by_value.size == (40, 30)
        ids, stored = np.array(by_id), np.array(by_value)
        assert ids.max() < classes.num_classes
        assert np.array_equal(stored, values[ids])  # the stored bytes are the class file's values, pixel for pixel
        assert np.array_equal(palette_of(by_id)[:classes.num_classes], colours)
        assert np.array_equal(palette_of(by_value)[values], colours)  # each value shown in its class's colour
        seen |= set(np.unique(ids).tolist())
    assert len(seen) >= 2  # the untrained model predicts several classes, so the mapping is checked on several
    head, *lines = records(values_out)
    assert head["label_values"] == "source" and head["classes"] == list(classes.names)
    assert head["palette"] == [list(c) for c in classes.colours] and head["values"] == list(classes.values)
    assert head["title"] == classes.title
    assert all(list(line["fractions"]) == list(classes.names) for line in lines)


def test_label_image_stores_ids_or_the_datasets_values():
    labels = np.array([[0, 1, 2], [6, 1, 0]], dtype=np.uint8)
    by_id, by_value = label_image(labels, SEVEN), label_image(labels, SEVEN, "source")
    assert np.array_equal(np.array(by_id), labels)
    assert np.array_equal(np.array(by_value), [[7, 3, 40], [1, 3, 7]])
    assert palette_of(by_value)[40].tolist() == list(SEVEN.colours[2]) and palette_of(by_id)[255].tolist() == [128] * 3
    two = label_image(labels[:, :2].clip(0, 1), TWO, "source")  # class 1's value is 255, where ignored pixels sit
    assert np.array_equal(np.array(two), [[0, 255], [255, 255]]) and palette_of(two)[255].tolist() == [200, 100, 0]
    with pytest.raises(ValueError, match="choose one of"):
        label_image(labels, SEVEN, "oxford")


def test_values_above_255_are_written_as_a_16_bit_png(tmp_path):
    wide = LabelSet(("background", "cell", "nucleus"), ((0, 0, 0), (0, 255, 0), (255, 0, 0)), (0, 1000, 65535))
    labels = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    image = label_image(labels, wide, "source")
    assert image.mode == "I;16"
    image.save(tmp_path / "x.png")
    assert np.array_equal(np.array(Image.open(tmp_path / "x.png")), [[0, 1000], [65535, 1000]])
    assert label_image(labels, wide).mode == "P"  # the ids themselves still fit a palette PNG


def test_blend_leaves_class_0_and_mixes_the_others_halfway():
    photo = Image.fromarray(np.tile(np.array([100, 101, 100], dtype=np.uint8), (1, 3, 1)))  # (1, 3, 3)
    mixed = np.array(blend(photo, np.array([[0, 1, 6]], dtype=np.uint8), SEVEN.colours))
    # (photo + colour) / 2: class 1 is (30, 225, 70), class 6 (180, 75, 164)
    assert mixed.tolist() == [[[100, 101, 100], [65, 163, 85], [140, 88, 132]]]


def test_the_segmenter_names_and_colours_are_the_runs(finished_run):
    segmenter = Segmenter.from_run(finished_run(classes=SEVEN), device="cpu")
    assert segmenter.label_set == SEVEN and segmenter.run.classes == SEVEN
    assert segmenter.classes == SEVEN.names and segmenter.palette == SEVEN.colours
    prediction = segmenter.predict(np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8))
    assert prediction.probabilities.shape == (7, 20, 24)
    fractions = prediction.class_fractions()
    assert list(fractions) == list(SEVEN.names) and sum(fractions.values()) == pytest.approx(1)
    counts = np.bincount(prediction.labels.ravel(), minlength=7)
    assert fractions["shape_3"] == counts[3] / prediction.labels.size


def test_the_test_set_is_scored_with_the_runs_classes_without_unlabelled_pixels():
    masks = torch.tensor([[[0, 1], [255, 1]]])  # (1, 2, 2); the 255 pixel has no label
    predicted = torch.tensor([[[0, 0], [1, 1]]])

    def probabilities(images):
        return torch.nn.functional.one_hot(predicted, 2).permute(0, 3, 1, 2).float()  # (1, 2, 2, 2)

    figures = score_test_set(probabilities, [(torch.zeros(1, 3, 2, 2), masks)], TWO)
    # background: 1 right of 1 in the target, 2 predicted -> 1/2; road: 1 right of 2, 1 predicted -> 1/2
    assert figures["iou"] == {"sky": 0.5, "road": 0.5} and figures["miou"] == 0.5
    assert figures["confusion"] == [[1, 0], [1, 1]]


def test_a_run_whose_data_now_holds_other_classes_is_one_line(finished_run):
    run = load_trained_run(finished_run(classes=TWO))  # its data, synthetic, has 3 classes
    with pytest.raises(SimsegError, match=r"holds 3 classes but the run at .* predicts 2 \(sky, road\)") as caught:
        own_test_pairs(run)
    assert "\n" not in str(caught.value)


def test_oxford_values_overlays_and_probabilities(finished_run, tmp_path, capsys):
    write_images(tmp_path / "in", ["cat.png"], size=(30, 22))
    out, run = tmp_path / "out", finished_run()
    assert predict(str(run), str(tmp_path / "in" / "cat.png"), "--out", str(out), "--overlay", "--probs",
                   "--label-values", "oxford") == 0
    assert "--label-values oxford is now called --label-values source" in capsys.readouterr().err
    assert records(out)[0]["label_values"] == "source"
    assert predict(str(run), str(tmp_path / "in" / "cat.png"), "--out", str(tmp_path / "source"),
                   "--label-values", "source") == 0
    assert (tmp_path / "source" / "cat.png").read_bytes() == (out / "cat.png").read_bytes()  # the same file
    values = np.array(Image.open(out / "cat.png"))
    assert values.shape == (22, 30) and set(np.unique(values)) <= {1, 2, 3}
    probs = np.load(out / "cat.npy")
    assert probs.dtype == np.float16 and probs.shape == (3, 22, 30)
    assert np.allclose(probs.astype(np.float32).sum(0), 1, atol=2e-3)
    oxford_of_class = np.array([2, 1, 3])
    assert (oxford_of_class[probs.astype(np.float32).argmax(0)] == values).mean() > 0.99  # float16 ties aside
    overlay = Image.open(out / "cat_overlay.jpg")
    assert overlay.size == (30, 22) and overlay.mode == "RGB"
