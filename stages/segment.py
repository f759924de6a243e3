"""Stage 3: fine-tune a segmentation model (``model.arch``: the study's ViT + linear head by default, a ViT with a
conv decoder, or a CNN baseline) on labelled Oxford-IIIT Pet trimaps; test on a fixed test set.

    accelerate launch stages/segment.py -c configs/segment.yaml data.source=data/oxford-iiit-pet data.subset=1k \\
        init=outputs/pretrain-45k output_dir=outputs/segment-1k-pretrained
    python stages/segment.py data.subset=250 train.epochs=5     # from scratch on synthetic data, one process
    simseg segment ...                                           # the same, from the installed CLI

Classes (simseg.data.pets): 0 background, 1 pet, 2 boundary (Oxford trimap values 2, 1 and 3).

Writes into ``output_dir``: config.yaml, lineage.json (where the encoder's weights came from), test_images.txt /
train_images.txt / val_images.txt (the split, one item name per line), metrics.jsonl (per epoch: train loss, and
every ``eval.every`` epochs test and validation mIoU), metrics.json (final test figures from one confusion matrix over
every test pixel, plus the model's cost: parameters, GFLOPs, inference and training images/s, seconds),
confusion.json, examples.png (rows image | ground
truth | prediction for the first ``log.examples`` test images; colours: background black, pet orange, boundary
white), encoder.safetensors (the export; ViT models only), model.safetensors (encoder + head), best.safetensors
(with a validation split) and state/ (for ``resume=true``).

Nothing is chosen on the test set: with ``data.val_size`` > 0 the reported weights are those of the epoch with the
best validation mIoU (among evaluated epochs), otherwise those of the last epoch. With ``train.ema`` the EMA weights
(or ``train.ema_half_life``) are evaluated, reported and exported instead of the raw ones.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import DistributedDataParallelKwargs
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader

from simseg.command_line import run_main, stage_config
from simseg.config.segment import SegmentConfig
from simseg.data.batched import IndexDataset
from simseg.data.labelled_batches import CachedEvalSet, CachedLabelledBatches, choose_pipeline, keep_batch
from simseg.data.labelled_cache import CacheSpec, cache_side, ensure_labelled_cache
from simseg.data.loaders import TransformedPairs
from simseg.data.pair_batch_augment import PairBatchAugment
from simseg.data.pair_transforms import seg_eval_transform, seg_train_transform
from simseg.data.pets import CLASS_NAMES, open_segmentation_pairs
from simseg.data.splits import segmentation_splits
from simseg.data.transforms import denormalize
from simseg.errors import SimsegError
from simseg.files import atomic_write_json
from simseg.models.registry import build_segmentation_model
from simseg.models.segmentation_mixing import mix_segmentation_batch
from simseg.models.vit import build_encoder
from simseg.training.cnn_weights import load_cnn_init
from simseg.training.engine import epoch_record, epoch_seed, evaluate_confusion, speed_summary, train_one_epoch
from simseg.training.export import load_init, read_weights, save_weights
from simseg.training.metrics import segmentation_metrics, time_to_target
from simseg.training.optim import build_adamw, schedule_for
from simseg.training.plots import colour_masks, save_image_grid
from simseg.training.rundir import check_or_save_splits, read_metrics, recorded_pipeline
from simseg.training.stage_steps import (
    begin_or_resume,
    end_epoch,
    init_name,
    labelled_metrics,
    start_run,
    write_labelled_exports,
)

NUM_CLASSES = len(CLASS_NAMES)


def main(cfg: SegmentConfig) -> Path:
    # A frozen encoder gets no gradients, which DDP must be told to expect.
    accelerator, run_dir = start_run(cfg, kwargs_handlers=[
        DistributedDataParallelKwargs(find_unused_parameters=cfg.train.freeze_encoder_epochs > 0)])

    # --- data: a test set fixed by data.test_seed, then nested stratified training subsets (and validation) ------
    test_size, subset, val_size = cfg.data.sizes()
    if cfg.data.source == "synthetic" and subset is None:
        raise SimsegError("data.source=synthetic needs data.subset: the number of training images to draw")
    source = open_segmentation_pairs(cfg.data)
    splits = segmentation_splits(len(source), test_size, subset, cfg.seed, source.groups, val_size, source.name,
                                 test_seed=cfg.data.test_seed)
    check_or_save_splits(run_dir, {k: [source.names[i] for i in v] for k, v in splits.items()},
                         write=accelerator.is_main_process)
    img, aug = cfg.model.img_size, cfg.aug
    # Per-image path: decode and transform each pair in the loader. Batched path: the pairs used are decoded once
    # into a cache; the loader yields index batches, which make_inputs gathers and augments on the device.
    used = np.concatenate([splits["train"], splits["test"], splits["val"]])
    spec = CacheSpec(cache_side(img), img, "resize", masks=True)
    batched = choose_pipeline(cfg.data.pipeline, recorded_pipeline(cfg), len(used) * spec.row_bytes()) == "batched"
    cfg.data.pipeline = "batched" if batched else "per_image"  # what config.yaml records and a resume keeps
    if batched:
        cache = ensure_labelled_cache(source, used, spec, cfg.data.cache_dir or run_dir / "data_cache",
                                      cfg.data.num_workers, cfg.log.progress, accelerator.print)
        batches = CachedLabelledBatches(cache, PairBatchAugment.from_aug_config(aug, img, cfg.train.compile),
                                        accelerator.device)
        train_set = IndexDataset(splits["train"])
        test_set, val_set = (CachedEvalSet(cache, splits[k], aug.mean, aug.std) for k in ("test", "val"))
    else:
        train_set = TransformedPairs(source, splits["train"], seg_train_transform(
            img, aug.crop_scale, aug.crop_ratio, aug.hflip, aug.color_jitter, aug.color_jitter_prob, aug.mean,
            aug.std, aug.rotation, aug.blur_prob, aug.blur_sigma))
        test_set, val_set = (TransformedPairs(source, splits[k], seg_eval_transform(img, aug.mean, aug.std))
                             for k in ("test", "val"))
    # The batched path's loaders only index arrays in memory: workers would add start-up and nothing else.
    loader_args = dict(batch_size=cfg.train.batch_size, num_workers=0 if batched else cfg.data.num_workers,
                       pin_memory=accelerator.device.type == "cuda")
    eval_args = loader_args | ({"collate_fn": keep_batch} if batched else {})
    train_loader = DataLoader(train_set, shuffle=True, **loader_args)
    test_loader = DataLoader(test_set, shuffle=False, **eval_args)
    val_loader = DataLoader(val_set, shuffle=False, **eval_args) if val_size else None
    skipped = getattr(source, "skipped", 0)
    accelerator.print(f"segmenting {len(train_set):,} training images of {source.name}, testing on {len(test_set):,}"
                      + (f", validating on {len(val_set):,}" if val_size else "")
                      + (f" ({skipped:,} unpaired files skipped)" if skipped else "")
                      + f"; {batches.describe() if batched else 'per-image augmentation in the loader'}")

    # --- model and optimiser ------------------------------------------------------------------------------------
    model, lineage = build_model(cfg)
    optimizer = build_adamw(model, cfg.train.lr, cfg.train.weight_decay, cfg.train.layer_decay,
                            fused=accelerator.device.type == "cuda")
    # Index batches stay on the CPU, where the augmentation draws its parameters from each item's original size.
    model, optimizer, train_loader, test_loader = accelerator.prepare(
        model, optimizer, train_loader, test_loader, device_placement=[True, True, not batched, True])
    if val_loader is not None:
        val_loader = accelerator.prepare(val_loader)
    decay = cfg.train.ema_decay()
    ema = ModelEmaV3(accelerator.unwrap_model(model), decay=decay) if decay else None
    if ema is not None:
        accelerator.register_for_checkpointing(ema)  # the average is training state: resume continues it
    lr_at = schedule_for(cfg.train, len(train_loader))

    # --- resume ---------------------------------------------------------------------------------------------------
    start_epoch, step = begin_or_resume(accelerator, run_dir, cfg, "segment", lineage)
    best_val = max((r["val_miou"] for r in read_metrics(run_dir) if r.get("val_miou") is not None), default=None)

    def evaluated_model():
        return ema.module if ema is not None else model

    def make_inputs(batch):  # MixUp/CutMix turn the masks into per-pixel soft targets
        images, mask = batches(batch) if batched else batch  # (B, 3, img, img), (B, img, img)
        if not cfg.mixup.enabled:
            return {"images": images, "mask": mask}
        mix = cfg.mixup
        images, targets = mix_segmentation_batch(images, mask, NUM_CLASSES, mix.alpha, mix.cutmix_alpha, mix.prob,
                                                 mix.switch_prob)
        return {"images": images, "mask": targets}

    # --- training loop ------------------------------------------------------------------------------------------
    start = time.perf_counter()
    last_test_confusion = None  # the last epoch's test score, reused below when those are the reported weights
    for epoch in range(start_epoch, cfg.train.epochs):
        seed = epoch_seed(cfg.seed, epoch, accelerator.process_index)
        torch.manual_seed(seed)  # augmentation, dropout
        if batched:
            batches.manual_seed(seed)
        train_loader.set_epoch(epoch)
        accelerator.unwrap_model(model).freeze_encoder = epoch < cfg.train.freeze_encoder_epochs
        stats, step = train_one_epoch(model, train_loader, optimizer, accelerator, epoch=epoch, step=step,
                                      lr_at=lr_at, make_inputs=make_inputs,
                                      grad_clip=cfg.train.grad_clip, progress=cfg.log.progress, ema=ema,
                                      ema_every=cfg.train.ema_interval, sam=cfg.train.sam())
        record = epoch_record(epoch, step, stats)
        last = epoch == cfg.train.epochs - 1
        if last or (cfg.eval.every and (epoch + 1) % cfg.eval.every == 0):
            confusion = evaluate_confusion(evaluated_model(), test_loader, accelerator, NUM_CLASSES)
            record["test_miou"] = segmentation_metrics(confusion, CLASS_NAMES)["miou"]
            last_test_confusion = confusion if last else None
            if val_loader is not None:
                confusion = evaluate_confusion(evaluated_model(), val_loader, accelerator, NUM_CLASSES)
                record["val_miou"] = segmentation_metrics(confusion, CLASS_NAMES)["miou"]
                if best_val is None or record["val_miou"] > best_val:
                    best_val = record["val_miou"]
                    if accelerator.is_main_process:
                        save_weights(run_dir / "best.safetensors",
                                     accelerator.unwrap_model(evaluated_model()).state_dict(),
                                     {"stage": "segment", "epoch": str(epoch)})
        scores = "".join(f", {k[:-5]} mIoU {record[k]:.4f}" for k in ("test_miou", "val_miou") if k in record)
        end_epoch(accelerator, run_dir, record,
                  f"epoch {epoch}: train loss {stats['loss']:.4f}{scores}, {speed_summary(stats)}")

    # --- final test evaluation of the reported weights, pictures and exports ---------------------------------------
    reported = accelerator.unwrap_model(evaluated_model())
    history = read_metrics(run_dir)
    reported_epoch = history[-1]["epoch"]
    if val_loader is not None:
        accelerator.wait_for_everyone()
        weights, meta = read_weights(run_dir / "best.safetensors")
        reported.load_state_dict(weights)
        reported_epoch = int(meta["epoch"])
    if last_test_confusion is not None and reported_epoch == history[-1]["epoch"]:
        confusion = last_test_confusion  # the same weights were scored on the test set a moment ago
    else:
        confusion = evaluate_confusion(reported, test_loader, accelerator, NUM_CLASSES)
    plain_confusion, tta = confusion, cfg.eval.tta_views()
    if tta is not None:  # the reported figures are the TTA ones; the plain mIoU stays beside them
        confusion = evaluate_confusion(reported, test_loader, accelerator, NUM_CLASSES, tta)
    if accelerator.is_main_process:
        metrics = segmentation_metrics(confusion, CLASS_NAMES)
        if tta is not None:
            metrics["plain_miou"] = segmentation_metrics(plain_confusion, CLASS_NAMES)["miou"]
        atomic_write_json(run_dir / "confusion.json", {"classes": list(CLASS_NAMES), "rows": "target",
                                                       "columns": "prediction", "matrix": metrics.pop("confusion")})
        atomic_write_json(run_dir / "metrics.json", {
            **metrics,
            "reported_epoch": reported_epoch, "selected_on": "val_miou" if val_loader is not None else "last epoch",
            "best_val_miou": best_val, "loss": cfg.loss, "val_images": len(val_set), "skipped_unpaired": skipped,
            "arch": cfg.model.arch, "aug": cfg.aug.preset, "recipe": cfg.recipe, "pipeline": cfg.data.pipeline,
            "tta": None if tta is None else {"scales": tta[0], "flip": tta[1]},
            "time_to_target": time_to_target(history),
            **labelled_metrics(cfg, reported, history, len(train_set), len(test_set), accelerator.device),
        })
        write_examples(reported, test_set, cfg.log.examples, cfg, run_dir / "examples.png",
                       f"{init_name(cfg.init)}: test mIoU {metrics['miou']:.3f} ({len(train_set):,} training images)")
        write_labelled_exports(run_dir, reported, cfg, "segment", arch=cfg.model.arch, num_classes=str(NUM_CLASSES))
        accelerator.print(f"test mIoU {metrics['miou']:.4f} (epoch {reported_epoch}), pixel accuracy "
                          f"{metrics['pixel_accuracy']:.4f}; done in {time.perf_counter() - start:.0f}s: {run_dir}")
    accelerator.end_training()
    return run_dir


def build_model(cfg: SegmentConfig) -> tuple[torch.nn.Module, dict]:
    """The ``model.arch`` model, its encoder from scratch or from ``init``, and the lineage record saying which."""
    if cfg.model.family == "cnn":
        model = build_segmentation_model(cfg.model.arch, NUM_CLASSES, cfg.loss)
        return model, load_cnn_init(model, cfg.init, cfg.model.arch)
    model = build_segmentation_model(cfg.model.arch, NUM_CLASSES, cfg.loss,
                                     build_encoder(cfg.model, dynamic_img_size=True))  # TTA's scales need it
    return model, load_init(model, cfg.init, cfg.model)


@torch.no_grad()
def write_examples(model: torch.nn.Module, test_set: TransformedPairs | CachedEvalSet, rows: int,
                   cfg: SegmentConfig, path: Path, title: str) -> None:
    """examples.png: image | ground truth | prediction for the first ``rows`` test images (background black, pet
    orange, boundary white)."""
    pairs = [test_set[i] for i in range(min(rows, len(test_set)))]
    device = next(model.parameters()).device
    images = torch.stack([p[0] for p in pairs]).to(device)  # (N, 3, H, W)
    truth = torch.stack([p[1] for p in pairs])  # (N, H, W)
    model.eval()
    pred = model(images=images)["logits"].argmax(1).cpu()  # (N, H, W)
    columns = [denormalize(images.cpu(), cfg.aug.mean, cfg.aug.std), colour_masks(truth), colour_masks(pred)]
    save_image_grid(path, columns, ("image", "ground truth", "prediction"), title)


if __name__ == "__main__":
    run_main(lambda argv: main(stage_config(SegmentConfig, argv, "segment")), sys.argv[1:])
