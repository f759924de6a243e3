"""The ONNX export: it predicts what its run predicts (on the run's own test images, a ViT and a CNN), its batch is
free, its metadata feeds a Segmenter, the verdict on the figures fails loudly, foreign files are refused, and a
failed write leaves no half file. Each architecture is exported once per module (a few seconds each)."""

from __future__ import annotations

import errno
import io
import json
import math

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from simseg import files
from simseg.data.label_set import PETS
from simseg.data.synthetic_pairs import SYNTHETIC_SHAPES
from simseg.errors import SimsegError
from simseg.inference import onnx_export, own_test_set
from simseg.inference.backends import OnnxBackend, TorchBackend
from simseg.inference.export_check import (
    MAX_PROBABILITY_DIFFERENCE,
    MIN_CLASS_AGREEMENT,
    check_figures,
    verify_export,
    write_figures,
)
from simseg.inference.onnx_export import export_onnx
from simseg.inference.segmenter import Segmenter
from simseg.inference.trained_run import load_trained_run
from tests.inference.conftest import make_finished_run

pytestmark = pytest.mark.slow  # every export takes seconds: the quick loop leaves them to the full suite
VIT, CNN = "vit_fused_skip", "unet_resnet18"
# vit_linear_upsample's head reads the batch size with len(tensor), which non-strict tracing bakes in as a constant
LEN_OF_TENSOR = "vit_linear_upsample"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """arch -> (run, path of its ONNX export), each exported on first use."""
    made = {}

    def get(arch: str):
        if arch not in made:
            folder = tmp_path_factory.mktemp(arch)
            run = load_trained_run(make_finished_run(folder / "run", f"model.arch={arch}"))
            export_onnx(run, folder / "model.onnx")
            made[arch] = run, folder / "model.onnx"
        return made[arch]
    return get


@pytest.fixture(scope="module")
def vit_report(exported):
    return verify_export(*exported(VIT), threads=1)


def test_the_file_is_self_contained_with_a_named_free_batch(exported):
    run, path = exported(VIT)
    assert [p.name for p in path.parent.iterdir() if p.name != "run"] == ["model.onnx"]  # no external-data file
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    (images,), (probabilities,) = model.graph.input, model.graph.output
    for value in (images, probabilities):
        dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        assert dims == ["batch", 3 if value is images else PETS.num_classes, 64, 64]
    assert (images.name, probabilities.name) == ("images", "probabilities")


@pytest.mark.parametrize("arch", [VIT, CNN])
def test_onnx_agrees_with_pytorch_on_the_test_images(exported, vit_report, arch, tmp_path):
    run, path = exported(arch)
    report = vit_report if arch == VIT else verify_export(run, path, threads=1)
    assert report["onnx_checker"] == "passed" and report["test_images"] == 8
    assert [b["batch_size"] for b in report["batches"]] == [1, 8]
    for figures in report["batches"]:
        assert figures["pixels"] == 8 * 64 * 64
        assert figures["max_probability_difference"] < MAX_PROBABILITY_DIFFERENCE / 10
        assert figures["class_agreement"] >= MIN_CLASS_AGREEMENT
        assert figures["miou_onnx"] == pytest.approx(figures["miou_torch"], abs=1e-3)
    speed = report["speed"]
    assert speed["threads"] == 1 and speed["torch_images_per_s"] > 0 and speed["onnx_images_per_s"] > 0
    check_figures(report)
    write_figures(tmp_path / "export_report.json", report)
    assert json.loads((tmp_path / "export_report.json").read_text()) == report


def test_the_timing_puts_torchs_thread_count_back(exported):
    run, path = exported(VIT)
    before = torch.get_num_threads()
    verify_export(run, path, threads=1 if before > 1 else 2)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("arch", [VIT, CNN, LEN_OF_TENSOR])
def test_the_batch_size_is_free(exported, arch):
    run, path = exported(arch)
    images = next(iter(own_test_set.own_test_loader(run, batch_size=8)))[0]
    expected = TorchBackend(run.model, torch.device("cpu")).probabilities(images)
    backend = OnnxBackend(path)
    for batch in (1, 5):
        found = backend.probabilities(images[:batch])  # (batch, C, S, S)
        assert found.shape == (batch, PETS.num_classes, 64, 64)
        torch.testing.assert_close(found, expected[:batch], atol=1e-4, rtol=0)


def test_metadata_round_trips_through_the_segmenter(exported):
    run, path = exported(VIT)
    from_onnx, from_run = Segmenter.from_onnx(path), Segmenter.from_run(run.run_dir, device="cpu")
    assert (from_onnx.img_size, from_onnx.mean, from_onnx.std) == (64, tuple(run.cfg.aug.mean), tuple(run.cfg.aug.std))
    assert from_onnx.label_set == from_run.label_set == PETS  # the run has no classes.json: an older pets run
    assert from_onnx.classes == PETS.names and from_onnx.palette == PETS.colours
    info = from_onnx.backend.info
    assert info["weights_sha256"] == run.weights_sha256 and info["arch"] == VIT
    assert info["values"] == [2, 1, 3] and info["run"] == str(run.run_dir)
    agreeing = pixels = 0
    for images, _ in own_test_set.own_test_loader(run, batch_size=8):
        sizes = [(64, 64)] * len(images)
        for a, b in zip(from_onnx.predict_batch(images, sizes), from_run.predict_batch(images, sizes)):
            agreeing, pixels = agreeing + int((a.labels == b.labels).sum()), pixels + a.labels.size
    assert agreeing / pixels >= MIN_CLASS_AGREEMENT


