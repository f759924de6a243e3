"""A model card for a finished segmentation run, as Markdown: what the model is, where its encoder came from, how it
was trained, selected and tested, how to feed it, and where it stops being trustworthy. Every figure comes from the
run folder (config.yaml, metrics.json, lineage.json, the weights, the pretraining run the lineage names), a fresh
test evaluation (:func:`evaluate_for_card`) or the ONNX export's report; one none of them holds is written "—" with
the reason, never estimated."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from simseg.config.loader import flat_dict, load_yaml
from simseg.config.segment import RECIPES
from simseg.files import atomic_write_text, sha256
from simseg.inference.backends import TorchBackend
from simseg.inference.card_data import MISSING, classes_table, limits, test_draw, what_it_segments
from simseg.inference.own_test_set import own_test_loader, score_test_set
from simseg.inference.trained_run import TrainedRun
from simseg.models.cost import forward_flops, parameter_counts
from simseg.models.pretraining import LEGACY_METHOD, METHODS
from simseg.models.registry import ARCHS
from simseg.training.rundir import saved_config
from simseg.training.tta import view_size

LOSSES = {"ce": "per-pixel cross-entropy", "ce+dice": "the mean of per-pixel cross-entropy and a soft Dice loss"}

# The ONNX Runtime snippet repeats the Preprocessing section step by step; tests run it against a stand-in session.
ONNX_SNIPPET = """import json
import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

session = ort.InferenceSession({onnx}, providers=["CPUExecutionProvider"])
meta = json.loads(session.get_modelmeta().custom_metadata_map["simseg"])  # img_size, mean, std, classes, palette
photo = ImageOps.exif_transpose(Image.open("photo.jpg")).convert("RGB")
x = np.asarray(photo.resize((meta["img_size"],) * 2, Image.BILINEAR), np.float32) / 255  # whole photo, aspect not kept
x = ((x - np.array(meta["mean"], np.float32)) / np.array(meta["std"], np.float32)).transpose(2, 0, 1)[None]
probs = session.run(None, {{session.get_inputs()[0].name: x}})[0][0]  # (C, img_size, img_size) softmax probabilities
probs = np.stack([np.asarray(Image.fromarray(p).resize(photo.size, Image.BILINEAR)) for p in probs])  # (C, H, W)
labels = probs.argmax(0).astype(np.uint8)  # (H, W) class ids, as in the Classes table (names: meta["classes"])
"""

PREPROCESSING = """## Preprocessing

1. Read the photo as RGB (EXIF orientation applied; greyscale and alpha converted to RGB).
2. Resize the whole photo to {size}x{size} (bilinear, antialiased): no crop, the aspect ratio is not kept.
3. Scale to [0, 1], subtract the mean {mean} and divide by the std {std} (R, G, B): float32 (1, 3, {size}, {size}).
4. Take the softmax over the classes (the ONNX export outputs these probabilities already).
5. Resize the probabilities back to the photo's own size (bilinear), then take the argmax per pixel."""

USAGE = """## How to use

Command line (label maps; `--overlay` adds pictures, `--tta` averages the TTA views):
```sh
simseg predict {run_dir} photos/ --out preds/
```

Python:
```python
from simseg import Segmenter
segmenter = Segmenter.from_run({run_dir_literal})  # tta=True averages the TTA views
prediction = segmenter.predict("photo.jpg")
prediction.labels  # uint8 (H, W) class ids at the photo's size
```

ONNX Runtime, with numpy and PIL only (after `simseg export {run_dir} --format onnx --out {onnx}`):
```python
{snippet}```"""


def evaluate_for_card(run: TrainedRun) -> dict:
    """``{"plain": metrics, "tta": metrics}``: the run's test set scored on the CPU without and with its TTA views
    (:func:`score_test_set` figures at the model's input size)."""
    loader, cpu = own_test_loader(run), torch.device("cpu")
    return {name: score_test_set(TorchBackend(run.model, cpu, "fp32", views).probabilities, loader, run.classes)
            for name, views in (("plain", None), ("tta", run.tta_views()))}


def write_model_card(path: str | Path, text: str) -> None:
    atomic_write_text(path, text)


