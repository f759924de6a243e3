"""``simseg predict``: outputs at each image's own size, named after their inputs, skipped when there, and one-line
errors; on a trained run, its own test images scored at the model's input size give back its metrics.json mIoU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from simseg.cli import main
from simseg.data.label_set import PETS, write_run_label_set
from simseg.inference import own_test_set
from simseg.inference.segmenter import Segmenter
from simseg.training.handoff import export_encoder
from simseg.training.metrics import confusion_matrix, segmentation_metrics
from tests.helpers import write_images
from tests.inference.conftest import TWO, predict, records


def test_label_maps_are_palette_pngs_at_each_images_own_size(finished_run, tmp_path):
    run = finished_run()
    sizes = [(37, 51), (200, 20), (64, 64), (1, 9)]  # (width, height): odd sides, tall, wide, square, a sliver
    for i, size in enumerate(sizes):
        write_images(tmp_path / "in", [f"p{i}.jpg"], size=size, seed=i)
    assert predict(str(run), str(tmp_path / "in"), "--out", str(tmp_path / "out")) == 0
    for i, size in enumerate(sizes):
        png = Image.open(tmp_path / "out" / f"p{i}.png")
        assert png.mode == "P" and png.size == size
        assert set(np.unique(np.array(png))) <= {0, 1, 2}
        assert png.getpalette()[:9] == [0, 0, 0, 255, 153, 0, 255, 255, 255]
    head, *lines = records(tmp_path / "out")
    assert head["model"] == str(run) and len(head["sha256"]) == 64 and head["classes"] == list(PETS.names)
    # the folder has no classes.json, as runs from before runs recorded their classes: it predicts the pet trimaps'
    assert head["values"] == [2, 1, 3] and head["palette"] == [[0, 0, 0], [255, 153, 0], [255, 255, 255]]
    assert [(r["width"], r["height"]) for r in lines] == sizes
    assert all(abs(sum(r["fractions"].values()) - 1) < 1e-3 and 0 < r["mean_confidence"] <= 1 for r in lines)


def test_labels_are_the_argmax_of_probabilities_resized_bilinearly(finished_run):
    segmenter = Segmenter.from_run(finished_run(), device="cpu")
    photo = np.random.default_rng(0).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    small = segmenter.predict(photo, resolution="input")  # (3, S, S) before resizing back
    big = segmenter.predict(photo)
    expected = F.interpolate(torch.from_numpy(small.probabilities)[None], size=(45, 70), mode="bilinear",
                             align_corners=False)[0]
    assert np.allclose(big.probabilities, expected.numpy(), atol=1e-6)
    assert (big.labels == expected.argmax(0).numpy()).all()
    assert np.allclose(big.probabilities.sum(0), 1, atol=1e-5)


def test_outputs_keep_nested_names_and_a_rerun_skips_them(finished_run, tmp_path):
    run = finished_run()
    write_images(tmp_path / "in", ["a/b/one.jpg", "a/two.png", "three.webp"])
    out = tmp_path / "out"
    assert predict(str(run), str(tmp_path / "in"), "--out", str(out)) == 0
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.png")} == {"a/b/one.png", "a/two.png", "three.png"}
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    (out / "three.png").unlink()
    assert predict(str(run), str(tmp_path / "in"), "--out", str(out)) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png") if p.name != "three.png"} == {
        p: t for p, t in before.items() if p.name != "three.png"}
    assert (out / "three.png").is_file() and len(records(out)) == 4  # the skipped ones keep their lines
    assert predict(str(run), str(tmp_path / "in"), "--out", str(out), "--overwrite") == 0
    assert all(p.stat().st_mtime_ns != before[p] for p in before if p.name != "three.png")


def test_worker_threads_write_what_turns_write(finished_run, tmp_path):
    run = finished_run()
    write_images(tmp_path / "in", [f"{i}.jpg" for i in range(11)], size=(35, 27))
    (tmp_path / "in" / "bad.png").write_bytes(b"no png")
    outputs = {}
    for workers in ("0", "3"):
        out = tmp_path / f"out{workers}"
        assert predict(str(run), str(tmp_path / "in"), "--out", str(out), "--workers", workers, "--batch-size",
                       "4", "--probs") == 1
        outputs[workers] = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.*") if p.suffix != ".jsonl"}
        in_input_order = ["0.png", "1.png", "10.png", *(f"{i}.png" for i in range(2, 10)), "bad.png"]
        assert [r["output"] for r in records(out)[1:]] == in_input_order
    assert outputs["0"] == outputs["3"] and len(outputs["0"]) == 22


def test_globs_and_lists_of_paths(finished_run, tmp_path):
    write_images(tmp_path / "in", ["x/a.jpg", "x/b.jpg", "y/c.jpg", "y/d.txt.png"])
    (tmp_path / "in" / "list.txt").write_text("# chosen\nx/a.jpg\n\ny/c.jpg\n")
    out = tmp_path / "out"
    assert predict(str(finished_run()), str(tmp_path / "in" / "list.txt"), str(tmp_path / "in" / "*" / "b.jpg"),
                   "--out", str(out)) == 0
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.png")} == {"x/a.png", "y/c.png", "x/b.png"}


def test_photos_of_every_kind_the_loaders_accept(finished_run, tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(rgb[..., 0]).save(folder / "grey.png")
    Image.fromarray(rgb).convert("P").save(folder / "palette.png")
    Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(folder / "rgba.png")
    Image.fromarray(rgb).convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray(rgb[..., 0].astype(np.uint16) * 257).save(folder / "sixteen.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: viewers rotate the stored 30x20 pixels to 20x30
    Image.fromarray(rgb).save(folder / "turned.jpg", exif=exif)
    out = tmp_path / "out"
    assert predict(str(finished_run()), str(folder), "--out", str(out)) == 0
    sizes = {p.stem: Image.open(p).size for p in out.glob("*.png")}
    assert sizes == {"grey": (30, 20), "palette": (30, 20), "rgba": (30, 20), "cmyk": (30, 20),
                     "sixteen": (30, 20), "turned": (20, 30)}


def test_an_unreadable_image_is_one_line_and_the_others_go_on(finished_run, tmp_path, capsys):
    write_images(tmp_path / "in", ["good.jpg", "fine.png"])
    (tmp_path / "in" / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    assert predict(str(finished_run()), str(tmp_path / "in"), "--out", str(out)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith("simseg: skipped") and "broken.jpg" in line for line in err)
    assert {p.name for p in out.glob("*.png")} == {"good.png", "fine.png"}
    assert [r.get("error", "").startswith("image") for r in records(out)[1:]] == [True, False, False]


@pytest.mark.parametrize("case, message", [
    ("missing run", "run folder .* does not exist"),
    ("pretraining run", "is a pretraining run, which predicts pixels"),
    ("unfinished run", "unfinished segmentation run"),
    ("classify run", "is a classify run"),
    ("empty folder", "holds no image"),
    ("out is a file", "--out .* is a file: give a folder"),
    ("onnx from elsewhere", "ONNX model without simseg's metadata"),
    ("missing image", "input .* does not exist"),
    ("two files one name", "would both write cat.png"),
    ("other model's outputs", "holds predictions of another model"),
    ("no config", "is not a simseg run folder \\(no config.yaml\\)"),
    ("damaged weights", "is not a readable safetensors file"),
    ("tta on onnx", "--tta needs the run folder"),
    ("cuda without a gpu", "--device cuda: this machine has no CUDA GPU"),
    ("oxford on other classes", "--label-values oxford writes Oxford-IIIT Pet trimap values, but this model's "
                                "classes are sky, road: give --label-values source .*\\(0, 255\\)"),
    ("classes.json of another run", "predicts 3 classes but .*classes.json lists 2: the folder mixes files"),
    ("weights of another run", "predicts 2 classes but the folder has no classes.json"),
])
def test_one_line_errors(case, message, finished_run, tmp_path, capsys):
    model, sources, out, extra = finished_run(), [str(tmp_path / "in")], tmp_path / "out", []
    write_images(tmp_path / "in", ["cat.jpg"])
    if case == "missing run":
        model = tmp_path / "nowhere"
    elif case == "pretraining run":
        model = tmp_path / "pretrain"
        model.mkdir()
        (model / "config.yaml").write_text("seed: 0\n")
        from simseg.config.sections import ModelConfig
        from simseg.models.vit import build_encoder
        config = ModelConfig(depth=1, img_size=32)
        export_encoder(model / "encoder.safetensors", build_encoder(config), config, {"stage": "pretrain"})
    elif case == "unfinished run":
        (model / "model.safetensors").rename(tmp_path / "kept.safetensors")
        (model / "encoder.safetensors").unlink()
    elif case == "classify run":
        from simseg.training.weight_files import read_weights, save_weights
        tensors, meta = read_weights(model / "model.safetensors")
        save_weights(model / "model.safetensors", tensors, {**meta, "stage": "classify"})
    elif case == "empty folder":
        sources = [str(tmp_path / "empty")]
        (tmp_path / "empty").mkdir()
    elif case == "out is a file":
        out.write_text("x")
    elif case == "onnx from elsewhere":
        import onnx
        from onnx import TensorProto, helper
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])])
        model = tmp_path / "other.onnx"
        onnx.save(helper.make_model(graph), model)
    elif case == "missing image":
        sources = [str(tmp_path / "in" / "dog.jpg")]
    elif case == "two files one name":
        write_images(tmp_path / "in", ["cat.png"])
    elif case == "other model's outputs":
        assert predict(str(model), *sources, "--out", str(out)) == 0
        model = finished_run("seed=1", name="other")
        (out / "cat.png").unlink()
    elif case == "no config":
        (model / "config.yaml").unlink()
    elif case == "damaged weights":
        (model / "model.safetensors").write_bytes(b"\x00" * 40)
    elif case == "tta on onnx":
        model, extra = tmp_path / "model.onnx", ["--tta"]
    elif case == "cuda without a gpu":
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
        extra = ["--device", "cuda"]
    elif case == "oxford on other classes":
        model, extra = finished_run(classes=TWO, name="two"), ["--label-values", "oxford"]
    elif case == "classes.json of another run":
        write_run_label_set(model, TWO)
    elif case == "weights of another run":
        model = finished_run(classes=TWO, name="two")
        (model / "classes.json").unlink()
    assert predict(str(model), *sources, "--out", str(out), *extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("simseg: error: "), err
    assert __import__("re").search(message, err), err


@pytest.mark.slow  # an export, its check and the card's evaluation: several seconds
def test_an_onnx_export_predicts_through_the_same_command(finished_run, tmp_path, capsys):
    run = finished_run("model.arch=vit_fused_skip")
    main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "export" / "pets.onnx")])
    assert {p.name for p in (tmp_path / "export").iterdir()} == {"pets.onnx", "export_report.json", "MODEL_CARD.md"}
    write_images(tmp_path / "in", ["a.jpg", "b/c.png"], size=(41, 29))
    assert predict(str(run), str(tmp_path / "in"), "--out", str(tmp_path / "torch")) == 0
    assert predict(str(tmp_path / "export" / "pets.onnx"), str(tmp_path / "in"), "--out", str(tmp_path / "onnx")) == 0
    assert records(tmp_path / "onnx")[0]["kind"] == "onnx"
    for name in ("a.png", "b/c.png"):
        by_torch, by_onnx = (np.array(Image.open(tmp_path / side / name)) for side in ("torch", "onnx"))
        assert by_onnx.shape == (29, 41) and (by_torch == by_onnx).mean() > 0.999


@pytest.mark.parametrize("arch", ["vit_linear", "vit_linear_upsample", "vit_pup", "vit_fused_skip", "unet_resnet18",
                                  "fpn_resnet18"])
def test_every_arch_is_rebuilt_from_its_folder_with_the_saved_weights(arch, finished_run):
    run = finished_run(f"model.arch={arch}")
    segmenter = Segmenter.from_run(run, device="cpu")
    from simseg.training.weight_files import read_weights
    saved, _ = read_weights(run / "model.safetensors")
    state = segmenter.run.model.state_dict()
    assert not segmenter.run.model.training and state.keys() == saved.keys()
    assert all(torch.equal(state[k], saved[k]) for k in saved)
    prediction = segmenter.predict(np.zeros((33, 47, 3), dtype=np.uint8))
    assert prediction.labels.shape == (33, 47)


@pytest.mark.slow
@pytest.mark.parametrize("weights", ["last epoch", "EMA, best of a validation split"])
def test_predicting_a_runs_own_test_images_reproduces_its_miou(weights, tmp_path):
    import stages.segment as segment_stage
    from simseg.config.loader import load_config
    from simseg.config.segment import SegmentConfig

    overrides = ["model.depth=2", "data.test_size=8", "data.subset=16", "data.synthetic_image_size=48",
                 "data.num_workers=0", "train.epochs=3", "train.batch_size=8", "log.progress=false", "eval.every=1",
                 "eval.tta=true", f"output_dir={tmp_path / 'run'}"]
    if weights != "last epoch":  # the reported weights are then neither the last epoch's nor the raw ones
        overrides += ["recipe=mild", "train.ema_half_life=2", "train.ema_interval=1", "data.val_size=4"]
    run = segment_stage.main(load_config(SegmentConfig, None, overrides))
    reported = json.loads((run / "metrics.json").read_text())
    segmenter = Segmenter.from_run(run, device="cpu")
    source, indices = own_test_set.own_test_pairs(segmenter.run)
    folder = tmp_path / "test_images"
    folder.mkdir()
    for name, index in zip(segmenter.run.test_names(), indices):
        source.pair(index)[0].save(folder / f"{name}.png")  # lossless, so the photos are the run's own
    # the masks as the run scored them: resized to the input size by its evaluation transform
    loader = own_test_set.own_test_loader(segmenter.run, batch_size=1)
    masks = dict(zip(segmenter.run.test_names(), (mask[0] for _, mask in loader)))

    def miou(out: Path) -> float:
        confusion = torch.zeros(3, 3, dtype=torch.long)
        for name, mask in masks.items():
            confusion += confusion_matrix(torch.from_numpy(np.array(Image.open(out / f"{name}.png"))).long(), mask, 3)
        return segmentation_metrics(confusion, list(segmenter.classes))["miou"]

    assert predict(str(run), str(folder), "--out", str(tmp_path / "plain"), "--resolution", "input") == 0
    assert predict(str(run), str(folder), "--out", str(tmp_path / "tta"), "--resolution", "input", "--tta") == 0
    at_input = reported["scores"]["input"]  # the run's figures at the input size (its headline ones: masks' own size)
    assert miou(tmp_path / "plain") == pytest.approx(at_input["plain"]["miou"], abs=1e-6)
    assert miou(tmp_path / "tta") == pytest.approx(at_input["tta"]["miou"], abs=1e-6)


def test_an_interrupted_predict_keeps_what_it_wrote_and_a_rerun_goes_on(finished_run, tmp_path, monkeypatch,
                                                                         capsys):
    from simseg.inference import predict_files

    run = finished_run()
    write_images(tmp_path / "in", [f"{i}.jpg" for i in range(6)])
    real_write, written = predict_files.write_one, []

    def write_then_ctrl_c(*args):
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(real_write(*args))
        return written[-1]

    monkeypatch.setattr(predict_files, "write_one", write_then_ctrl_c)
    out = tmp_path / "out"
    assert predict(str(run), str(tmp_path / "in"), "--out", str(out), "--batch-size", "2") == 130
    assert "interrupted; rerun the same command" in capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.png")) == ["0.png", "1.png", "2.png"]
    assert [r["output"] for r in records(out)[1:]] == ["0.png", "1.png", "2.png"]  # written atomically at the end
    monkeypatch.setattr(predict_files, "write_one", real_write)
    assert predict(str(run), str(tmp_path / "in"), "--out", str(out)) == 0
    assert len(list(out.glob("*.png"))) == 6 and len(records(out)) == 7
