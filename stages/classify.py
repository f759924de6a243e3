"""Stage 2: fine-tune the encoder plus a linear classifier on labelled scenes with MixUp; test on the test folder.

    accelerate launch stages/classify.py -c configs/classify.yaml data.source=data/intel-image-classification \\
        init=outputs/pretrain-45k output_dir=outputs/classify-intel
    python stages/classify.py data.subset=600 train.epochs=5     # from scratch on synthetic shapes, one process
    simseg classify ...                                           # the same, from the installed CLI

Writes into ``output_dir``: config.yaml, lineage.json (where the encoder's weights came from), classes.json (the class
names, index = class id), test_images.txt / train_images.txt (the items, one per line), metrics.jsonl (per epoch:
train loss, and every ``eval.every`` epochs test top-1), metrics.json (final test top-1, per-class and mean per-class
accuracy from one confusion matrix, plus parameters, training seconds and images/s), confusion.json and confusion.png
(rows target, columns prediction), encoder.safetensors (the export for ``stages/segment.py init=``), model.safetensors
(encoder + classifier) and state/ (for ``resume=true``). The reported weights are the last epoch's.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from simseg.config.classify import ClassifyConfig
from simseg.config.loader import to_dict
from simseg.data.image_cache import CacheSpec, cache_side
from simseg.data.scenes import open_labelled
from simseg.errors import SimsegError
from simseg.experiments.stage_entry import run_main, stage_config
from simseg.files import atomic_write_json
from simseg.models.classifier import Classifier, build_mixup, mix_batch
from simseg.models.vit import build_encoder
from simseg.training.data_path import DataPath
from simseg.training.engine import epoch_record, evaluate_confusion, speed_summary, train_one_epoch
from simseg.training.handoff import load_init
from simseg.training.metrics import classification_metrics
from simseg.training.optim import build_adamw, schedule_for
from simseg.training.plots import save_confusion_png
from simseg.training.rundir import check_or_save_splits, read_metrics
from simseg.training.stage_steps import (
    begin_or_resume,
    end_epoch,
    epochs,
    evaluation_due,
    init_name,
    labelled_metrics,
    start_run,
    write_labelled_exports,
)


def main(cfg: ClassifyConfig) -> Path:
    accelerator, run_dir = start_run(cfg)

    # --- data: the test set (whole or a seeded draw) and a seeded, class-stratified training subset ---------------
    data = open_labelled(cfg.data, cfg.seed)
    classes, train_idx, test_idx = data.train.classes, data.train_indices, data.test_indices
    check_or_save_splits(run_dir, {"test": [data.test.names[i] for i in test_idx],
                                   "train": [data.train.names[i] for i in train_idx]},
                         write=accelerator.is_main_process)
    check_or_save_classes(run_dir, classes, write=accelerator.is_main_process)
    if len(train_idx) < cfg.train.batch_size * accelerator.num_processes:
        raise SimsegError(f"{len(train_idx):,} training images do not fill one batch of train.batch_size="
                          f"{cfg.train.batch_size} on {accelerator.num_processes} process(es): lower "
                          f"train.batch_size or raise data.subset")
    # The segmentation stage's crops, flips and jitter (image only); test images are resized and centre-cropped.
    img = cfg.model.img_size
    path = DataPath(cfg, run_dir, accelerator, CacheSpec(cache_side(img), img, "shorter_crop", labels=True),
                    len(train_idx) + len(test_idx))
    one_source = data.test is data.train  # synthetic shapes: test set and training pool drawn from one source
    train_cache = path.cache(data.train, np.union1d(train_idx, test_idx) if one_source else train_idx)
    test_cache = train_cache if one_source else path.cache(data.test, test_idx)
    # drop_last: MixUp mixes each batch with its reverse and needs an even batch; a short last batch could be odd.
    train = path.training(data.train, train_idx, train_cache, targets="labels", drop_last=True)
    test_loader = path.evaluation(data.test, test_idx, test_cache, "labels", "shorter_crop")
    accelerator.print(f"classifying {len(train_idx):,} training images of {data.train.name} into {len(classes)} "
                      f"classes, testing on {len(test_idx):,} of {data.test.name}; {train.describe()}")

    # --- model, optimiser, MixUp ----------------------------------------------------------------------------------
    model, lineage = build_model(cfg, len(classes))
    optimizer = build_adamw(model, cfg.train.lr, cfg.train.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    lr_at = schedule_for(cfg.train, len(train.loader))
    mixup = build_mixup(cfg.mixup, cfg.train.label_smoothing, len(classes))
    start_epoch, step = begin_or_resume(accelerator, run_dir, cfg, "classify", lineage, path.resolved())

    def make_inputs(batch) -> dict:
        images, labels = train(batch)  # (B, 3, img, img), (B,)
        images, targets = mix_batch(mixup, images, labels, len(classes), cfg.train.label_smoothing)
        return {"images": images, "targets": targets}  # targets: (B, K) soft, rows sum to one

    # --- training loop ------------------------------------------------------------------------------------------
    start = time.perf_counter()
    confusion = None  # the last epoch's test score: the reported weights are that epoch's
    for epoch in epochs(accelerator, cfg, start_epoch, train):
        stats, step = train_one_epoch(model, train.loader, optimizer, accelerator, epoch=epoch, step=step,
                                      lr_at=lr_at, make_inputs=make_inputs, grad_clip=cfg.train.grad_clip,
                                      progress=cfg.log.progress)
        record = epoch_record(epoch, step, stats)
        if evaluation_due(cfg, epoch):
            confusion = evaluate_confusion(model, test_loader, accelerator, len(classes))
            record["test_top1"] = classification_metrics(confusion, classes)["top1"]
        score = f", test top-1 {record['test_top1']:.4f}" if "test_top1" in record else ""
        end_epoch(accelerator, run_dir, record,
                  f"epoch {epoch}: train loss {stats['loss']:.4f}{score}, {speed_summary(stats)}")

    # --- final test evaluation, pictures and exports ----------------------------------------------------------------
    if confusion is None:  # resuming a finished run: score it now
        confusion = evaluate_confusion(model, test_loader, accelerator, len(classes))
    if accelerator.is_main_process:
        final_evaluation(accelerator.unwrap_model(model, keep_torch_compile=False), cfg, run_dir, confusion, classes,
                         path.pipeline, accelerator.device, len(train_idx), len(test_idx))
        accelerator.print(f"done in {time.perf_counter() - start:.0f}s: {run_dir}")
    accelerator.end_training()
    return run_dir


def build_model(cfg: ClassifyConfig, num_classes: int) -> tuple[Classifier, dict]:
    """The classifier, its encoder from scratch or from an export, and the lineage record saying which."""
    model = Classifier(build_encoder(cfg.model), num_classes, cfg.pool, cfg.train.label_smoothing)
    return model, load_init(model, cfg.init, cfg.model)


def final_evaluation(model: Classifier, cfg: ClassifyConfig, run_dir: Path, confusion: torch.Tensor,
                     classes: list[str], pipeline: str, device: torch.device, train_images: int,
                     test_images: int) -> None:
    """metrics.json, confusion.json and confusion.png of the reported (last) weights, and the exports."""
    history = read_metrics(run_dir)
    metrics = classification_metrics(confusion, classes)
    matrix = metrics.pop("confusion")
    atomic_write_json(run_dir / "confusion.json", {"classes": classes, "rows": "target", "columns": "prediction",
                                                   "matrix": matrix})
    save_confusion_png(run_dir / "confusion.png", matrix, classes, f"{init_name(cfg.init)}: test top-1 "
                       f"{metrics['top1']:.3f} ({train_images:,} training images)")
    atomic_write_json(run_dir / "metrics.json", {
        **metrics, "chance": 1 / len(classes), "classes": classes, "reported_epoch": history[-1]["epoch"],
        "mixup": to_dict(cfg.mixup), "pool": cfg.pool, "pipeline": pipeline,
        **labelled_metrics(cfg, model, history, train_images, test_images, device),
    })
    write_labelled_exports(run_dir, model, cfg, "classify", pool=cfg.pool, classes=json.dumps(classes))
    print(f"test top-1 {metrics['top1']:.4f}, mean per-class accuracy {metrics['mean_class_accuracy']:.4f}")


def check_or_save_classes(run_dir: Path, classes: list[str], write: bool) -> None:
    """``classes.json``: the class names (index = class id); a resumed run must find the same."""
    path = run_dir / "classes.json"
    if path.exists():
        if json.loads(path.read_text()) != classes:
            raise SimsegError(f"{path} lists other classes than the data source's {classes}: the data changed since "
                              f"the run started; resume with the original data or start a new output_dir")
    elif write:
        atomic_write_json(path, classes)


if __name__ == "__main__":
    run_main(lambda argv: main(stage_config(ClassifyConfig, argv, "classify")), sys.argv[1:])