def model_card(run: TrainedRun, evaluation: dict | None = None, export: dict | None = None) -> str:
    """The card of ``run``; ``evaluation`` (:func:`evaluate_for_card`) gives per-class figures with and without TTA,
    ``export`` (the ONNX export's report) adds its check."""
    size, aug, onnx = run.cfg.model.img_size, run.cfg.aug, Path(str((export or {}).get("onnx") or "model.onnx")).name
    sections = [_title(run), _model(run), _training(run), _evaluation(run, evaluation),
                PREPROCESSING.format(size=size, mean=tuple(aug.mean), std=tuple(aug.std)), classes_table(run.classes),
                limits(run, _count(run), evaluation),
                USAGE.format(run_dir=run.run_dir, run_dir_literal=json.dumps(str(run.run_dir)), onnx=onnx,
                             snippet=ONNX_SNIPPET.format(onnx=json.dumps(onnx)))]
    return "\n\n".join(sections + ([_export(export)] if export else [])) + "\n"


def _fmt(value, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def _labelled_images(run: TrainedRun) -> int | None:
    return run.metrics.get("train_images") or run.cfg.data.sizes()[1]


def _count(run: TrainedRun) -> str:
    count = _labelled_images(run)
    return f"{count:,}" if count else MISSING


def _pretraining(lineage: dict) -> tuple[Path, dict | None, str]:
    """(folder of the run whose export started the encoder, its config (None: not on this machine), its method)."""
    folder = Path(lineage.get("export_config") or lineage["export"]).parent
    tree = saved_config(folder) if folder.is_dir() else None
    stage = lineage.get("export_stage", "unknown")
    if stage != "pretrain":
        return folder, tree, f"supervised {stage}"
    method = (tree or {}).get("method", LEGACY_METHOD)
    return folder, tree, METHODS[method].title if method in METHODS else method


def _title(run: TrainedRun) -> str:
    lineage, count = run.lineage(), _labelled_images(run)
    init = {"scratch": "from scratch", "imagenet": "ImageNet encoder"}.get(lineage.get("init", "scratch"))
    if init is None:
        init = f"{_pretraining(lineage)[2]}-pretrained encoder" if "export" in lineage else "encoder from a file"
    images = f"{count:,} labelled images" if count else "labelled images: — (neither metrics.json nor data.subset)"
    return (f"# {run.cfg.model.arch}: {init}, {images}\n\n{what_it_segments(run.classes)} Run folder "
            f"`{run.run_dir}`; weights `model.safetensors`, SHA-256 `{run.weights_sha256}`.")


def _model(run: TrainedRun) -> str:
    model, size, speed = run.cfg.model, run.cfg.model.img_size, run.metrics.get("inference_images_per_s")
    counts = parameter_counts(run.model)  # from the loaded weights, so never missing
    gflops = run.metrics.get("gflops") or forward_flops(run.model, size) / 1e9  # shape-only count: same as the run's
    encoder = (f"- Encoder: `{model.name}`, depth {model.depth}, width {model.embed_dim}, {model.num_heads} heads, "
               f"{model.patch_size}-pixel patches\n" if model.family == "vit" else "")
    return (f"## Model\n\n- Architecture: `{model.arch}`: {ARCHS[model.arch].description}\n{encoder}"
            f"- Parameters: {counts['parameters']:,} (encoder {counts['encoder_parameters']:,})\n"
            f"- Forward cost: {gflops:.3g} GFLOPs per {size}x{size} image (matmuls and convolutions)\n"
            f"- Input: one RGB image resized to {size}x{size}; output: {run.classes.num_classes} class scores per "
            f"pixel at {size}x{size}"
            + (f"\n- Speed after training: {speed:,.0f} images/s (batch 32, on the training machine)" if speed else ""))


def _encoder_origin(lineage: dict) -> list[str]:
    """Where the encoder's starting weights came from: lineage.json, and the config of the run that made them."""
    init = lineage.get("init", "scratch")
    if init == "scratch":
        return ["- Encoder start: random initialisation (no pretraining)"]
    if "export" not in lineage:  # a CNN's encoder: ImageNet or a weights file (training.cnn_weights)
        digest = f", SHA-256 `{lineage['weights_sha256']}`" if "weights_sha256" in lineage else ""
        return [f"- Encoder start: {lineage.get('weights', init)}{digest}"]
    folder, tree, method = _pretraining(lineage)
    lines = [f"- Encoder start: the export of the {lineage.get('export_stage', 'unknown')} run `{folder}`, SHA-256 "
             f"`{lineage['export_sha256']}`"]
    if tree is None:
        return lines + [f"- Pretraining: {MISSING} (no config.yaml at `{folder}` on this machine)"]
    if lineage.get("export_config_sha256") not in (None, sha256(folder / "config.yaml")):
        lines.append(f"- Note: `{folder}/config.yaml` changed after this run started; below are its current values")
    done = folder / "metrics.json"
    trained = json.loads(done.read_text()).get("train_images") if done.is_file() else None
    data, mask = tree.get("data", {}), tree.get("mask")
    size = (f"{trained:,} images" if trained else f"data.subset={data['subset']}" if data.get("subset") else
            f"{MISSING} images (the run has no metrics.json: unfinished, or the file was removed)")
    return lines + [f"- Pretraining: {method} on `{data.get('source', MISSING)}`, {size}, "
                    f"{tree.get('train', {}).get('epochs', MISSING)} epochs at "
                    f"{tree.get('model', {}).get('img_size', MISSING)} px"
                    + (f", {mask['ratio']:.0%} of {mask['unit']}-pixel units masked" if mask else "")]


def _training(run: TrainedRun) -> str:
    cfg, metrics, train, count = run.cfg, run.metrics, run.cfg.train, _labelled_images(run)
    recipe, epoch = RECIPES[cfg.recipe], metrics.get("reported_epoch")
    sets = ", ".join(f"{k}={v}" for k, v in flat_dict(recipe.settings).items())
    chosen = {"val_miou": f"the epoch with the best validation mIoU (epoch {epoch}, "
                          f"{_fmt(metrics.get('best_val_miou'))} on {metrics.get('val_images', MISSING)} validation "
                          f"images); nothing chosen on the test set",
              "last epoch": f"the last epoch's (epoch {epoch}): no validation split, nothing chosen on the test set"
              }.get(metrics.get("selected_on"), f"{MISSING} (metrics.json has no selected_on: an older run)")
    decay = train.ema_decay()
    ema = (f"an exponential moving average of the weights (decay {decay:.4g} per update, every {train.ema_interval} "
           f"batches), evaluated and exported instead of the raw weights" if decay else "the raw weights (no EMA)")
    extras = [f"SAM rho {train.sam_rho:g} every {train.sam_interval} steps" * bool(train.sam_rho), f"MixUp alpha "
              f"{cfg.mixup.alpha:g}" * bool(cfg.mixup.alpha), f"encoder frozen for {train.freeze_encoder_epochs} "
              f"epochs" * bool(train.freeze_encoder_epochs)]
    meta = (load_yaml((run.run_dir / "config.yaml").read_text()) or {}).get("meta") or {}
    lines = [*_encoder_origin(run.lineage()),
             f"- Labelled data: {f'{count:,}' if count else MISSING} images of `{cfg.data.source}` "
             f"(data.subset={cfg.data.subset}), drawn with seed {cfg.seed} like the test set, nested across sizes",
             f"- Recipe `{cfg.recipe}`: {recipe.description}" + (f" Sets {sets}; keys given explicitly "
                                                                 f"override it (the values below)." if sets else ""),
             f"- Loss: {LOSSES.get(cfg.loss, cfg.loss)}",
             f"- Optimisation: AdamW, LR {train.lr:g} ({train.schedule}), weight decay {train.weight_decay:g}, batch "
             f"{train.batch_size} per process, {train.epochs} epochs, augmentation `{cfg.aug.preset}`, seed "
             f"{cfg.seed}" + "".join(f", {e}" for e in extras if e),
             f"- Reported weights: {chosen}; {ema}",
             f"- Code: simseg revision `{meta.get('git_revision', MISSING)}`"]
    return "## Training\n\n" + "\n".join(lines)


def _evaluation(run: TrainedRun, evaluation: dict | None) -> str:
    cfg, size, metrics = run.cfg, run.cfg.model.img_size, run.metrics
    reported = f"mIoU {_fmt(metrics.get('miou'))} {'with' if metrics.get('tta') else 'without'} TTA"
    native = (metrics.get("scores") or {}).get("native") if not evaluation else None  # runs scored at the masks' size
    if evaluation:  # a column is None where nobody measured it
        plain, tta, origin = evaluation["plain"], evaluation["tta"], f"scored afresh (metrics.json reports {reported})"
    elif native:  # the run scored both views itself
        plain, tta, origin = native.get("plain"), native.get("tta"), f"metrics.json, {reported}"
    elif metrics.get("tta"):  # the run reported its TTA figures and kept only the plain mIoU beside them
        plain, tta, origin = {"miou": metrics.get("plain_miou")}, metrics, f"metrics.json, {reported}"
    else:
        plain, tta, origin = metrics, None, f"metrics.json, {reported}"
    table = ["| test figure | plain | with TTA |", "|---|---:|---:|"]
    for label, key, name in [("mIoU", "miou", None), ("pixel accuracy", "pixel_accuracy", None),
                             *[(f"IoU {name}", "iou", name) for name in run.classes.names]]:
        cells = [MISSING if c is None else _fmt(c.get(key) if name is None else (c.get(key) or {}).get(name))
                 for c in (plain, tta)]
        table.append(f"| {label} | {cells[0]} | {cells[1]} |")
    if any(MISSING in row for row in table[2:]):
        table.append("\n— : " + ("undefined: the class is in neither the test masks nor the predictions." if
                                 evaluation else "not in metrics.json; `simseg card RUN --evaluate` scores both "
                                                 "columns."))
    scales, flip = cfg.eval.tta_scales, cfg.eval.tta_flip
    views = ", ".join(f"{s:g}x ({view_size(size, s)} px)" for s in scales)
    return (f"## Evaluation\n\nTest set: {cfg.data.sizes()[0]:,} images of `{cfg.data.source}` (listed in "
            f"`test_images.txt`), drawn with data.test_seed={cfg.data.test_seed}, {test_draw(cfg.data.source)}"
            f", before and apart from the training and validation images. The draw depends only on the source, "
            f"data.test_size and data.test_seed, so runs differing in seed or subset share it. Figures come from one "
            f"confusion matrix over every test pixel " + (
                "at each image's own size (the probabilities resized to the mask, then argmax, as `simseg predict` "
                "labels a photo)" if native else f"at {size}x{size} (masks resized with nearest), not at the photos' "
                                                 f"own size")
            + f"; mIoU is the mean of the classes' IoU. Source: {origin}.\n\n" + "\n".join(table)
            + f"\n\nTTA (its column, and `--tta`): softmax probabilities averaged over "
            f"{len(scales) * (2 if flip else 1)} views, scales {views}"
            + (", each also flipped horizontally" if flip else "") + ", each resized back before averaging.")


def _export(export: dict) -> str:
    """The export's report as it is, each key under its own name (the card repeats its checks, it does not redo them);
    a list of records, such as one comparison per batch size, becomes a table."""
    tables = {k: v for k, v in export.items() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)}
    lines = [f"- `{key}`: {_cell(value)}" for key, value in _flat({k: v for k, v in export.items() if k not in tables})]
    for key, records in tables.items():
        columns = list(dict.fromkeys(column for record in records for column in record))
        lines += [f"\n`{key}`:\n", "| " + " | ".join(columns) + " |", "|" + "---:|" * len(columns)]
        lines += ["| " + " | ".join(_cell(record.get(column)) for column in columns) + " |" for record in records]
    return ("## ONNX export\n\nThe report `simseg export` wrote when it compared ONNX Runtime with PyTorch:\n\n"
            + "\n".join(lines))


def _flat(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        yield from _flat(value, f"{prefix}{key}.") if isinstance(value, dict) else [(f"{prefix}{key}", value)]


def _cell(value) -> str:
    return (MISSING if value is None else f"{value:.6g}" if isinstance(value, float) else
            f"`{value}`" if isinstance(value, str) else str(value))
