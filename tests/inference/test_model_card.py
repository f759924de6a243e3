"""The model card says what the run folder, a fresh evaluation and the export report hold, and nothing else: the
figures written into metrics.json appear rounded as the card promises, missing ones are "—" with the command that
fills them, the pretraining run is read through lineage.json, and the ONNX snippet preprocesses as simseg does."""

from __future__ import annotations

import json
import re
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from simseg.config.loader import load_config
from simseg.config.pretrain import PretrainConfig
from simseg.data.label_set import PETS, LabelSet
from simseg.files import atomic_write_json, sha256
from simseg.inference.model_card import evaluate_for_card, model_card, write_model_card
from simseg.inference.segmenter import Segmenter
from simseg.inference.trained_run import load_trained_run
from simseg.training.rundir import write_config
from tests.inference.conftest import SEVEN, TWO

FIGURES = {"miou": 0.61349, "iou": {"background": 0.91234, "pet": 0.70111, "boundary": 0.22702},
           "pixel_accuracy": 0.87654, "train_images": 16, "test_images": 8, "gflops": 0.0321,
           "selected_on": "val_miou", "reported_epoch": 1, "best_val_miou": 0.5556, "val_images": 4, "tta": None,
           "arch": "vit_linear"}


def run_with_metrics(finished_run, metrics: dict, *overrides: str, name: str = "run", classes=None):
    folder = finished_run(*overrides, name=name, classes=classes)
    atomic_write_json(folder / "metrics.json", metrics)
    return load_trained_run(folder)


def pretraining_run(folder, *overrides: str, train_images: int | None = 1234):
    """A pretraining run folder as lineage.json sees it: its config.yaml (and metrics.json when it finished)."""
    folder.mkdir()
    write_config(folder, load_config(PretrainConfig, None, [f"output_dir={folder}", *overrides]), command=["test"])
    if train_images:
        atomic_write_json(folder / "metrics.json", {"train_images": train_images})
    return folder


def point_lineage_at(run, pretrain_folder, config_sha: str | None = None) -> None:
    config = pretrain_folder / "config.yaml"
    atomic_write_json(run.run_dir / "lineage.json", {
        "init": str(pretrain_folder), "export": str(pretrain_folder / "encoder.safetensors"),
        "export_sha256": "ab" * 32, "export_stage": "pretrain", "export_model": {}, "export_config": str(config),
        "export_config_sha256": config_sha or (sha256(config) if config.is_file() else "0" * 64)})


def test_scratch_card_holds_the_runs_own_figures(finished_run):
    run = run_with_metrics(finished_run, FIGURES)
    card = model_card(run)
    assert card.startswith("# vit_linear: from scratch, 16 labelled images")
    assert run.weights_sha256 in card and "random initialisation (no pretraining)" in card
    assert f"Parameters: {sum(p.numel() for p in run.model.parameters()):,}" in card
    assert "| mIoU | 0.613 | — |" in card and "| pixel accuracy | 0.877 | — |" in card
    assert "| IoU boundary | 0.227 | — |" in card and "0.0321 GFLOPs per 64x64 image" in card
    assert "`simseg card RUN --evaluate`" in card  # the missing TTA column says how to fill it
    assert "best validation mIoU (epoch 1, 0.556 on 4 validation images)" in card and "no EMA" in card
    assert "Its weakest class on the test set is boundary, IoU 0.227 against a mIoU of 0.613" in card
    assert "The boundary class is a thin band around each object's outline" in card
    assert "Segments an image into 3 classes: background, pet and boundary (Oxford-IIIT Pet trimaps)." in card
    assert "Trained and tested on synthetic shapes" in card and "not for use on them" in card
    assert "8 images of `synthetic`" in card and "data.test_seed=0" in card
    assert "| id | class | colour | value in the masks |" in card  # no classes.json: the pet trimaps'
    assert "| 0 | background | `#000000` | 2 |\n| 1 | pet | `#ff9900` | 1 |\n| 2 | boundary | `#ffffff` | 3 |" in card
    assert "## ONNX export" not in card


def test_a_run_scored_with_tta_shows_only_the_plain_miou_it_kept(finished_run):
    figures = {**FIGURES, "tta": {"scales": [0.75, 1.0, 1.25], "flip": True}, "plain_miou": 0.59876}
    card = model_card(run_with_metrics(finished_run, figures, "recipe=mild"))
    assert "| mIoU | 0.599 | 0.613 |" in card and "| pixel accuracy | — | 0.877 |" in card
    assert "exponential moving average" in card and "train.ema_half_life=1000.0" in card  # what the recipe set


