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
from torch.utils.data import DataLoader

from simseg.command_line import run_main, stage_config
from simseg.config.classify import ClassifyConfig
from simseg.config.loader import to_dict
from simseg.data.batched import IndexDataset
from simseg.data.labelled_batches import CachedEvalSet, CachedLabelledBatches, choose_pipeline, keep_batch
from simseg.data.labelled_cache import CacheSpec, cache_side, ensure_labelled_cache
from simseg.data.pair_batch_augment import PairBatchAugment
from simseg.data.scenes import LabelledDataset, open_labelled
from simseg.data.transforms import eval_transform, pretrain_transform
from simseg.errors import SimsegError
from simseg.files import atomic_write_json
from simseg.models.classifier import Classifier, build_mixup, mix_batch
from simseg.models.vit import build_encoder
from simseg.training.engine import epoch_record, epoch_seed, evaluate_confusion, speed_summary, train_one_epoch
from simseg.training.export import load_init
from simseg.training.metrics import classification_metrics
from simseg.training.optim import build_adamw, schedule_for
from simseg.training.plots import save_confusion_png
from simseg.training.rundir import check_or_save_splits, read_metrics, recorded_pipeline
from simseg.training.stage_steps import (
    begin_or_resume,
    end_epoch,
    init_name,
    labelled_metrics,
    start_run,
    write_labelled_exports,
)