@pytest.mark.parametrize("figure, value, message", [
    ("max_probability_difference", 2e-3, "largest probability difference at batch 8 is 0.002, above 0.001"),
    ("max_probability_difference", math.nan, "largest probability difference at batch 8 is nan"),
    ("class_agreement", 0.99, "argmax class agreement at batch 8 is 0.99, below 0.9999"),
    ("miou_difference", -0.01, "test mIoU at batch 8 is"),
    ("miou_difference", None, "test mIoU at batch 8 is"),
])
def test_check_report_fails_loudly_on_a_doctored_report(vit_report, figure, value, message):
    doctored = json.loads(json.dumps(vit_report))
    doctored["batches"][1][figure] = value
    with pytest.raises(SimsegError, match="export_report.json") as caught:
        check_figures(doctored)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_verify_refuses_the_export_of_other_weights(exported, tmp_path):
    _, path = exported(VIT)
    other = load_trained_run(make_finished_run(tmp_path / "other", f"model.arch={VIT}", seed=1))
    with pytest.raises(SimsegError, match="exported from other weights"):
        verify_export(other, path)


def test_an_onnx_file_from_elsewhere_is_refused(tmp_path):
    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 64, 64])
    probabilities = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3, 64, 64])
    graph = helper.make_graph([helper.make_node("Softmax", ["images"], ["probabilities"], axis=1)], "foreign",
                              [images], [probabilities])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8  # one every ONNX Runtime reads
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp_path / "foreign.onnx"))
    with pytest.raises(SimsegError, match="without simseg's metadata"):
        OnnxBackend(tmp_path / "foreign.onnx")
    with pytest.raises(SimsegError, match="without simseg's metadata"):
        Segmenter.from_onnx(tmp_path / "foreign.onnx")


@pytest.mark.parametrize("old", [None, b"the previous export"])
def test_a_full_disk_leaves_no_half_file(exported, monkeypatch, tmp_path, old):
    """The disk fills half-way through the file: ``out`` is as it was (absent, or the old file), no temp file."""
    run, path = exported(VIT)
    graph = onnx.load(str(path))
    del graph.metadata_props[:]  # export_onnx adds them again
    monkeypatch.setattr(onnx_export, "onnx_model", lambda *_: graph)  # the write is under test, not the exporter

    def full_half_way(target, write):
        def write_half(file):
            buffer = io.BytesIO()
            write(buffer)
            file.write(buffer.getvalue()[:len(buffer.getvalue()) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        files.atomic_write(target, write_half)
    monkeypatch.setattr(onnx_export, "atomic_write", full_half_way)

    out = tmp_path / "model.onnx"
    if old is not None:
        out.write_bytes(old)
    with pytest.raises(SimsegError, match="disk full"):
        export_onnx(run, out)
    assert (out.read_bytes() if out.exists() else None) == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ([] if old is None else ["model.onnx"])


def test_the_metadata_names_what_a_reader_needs(exported):
    _, path = exported(VIT)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    info = json.loads(props["simseg"])
    assert info["format"] == "simseg-onnx/1" and (info["input"], info["output"]) == ("images", "probabilities")
    assert info["classes"] == ["background", "pet", "boundary"]
    assert info["palette"] == [[0, 0, 0], [255, 153, 0], [255, 255, 255]] and info["values"] == [2, 1, 3]
    assert info["title"] == PETS.title and info["ignore_index"] == 255 and "oxford_values" not in info


def test_a_seven_class_run_exports_verifies_and_cards_its_classes(tmp_path, capsys):
    """The release ``simseg export`` makes (:func:`export_release`, without the CLI, which test_predict.py runs) of
    a run on the synthetic shapes (7 classes, its classes.json): the three files, and the metadata, the check on its
    own test images and the card all carry its classes; the run folder is only read."""
    from simseg.inference.release import Release, export_release

    run_dir = make_finished_run(tmp_path / "run", f"model.arch={VIT}", "data.source=synthetic-shapes",
                                classes=SYNTHETIC_SHAPES)
    out = tmp_path / "out" / "shapes.onnx"
    assert export_release(run_dir, out, threads=1) == Release(out, out.parent / "export_report.json",
                                                              out.parent / "MODEL_CARD.md")
    assert sorted(p.name for p in out.parent.iterdir()) == ["MODEL_CARD.md", "export_report.json", "shapes.onnx"]
    assert not (run_dir / "MODEL_CARD.md").exists()
    info = json.loads({p.key: p.value for p in onnx.load(str(tmp_path / "out" / "shapes.onnx")).metadata_props}
                      ["simseg"])
    assert info["classes"] == list(SYNTHETIC_SHAPES.names) and info["values"] == list(range(7))
    assert info["palette"] == [list(c) for c in SYNTHETIC_SHAPES.colours] and info["title"] == SYNTHETIC_SHAPES.title
    segmenter = Segmenter.from_onnx(tmp_path / "out" / "shapes.onnx")
    assert segmenter.label_set == SYNTHETIC_SHAPES
    assert segmenter.predict(np.zeros((20, 30, 3), dtype=np.uint8)).probabilities.shape == (7, 20, 30)
    report = json.loads((tmp_path / "out" / "export_report.json").read_text())
    assert report["onnx_checker"] == "passed" and report["speed"]["threads"] == 1 and "## ONNX export" in card_text(out)
    assert all(b["miou_onnx"] == pytest.approx(b["miou_torch"], abs=1e-3) for b in report["batches"])
    card = (tmp_path / "out" / "MODEL_CARD.md").read_text()
    assert "| 6 | " + SYNTHETIC_SHAPES.names[6] + " | `#" in card and "7 class scores per pixel" in card
    assert all(f"| IoU {name} |" in card for name in SYNTHETIC_SHAPES.names) and "pet" not in card.lower()


def card_text(onnx_path):
    return (onnx_path.parent / "MODEL_CARD.md").read_text()
