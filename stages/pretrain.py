"""Stage 1: SimMIM masked-image pretraining of the encoder on unlabelled images.

    accelerate launch stages/pretrain.py -c configs/pretrain.yaml data.source=/data/imagenet/train data.subset=45k
    python stages/pretrain.py train.epochs=2          # the same, one process
    simseg pretrain ...                               # the same, from the installed CLI

Writes into ``output_dir``: config.yaml, metrics.jsonl, metrics.json, encoder.safetensors (the export later stages
load), model.safetensors (encoder + decoder, for grids), grids/epoch_NNN.png and state/ (for ``resume=true``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from simseg.command_line import run_main, stage_config
from simseg.config.pretrain import PretrainConfig
from simseg.data.batch_augment import BatchAugment
from simseg.data.batched import CachedBatches, IndexDataset
from simseg.data.cache import UInt8Cache
from simseg.data.labelled_batches import CachedLabelledBatches, choose_pipeline
from simseg.data.labelled_cache import CacheSpec, cache_side, ensure_labelled_cache
from simseg.data.loaders import TransformedImages, WithFixedMasks
from simseg.data.pair_batch_augment import PairBatchAugment
from simseg.data.transforms import eval_transform, pretrain_transform
from simseg.data.unlabelled import open_image_source, resolve_val_size, split_indices
from simseg.files import atomic_write_json
from simseg.models.masking import masked_patch_count, random_unit_mask
from simseg.models.simmim import SimMIM
from simseg.models.vit import build_encoder
from simseg.sizes import parse_size
from simseg.training.engine import epoch_record, epoch_seed, evaluate, speed_summary, train_one_epoch
from simseg.training.export import export_encoder, save_weights
from simseg.training.optim import build_adamw, schedule_for
from simseg.training.plots import save_reconstruction_grid
from simseg.training.rundir import read_metrics, recorded_pipeline
from simseg.training.stage_steps import begin_or_resume, end_epoch, start_run, training_cost


def main(cfg: PretrainConfig) -> Path:
    accelerator, run_dir = start_run(cfg)

    # --- data: held-out images first (fixed for every subset size), then the seeded training subset -------------
    source = open_image_source(cfg.data, stream="pretrain")
    val_size = resolve_val_size(cfg.data, len(source))
    subset = parse_size(cfg.data.subset, "data.subset") if cfg.data.subset else None
    train_idx, val_idx = split_indices(len(source), val_size, subset, cfg.seed, source.name)
    img, patch = cfg.model.img_size, cfg.model.patch_size
    # Per-image path: PIL transforms in the loader's workers. Batched path: the loader yields index batches, which
    # make_inputs gathers and augments as one batch on the device, from an image cache given as the source (made by
    # `simseg data cache`), or else from the training images decoded once into an automatic cache.
    spec = CacheSpec(cache_side(img), 0, "shorter_crop", masks=False)  # held-out images stay per image
    batched = choose_pipeline(cfg.data.pipeline, recorded_pipeline(cfg), len(train_idx) * spec.row_bytes(),
                              source_is_cache=isinstance(source, UInt8Cache)) == "batched"
    cfg.data.pipeline = "batched" if batched else "per_image"  # what config.yaml records and a resume keeps
    if batched:
        train_set = IndexDataset(train_idx)
        if isinstance(source, UInt8Cache):
            cached = CachedBatches(source, BatchAugment.from_aug_config(cfg.aug, img, compile=cfg.train.compile),
                                   accelerator.device)
        else:
            cache = ensure_labelled_cache(source, train_idx, spec, cfg.data.cache_dir or run_dir / "data_cache",
                                          cfg.data.num_workers, cfg.log.progress, accelerator.print)
            augment = PairBatchAugment.from_aug_config(cfg.aug, img, cfg.train.compile)
            cached = AutoCachedImages(CachedLabelledBatches(cache, augment, accelerator.device))
    else:
        train_set = TransformedImages(source, train_idx, pretrain_transform(cfg.aug, img))
    # Fixed masks for the held-out images: the validation loss and the grids compare like with like across epochs.
    val_masks = random_unit_mask(len(val_idx), img, patch, cfg.mask.unit, cfg.mask.ratio,
                                 generator=torch.Generator().manual_seed(cfg.seed))
    val_images = TransformedImages(source, val_idx, eval_transform(img, cfg.aug.mean, cfg.aug.std))
    val_set = WithFixedMasks(val_images, val_masks)
    loader_args = dict(batch_size=cfg.train.batch_size, num_workers=cfg.data.num_workers,
                       pin_memory=accelerator.device.type == "cuda")
    train_args = loader_args | {"num_workers": 0} if batched else loader_args  # index batches need no workers
    train_loader = DataLoader(train_set, shuffle=True, **train_args)
    val_loader = DataLoader(val_set, shuffle=False, **loader_args)
    accelerator.print(f"pretraining on {len(train_set):,} images of {source.name} ({len(val_set)} held out); "
                      f"{cached.describe() if batched else 'per-image augmentation in the loader'}")

    # --- model and optimiser ------------------------------------------------------------------------------------
    # Every mask covers the same number of patches, so the loss keeps static shapes (see SimMIM.masked_patches).
    model = SimMIM(build_encoder(cfg.model), masked_patch_count(img, patch, cfg.mask.unit, cfg.mask.ratio))
    optimizer = build_adamw(model, cfg.train.lr, cfg.train.weight_decay,
                            fused=accelerator.device.type == "cuda")
    # An automatic cache's index batches stay on the CPU, where the augmentation reads each item's original size.
    on_cpu = batched and isinstance(cached, AutoCachedImages)
    model, optimizer, train_loader, val_loader = accelerator.prepare(
        model, optimizer, train_loader, val_loader, device_placement=[True, True, not on_cpu, True])
    lr_at = schedule_for(cfg.train, len(train_loader))

    # --- resume ---------------------------------------------------------------------------------------------------
    start_epoch, step = begin_or_resume(accelerator, run_dir, cfg, "pretrain")

    mask_generator = torch.Generator(accelerator.device)  # reseeded every epoch, on the device the batch is on

    def masked_batch(batch: torch.Tensor) -> dict:
        images = cached(batch) if batched else batch  # (B, 3, img, img) normalised, from indices (B,) if batched
        mask = random_unit_mask(len(images), img, patch, cfg.mask.unit, cfg.mask.ratio, mask_generator)
        return {"images": images, "mask": mask}

    # --- training loop ------------------------------------------------------------------------------------------
    start = time.perf_counter()
    for epoch in range(start_epoch, cfg.train.epochs):
        seed = epoch_seed(cfg.seed, epoch, accelerator.process_index)
        torch.manual_seed(seed)  # augmentation (worker seeds), dropout
        mask_generator.manual_seed(seed)
        if batched:
            cached.manual_seed(seed)
        train_loader.set_epoch(epoch)
        stats, step = train_one_epoch(model, train_loader, optimizer, accelerator, epoch=epoch, step=step,
                                      lr_at=lr_at, make_inputs=masked_batch, grad_clip=cfg.train.grad_clip,
                                      progress=cfg.log.progress)
        val_loss = evaluate(model, val_loader, accelerator,
                            make_inputs=lambda batch: {"images": batch[0], "mask": batch[1]})
        record = epoch_record(epoch, step, stats, val_loss=val_loss)
        last = epoch == cfg.train.epochs - 1
        if accelerator.is_main_process:
            write_exports(accelerator.unwrap_model(model), cfg, run_dir)
            if last or (cfg.log.grid_every and (epoch + 1) % cfg.log.grid_every == 0):
                write_grid(accelerator.unwrap_model(model), val_set, cfg, run_dir / "grids" / f"epoch_{epoch:03d}.png",
                           f"epoch {epoch}, val loss {val_loss:.4f}")
        end_epoch(accelerator, run_dir, record,
                  f"epoch {epoch}: train loss {stats['loss']:.4f}, val loss {val_loss:.4f}, {speed_summary(stats)}")

    # --- final figures ------------------------------------------------------------------------------------------
    if accelerator.is_main_process:
        history = read_metrics(run_dir)
        atomic_write_json(run_dir / "metrics.json", {
            "epochs": cfg.train.epochs, "train_images": len(train_set), "val_images": len(val_set),
            "final_train_loss": history[-1]["train_loss"], "final_val_loss": history[-1]["val_loss"],
            "best_val_loss": min(r["val_loss"] for r in history),
            "encoder_parameters": sum(p.numel() for p in accelerator.unwrap_model(model).encoder.parameters()),
            "pipeline": cfg.data.pipeline, **training_cost(history, accelerator.device),
        })
        accelerator.print(f"done in {time.perf_counter() - start:.0f}s: {run_dir}")
    accelerator.end_training()
    return run_dir


class AutoCachedImages:
    """The images alone of :class:`CachedLabelledBatches` (no masks), as :class:`CachedBatches` gives them."""

    def __init__(self, batches: CachedLabelledBatches):
        self.batches = batches

    def manual_seed(self, seed: int) -> None:
        self.batches.manual_seed(seed)

    def __call__(self, items: torch.Tensor) -> torch.Tensor:
        return self.batches(items)[0]

    def describe(self) -> str:
        return self.batches.describe()


def write_exports(model: SimMIM, cfg: PretrainConfig, run_dir: Path) -> None:
    """encoder.safetensors (what later stages load) and model.safetensors (encoder + decoder, for grids)."""
    export_encoder(run_dir / "encoder.safetensors", model.encoder, cfg.model, {"stage": "pretrain"})
    save_weights(run_dir / "model.safetensors", model.state_dict(), {"stage": "pretrain"})


def write_grid(model: SimMIM, val_set: WithFixedMasks, cfg: PretrainConfig, path: Path, title: str) -> None:
    rows = min(cfg.log.grid_rows, len(val_set))
    images = torch.stack([val_set[i][0] for i in range(rows)]).to(next(model.parameters()).device)
    masks = val_set.masks[:rows].to(images.device)
    save_reconstruction_grid(path, model, images, masks, cfg.aug.mean, cfg.aug.std, title)


if __name__ == "__main__":
    run_main(lambda argv: main(stage_config(PretrainConfig, argv, "pretrain")), sys.argv[1:])