def test_a_run_scored_at_the_masks_own_size_fills_both_columns_from_its_metrics(finished_run):
    tta = {"miou": 0.64, "iou": {"background": 0.93, "pet": 0.72, "boundary": 0.27}, "pixel_accuracy": 0.89}
    plain = {"miou": 0.59876, "iou": {"background": 0.9, "pet": 0.7, "boundary": 0.2}, "pixel_accuracy": 0.85}
    figures = {**FIGURES, **tta, "tta": {"scales": [0.75, 1.0, 1.25], "flip": True}, "plain_miou": plain["miou"],
               "scored_at": "native", "scores": {"native": {"plain": plain, "tta": tta},
                                                 "input": {"plain": FIGURES, "tta": FIGURES}}}
    card = model_card(run_with_metrics(finished_run, figures))
    assert "| mIoU | 0.599 | 0.640 |" in card and "| pixel accuracy | 0.850 | 0.890 |" in card
    assert "| IoU boundary | 0.200 | 0.270 |" in card and "--evaluate" not in card
    assert "at each image's own size" in card and "not at the photos' own size" not in card


def test_pretrained_card_reads_the_pretraining_run(finished_run, tmp_path):
    run = run_with_metrics(finished_run, FIGURES)
    point_lineage_at(run, pretraining_run(tmp_path / "pre", "train.epochs=7", "mask.ratio=0.6"))
    card = model_card(run)
    assert card.startswith("# vit_linear: SimMIM-pretrained encoder, 16 labelled images")
    assert "SimMIM on `synthetic`, 1,234 images, 7 epochs at 128 px, 60% of 16-pixel units masked" in card
    assert "ab" * 32 in card and "changed after" not in card


def test_pretraining_method_missing_figures_and_edited_config_are_said(finished_run, tmp_path):
    run = run_with_metrics(finished_run, FIGURES)
    point_lineage_at(run, pretraining_run(tmp_path / "pre", "method=mae", train_images=None), config_sha="1" * 64)
    card = model_card(run)
    assert "MAE-pretrained encoder" in card and "— images (the run has no metrics.json" in card
    assert "changed after this run started" in card
    point_lineage_at(run, tmp_path / "gone")
    assert "no config.yaml at" in model_card(run)


def test_a_fresh_evaluation_fills_both_columns(finished_run):
    run = run_with_metrics(finished_run, FIGURES)
    evaluation = evaluate_for_card(run)
    card = model_card(run, evaluation)
    plain, tta = evaluation["plain"], evaluation["tta"]
    assert f"| mIoU | {plain['miou']:.3f} | {tta['miou']:.3f} |" in card
    for name in PETS.names:
        assert f"| IoU {name} | {plain['iou'][name]:.3f} | {tta['iou'][name]:.3f} |" in card
    assert "metrics.json reports mIoU 0.613 without TTA" in card and "--evaluate" not in card
    assert "averaged over 6 views" in card


def test_export_report_and_card_file(finished_run, tmp_path):
    run = run_with_metrics(finished_run, FIGURES)
    report = {"onnx": str(tmp_path / "pets.onnx"), "onnx_checker": "passed",
              "batches": [{"batch_size": 1, "max_probability_difference": 1.5e-6, "class_agreement": 0.99998},
                          {"batch_size": 8, "max_probability_difference": 2e-6, "class_agreement": None}],
              "speed": {"onnx_images_per_s": 120.25, "threads": 2}}
    card = model_card(run, export=report)
    assert "| batch_size | max_probability_difference | class_agreement |" in card
    assert "| 1 | 1.5e-06 | 0.99998 |" in card and "| 8 | 2e-06 | — |" in card
    assert "`speed.onnx_images_per_s`: 120.25" in card and "`onnx_checker`: `passed`" in card
    assert 'InferenceSession("pets.onnx"' in card
    write_model_card(tmp_path / "MODEL_CARD.md", card)
    assert (tmp_path / "MODEL_CARD.md").read_text() == card


def onnx_snippet_of(card: str) -> str:
    return re.search(r"ONNX Runtime, with numpy.*?```python\n(.*?)```", card, re.S).group(1)


