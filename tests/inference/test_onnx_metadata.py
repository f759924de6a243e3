"""The classes an ONNX file carries: the metadata of :func:`label_set_metadata` reads back as the same label set, and
a file written before exports carried ``values`` (it had ``oxford_values``) still predicts, as the pet trimaps.
Small hand-built graphs (a 1x1 convolution and a softmax) stand in for exported models, so these tests export
nothing; the export itself is checked in test_onnx_export.py (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from simseg.data.label_set import PETS
from simseg.errors import SimsegError
from simseg.inference.backends import ONNX_FORMAT, OnnxBackend, label_set_metadata, onnx_label_set
from simseg.inference.segmenter import Segmenter
from tests.helpers import write_images
from tests.inference.conftest import SEVEN, TWO, predict, records

SIZE = 8
OLD_METADATA = {  # what simseg export wrote before runs recorded their classes
    "format": ONNX_FORMAT, "input": "images", "output": "probabilities", "img_size": SIZE, "mean": [0.5] * 3,
    "std": [0.25] * 3, "classes": ["background", "pet", "boundary"], "palette": [[0, 0, 0], [255, 153, 0],
                                                                                 [255, 255, 255]],
    "oxford_values": [2, 1, 3], "arch": "vit_linear", "weights_sha256": "0" * 64, "run": "outputs/old", "torch": "2"}


def tiny_onnx(path: Path, metadata: dict, classes: int) -> Path:
    """images (B, 3, S, S) -> softmax of a fixed 1x1 convolution to ``classes`` channels, with simseg metadata."""
    weights = np.random.default_rng(0).normal(size=(classes, 3, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)], "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes, SIZE, SIZE])],
        [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8  # one every ONNX Runtime reads
    model.metadata_props.add(key="simseg", value=json.dumps(metadata))
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("classes", [PETS, TWO, SEVEN], ids=["pets", "2 classes", "7 classes"])
def test_the_class_metadata_round_trips(classes, tmp_path):
    metadata = {**OLD_METADATA, **label_set_metadata(classes)}
    del metadata["oxford_values"]
    assert onnx_label_set(json.loads(json.dumps(metadata))) == classes
    segmenter = Segmenter.from_onnx(tiny_onnx(tmp_path / "m.onnx", metadata, classes.num_classes))
    assert segmenter.label_set == classes and segmenter.classes == classes.names
    assert segmenter.palette == classes.colours
    prediction = segmenter.predict(np.random.default_rng(0).integers(0, 256, (9, 13, 3), dtype=np.uint8))
    assert prediction.probabilities.shape == (classes.num_classes, 9, 13)
    assert list(prediction.class_fractions()) == list(classes.names)


def test_a_file_of_the_older_export_predicts_as_the_pet_trimaps(tmp_path):
    path = tiny_onnx(tmp_path / "old.onnx", OLD_METADATA, 3)
    assert OnnxBackend(path).label_set == PETS
    write_images(tmp_path / "in", ["a.png"], size=(20, 12))
    assert predict(str(path), str(tmp_path / "in"), "--out", str(tmp_path / "ids")) == 0
    assert predict(str(path), str(tmp_path / "in"), "--out", str(tmp_path / "oxford"), "--label-values", "oxford") == 0
    ids, values = (np.array(Image.open(tmp_path / side / "a.png")) for side in ("ids", "oxford"))
    assert np.array_equal(values, np.array([2, 1, 3])[ids]) and len(np.unique(ids)) >= 2
    assert records(tmp_path / "oxford")[0]["values"] == [2, 1, 3]


def test_damaged_class_metadata_is_one_line(tmp_path):
    metadata = {**OLD_METADATA, **label_set_metadata(SEVEN), "values": [1, 2]}  # 7 classes, 2 values
    with pytest.raises(SimsegError, match=r"bad.onnx has damaged class metadata .*7 classes need 7 colours and values"):
        OnnxBackend(tiny_onnx(tmp_path / "bad.onnx", metadata, 7))