def main(cfg: ClassifyConfig) -> Path:
    accelerator, run_dir = start_run(cfg)

    # --- data: the test set (whole or a seeded draw) and a seeded, class-stratified training subset ---------------
    data = open_labelled(cfg.data, cfg.seed)
    classes = data.train.classes
    check_or_save_splits(run_dir, {"test": [data.test.names[i] for i in data.test_indices],
                                   "train": [data.train.names[i] for i in data.train_indices]},
                         write=accelerator.is_main_process)
    check_or_save_classes(run_dir, classes, write=accelerator.is_main_process)
    # The same crops, flips and jitter as the segmentation stage (image only); the test images are centre-cropped.
    # Per-image path: decode and transform in the loader. Batched path: the images used are decoded once into a
    # cache (one per split folder); the loader yields index batches, which make_inputs gathers and augments.
    img, batch = cfg.model.img_size, cfg.train.batch_size
    spec = CacheSpec(cache_side(img), img, "shorter_crop", masks=False)
    used = {"train": data.train_indices, "test": data.test_indices}
    batched = choose_pipeline(cfg.data.pipeline, recorded_pipeline(cfg),
                              (len(data.train_indices) + len(data.test_indices)) * spec.row_bytes()) == "batched"
    cfg.data.pipeline = "batched" if batched else "per_image"  # what config.yaml records and a resume keeps
    if batched:
        caches = cached_splits(data, used, spec, cfg.data.cache_dir or run_dir / "data_cache", cfg, accelerator)
        batches = CachedLabelledBatches(caches["train"], PairBatchAugment.from_aug_config(cfg.aug, img,
                                                                                          cfg.train.compile),
                                        accelerator.device)
        labels = torch.as_tensor(data.train.labels)
        train_set = IndexDataset(data.train_indices)
        test_set = CachedEvalSet(caches["test"], data.test_indices, cfg.aug.mean, cfg.aug.std, data.test.labels)
    else:
        train_set = LabelledDataset(data.train, data.train_indices, pretrain_transform(cfg.aug, img))
        test_set = LabelledDataset(data.test, data.test_indices, eval_transform(img, cfg.aug.mean, cfg.aug.std))
    if len(train_set) < batch * accelerator.num_processes:
        raise SimsegError(f"{len(train_set):,} training images do not fill one batch of train.batch_size={batch} "
                          f"on {accelerator.num_processes} process(es): lower train.batch_size or raise data.subset")
    # The batched path's loaders only index arrays in memory: workers would add start-up and nothing else.
    loader_args = dict(batch_size=batch, num_workers=0 if batched else cfg.data.num_workers,
                       pin_memory=accelerator.device.type == "cuda")
    # drop_last: MixUp mixes each batch with its reverse and needs an even batch; a short last batch could be odd.
    train_loader = DataLoader(train_set, shuffle=True, drop_last=True, **loader_args)
    test_loader = DataLoader(test_set, shuffle=False, **loader_args, **({"collate_fn": keep_batch} if batched else {}))
    accelerator.print(f"classifying {len(train_set):,} training images of {data.train.name} into {len(classes)} "
                      f"classes, testing on {len(test_set):,} of {data.test.name}")

    # --- model, optimiser, MixUp ----------------------------------------------------------------------------------
    model, lineage = build_model(cfg, len(classes))
    optimizer = build_adamw(model, cfg.train.lr, cfg.train.weight_decay,
                            fused=accelerator.device.type == "cuda")
    # Index batches stay on the CPU, where the augmentation draws its parameters from each item's original size.
    model, optimizer, train_loader, test_loader = accelerator.prepare(
        model, optimizer, train_loader, test_loader, device_placement=[True, True, not batched, True])
    lr_at = schedule_for(cfg.train, len(train_loader))
    mixup = build_mixup(cfg.mixup, cfg.train.label_smoothing, len(classes))

    def make_inputs(batch):
        if batched:  # batch: source indices (B,)
            batch = (batches(batch)[0], labels[batch].to(accelerator.device, non_blocking=True))
        images, targets = mix_batch(mixup, batch[0], batch[1], len(classes), cfg.train.label_smoothing)
        return {"images": images, "targets": targets}  # targets: (B, K) soft, rows sum to one

    # --- resume ---------------------------------------------------------------------------------------------------
    start_epoch, step = begin_or_resume(accelerator, run_dir, cfg, "classify", lineage)

    # --- training loop ------------------------------------------------------------------------------------------
    start = time.perf_counter()
    last_test_confusion = None  # the last epoch's test score: the reported weights are that epoch's
    for epoch in range(start_epoch, cfg.train.epochs):
        seed = epoch_seed(cfg.seed, epoch, accelerator.process_index)
        torch.manual_seed(seed)  # augmentation, dropout
        np.random.seed(seed % 2**32)  # MixUp's lambda and CutMix boxes come from numpy's global generator
        if batched:
            batches.manual_seed(seed)
        train_loader.set_epoch(epoch)
        stats, step = train_one_epoch(model, train_loader, optimizer, accelerator, epoch=epoch, step=step,
                                      lr_at=lr_at, make_inputs=make_inputs, grad_clip=cfg.train.grad_clip,
                                      progress=cfg.log.progress)
        record = epoch_record(epoch, step, stats)
        last = epoch == cfg.train.epochs - 1
        if last or (cfg.eval.every and (epoch + 1) % cfg.eval.every == 0):
            confusion = evaluate_confusion(model, test_loader, accelerator, len(classes))
            record["test_top1"] = classification_metrics(confusion, classes)["top1"]
            last_test_confusion = confusion if last else None
        score = f", test top-1 {record['test_top1']:.4f}" if "test_top1" in record else ""
        end_epoch(accelerator, run_dir, record,
                  f"epoch {epoch}: train loss {stats['loss']:.4f}{score}, {speed_summary(stats)}")

    # --- final test evaluation, pictures and exports ----------------------------------------------------------------
    reported = accelerator.unwrap_model(model)
    history = read_metrics(run_dir)
    confusion = last_test_confusion  # None when resuming a finished run: then score it now
    if confusion is None:
        confusion = evaluate_confusion(reported, test_loader, accelerator, len(classes))
    if accelerator.is_main_process:
        metrics = classification_metrics(confusion, classes)
        matrix = metrics.pop("confusion")
        atomic_write_json(run_dir / "confusion.json", {"classes": classes, "rows": "target", "columns": "prediction",
                                                       "matrix": matrix})
        save_confusion_png(run_dir / "confusion.png", matrix, classes,
                           f"{init_name(cfg.init)}: test top-1 {metrics['top1']:.3f} ({len(train_set):,} training "
                           f"images)")
        atomic_write_json(run_dir / "metrics.json", {
            **metrics, "chance": 1 / len(classes), "classes": classes, "reported_epoch": history[-1]["epoch"],
            "mixup": to_dict(cfg.mixup), "head": cfg.head, "pipeline": cfg.data.pipeline,
            **labelled_metrics(cfg, reported, history, len(train_set), len(test_set), accelerator.device),
        })
        write_labelled_exports(run_dir, reported, cfg, "classify", head=cfg.head, classes=json.dumps(classes))
        accelerator.print(f"test top-1 {metrics['top1']:.4f}, mean per-class accuracy "
                          f"{metrics['mean_class_accuracy']:.4f}; done in {time.perf_counter() - start:.0f}s: "
                          f"{run_dir}")
    accelerator.end_training()
    return run_dir


def build_model(cfg: ClassifyConfig, num_classes: int) -> tuple[Classifier, dict]:
    """The classifier, its encoder from scratch or from an export, and the lineage record saying which."""
    model = Classifier(build_encoder(cfg.model), num_classes, cfg.head, cfg.train.label_smoothing)
    return model, load_init(model, cfg.init, cfg.model)


def cached_splits(data, used: dict, spec: CacheSpec, root, cfg: ClassifyConfig, accelerator) -> dict:
    """{split: the labelled cache holding its items}: one per source folder (synthetic train and test share one)."""
    if data.train is data.test:
        cache = ensure_labelled_cache(data.train, np.union1d(used["train"], used["test"]), spec, root,
                                      cfg.data.num_workers, cfg.log.progress, accelerator.print)
        return {"train": cache, "test": cache}
    return {split: ensure_labelled_cache(source, used[split], spec, root, cfg.data.num_workers, cfg.log.progress,
                                         accelerator.print)
            for split, source in (("train", data.train), ("test", data.test))}


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