def test_the_onnx_snippet_preprocesses_and_resizes_back_as_simseg_does(finished_run, tmp_path, monkeypatch):
    """Run the card's snippet against a stand-in ONNX Runtime session: the input it feeds must be simseg's
    preprocessing of the photo (within one uint8 step of the resize), and its labels those of simseg's resizing
    back."""
    run = run_with_metrics(finished_run, FIGURES)
    snippet = onnx_snippet_of(model_card(run))
    compile(snippet, "model_card_snippet.py", "exec")
    size, fed = run.cfg.model.img_size, {}
    probs = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).softmax(1)  # (1, C, S, S)

    class Session:
        def __init__(self, path, providers):
            self.meta = {"img_size": size, "mean": list(run.cfg.aug.mean), "std": list(run.cfg.aug.std)}

        def get_modelmeta(self):
            return types.SimpleNamespace(custom_metadata_map={"simseg": json.dumps(self.meta)})

        def get_inputs(self):
            return [types.SimpleNamespace(name="images")]

        def run(self, outputs, feeds):
            fed.update(feeds)
            return [probs.numpy()]

    monkeypatch.setitem(sys.modules, "onnxruntime", types.SimpleNamespace(InferenceSession=Session))
    monkeypatch.chdir(tmp_path)
    photo = Image.fromarray((np.random.default_rng(0).random((90, 130, 3)) * 255).astype(np.uint8))
    photo.save("photo.jpg", quality=95)
    scope: dict = {}
    exec(compile(snippet, "model_card_snippet.py", "exec"), scope)

    expected = Segmenter.from_run(run.run_dir, device="cpu").preprocess(Image.open("photo.jpg").convert("RGB"))
    assert fed["images"].shape == (1, 3, size, size) and fed["images"].dtype == np.float32
    assert np.abs(fed["images"][0] - expected.numpy()).max() < 1.01 / 255 / min(run.cfg.aug.std)
    back = F.interpolate(probs, size=(90, 130), mode="bilinear", align_corners=False)[0].argmax(0).numpy()
    assert scope["labels"].shape == (90, 130) and (scope["labels"] == back).mean() > 0.999


def test_a_dataset_source_limit_names_the_data_not_pets(finished_run, tmp_path):
    figures = {**FIGURES, "iou": {"sky": 0.9, "road": 0.4}, "miou": 0.65}
    run = run_with_metrics(finished_run, figures, classes=TWO)
    run.cfg.data.source = str(tmp_path / "my_dataset")  # as a run on a mask folder records it
    card = model_card(run)
    assert "Trained on 16 labelled images of roads from above, 2 classes: no guarantee on images unlike them" in card
    assert "Segments an image into 2 classes: sky and road (roads from above)." in card
    assert "Its weakest class on the test set is road, IoU 0.400 against a mIoU of 0.650" in card
    assert "| IoU sky | 0.900 | — |" in card and "| IoU road | 0.400 | — |" in card
    assert "2 class scores per pixel" in card and "stratified by each image's main class" in card
    assert "synthetic shapes" not in card and "pet" not in card and "boundary" not in card
    untitled = run_with_metrics(finished_run, figures, classes=LabelSet(TWO.names, TWO.colours, TWO.values),
                                name="untitled")
    untitled.cfg.data.source = str(tmp_path / "my_dataset")
    assert f"Trained on 16 labelled images of `{tmp_path / 'my_dataset'}`, 2 classes" in model_card(untitled)


def test_the_classes_table_is_the_runs_classes_json(finished_run):
    card = model_card(run_with_metrics(finished_run, {**FIGURES, "iou": {}}, classes=SEVEN))
    table = card[card.index("## Classes"):card.index("## Limits")]
    assert "| id | class | colour | value in the masks |" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and "class" not in line]
    assert rows == ["| 0 | shape_0 | `#00ff00` | 7 |", "| 1 | shape_1 | `#1ee146` | 3 |",
                    "| 2 | shape_2 | `#3cc38c` | 40 |", "| 3 | shape_3 | `#5aa5d2` | 41 |",
                    "| 4 | shape_4 | `#788718` | 100 |", "| 5 | shape_5 | `#96695e` | 200 |",
                    "| 6 | shape_6 | `#b44ba4` | 1 |"]
    assert "7 classes: shape_0, shape_1, shape_2, shape_3, shape_4, shape_5 and shape_6 (seven shapes)" in card
    assert "weakest class" not in card and "boundary class" not in card  # no IoU to rank, no boundary class
