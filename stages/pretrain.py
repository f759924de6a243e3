"""Stage 1: masked-image pretraining of the encoder on unlabelled images (``method=simmim|mae``).

    accelerate launch stages/pretrain.py -c configs/pretrain.yaml data.source=/data/imagenet/train data.subset=45k
    python stages/pretrain.py train.epochs=2          # the same, one process
    simseg pretrain ...                               # the same, from the installed CLI

Writes into ``output_dir``: config.yaml, metrics.jsonl, metrics.json, encoder.safetensors (the export later stages
load), model.safetensors (encoder + decoder, for reconstruction grids), grids/epoch_NNN.png, exports/epoch_NNN/
(with ``log.export_every``) and state/ (for ``resume=true``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from simseg.config.pretrain import PretrainConfig
from simseg.data.image_cache import CacheSpec, ImageCache, cache_side
from simseg.data.loaders import TransformedItems, WithFixedMasks
from simseg.data.transforms import eval_transform
from simseg.data.unlabelled import open_pretraining_images, pretraining_split, read_exclude_file
from simseg.experiments.stage_entry import run_main, stage_config
from simseg.files import atomic_write_json
from simseg.models.masking import random_unit_mask
from simseg.models.pretraining import pretrainer_for_config
from simseg.training.data_path import DataPath
from simseg.training.engine import epoch_record, evaluate, speed_summary, train_one_epoch
from simseg.training.handoff import export_encoder
from simseg.training.optim import build_adamw, schedule_for
from simseg.training.plots import save_reconstruction_grid
from simseg.training.probe import LinearProbe, save_probe_curve
from simseg.training.rundir import read_metrics
from simseg.training.stage_steps import begin_or_resume, end_epoch, epochs, start_run, training_cost
from simseg.training.tracker_images import log_tracker_image
from simseg.training.weight_files import save_weights


def main(cfg: PretrainConfig) -> Path:
    accelerator, run_dir = start_run(cfg)

    # --- data: held-out images first (fixed for every subset size), then the seeded training subset -------------
    # data.exclude drops named images (e.g. a sweep's test images) from every source before anything is drawn.
    source, exclusion = open_pretraining_images(cfg.data, stream="pretrain")
    train_idx, val_idx = pretraining_split(source, cfg.data, cfg.seed)
    img, patch = cfg.model.img_size, cfg.model.patch_size
    data = DataPath(cfg, run_dir, accelerator, CacheSpec(cache_side(img)), len(train_idx),
                    source_is_cache=isinstance(source, ImageCache))
    train = data.training(source, train_idx, data.cache(source, train_idx))
    # Fixed masks for the held-out images: the validation loss and the grids compare like with like across epochs.
    val_masks = random_unit_mask(len(val_idx), img, patch, cfg.mask.unit, cfg.mask.ratio,
                                 generator=torch.Generator().manual_seed(cfg.seed))
    val_set = WithFixedMasks(TransformedItems(source, val_idx, eval_transform(img, cfg.aug.mean, cfg.aug.std)),
                             val_masks)
    val_loader = data.loader(val_set)
    accelerator.print(f"pretraining on {len(train_idx):,} images of {source.name} ({len(val_idx)} held out); "
                      f"{train.describe()}")
    resolved = data.resolved()
    if exclusion:  # what was left out, with the list's hash, goes into config.yaml: the run says what it never saw
        resolved.setdefault("data", {})["exclusion"] = exclusion

    # --- model and optimiser ------------------------------------------------------------------------------------
    # Every mask covers the same number of patches, so every method keeps static shapes (simseg.models.pretraining).
    model = pretrainer_for_config(cfg)
    optimizer = build_adamw(model, cfg.train.lr, cfg.train.weight_decay)
    model, optimizer = accelerator.prepare(model, optimizer)
    # What exports, grids and the probe use: the module itself, without DDP's or torch.compile's wrapper (whose
    # state_dict prefixes every key with _orig_mod., and which would compile grids' reconstructions again).
    unwrapped = accelerator.unwrap_model(model, keep_torch_compile=False)
    lr_at = schedule_for(cfg.train, len(train.loader))
    start_epoch, step = begin_or_resume(accelerator, run_dir, cfg, "pretrain", resolved=resolved)

    mask_generator = torch.Generator(accelerator.device)  # reseeded every epoch, on the device the batch is on
    # The linear probe (probe.*) never sees what data.exclude names: it reads labelled images, often the same set.
    probe = None
    if cfg.probe.every and accelerator.is_main_process:
        never = read_exclude_file(cfg.data.exclude)[0] if cfg.data.exclude else set()
        probe = LinearProbe.prepare(cfg.probe, img, cfg.aug.mean, cfg.aug.std, never, cfg.seed)

    def masked_batch(batch) -> dict:
        images, _ = train(batch)  # (B, 3, img, img) normalised
        mask = random_unit_mask(len(images), img, patch, cfg.mask.unit, cfg.mask.ratio, mask_generator)
        return {"images": images, "mask": mask}

    # --- training loop ------------------------------------------------------------------------------------------
    start = time.perf_counter()
    for epoch in epochs(accelerator, cfg, start_epoch, train, mask_generator):
        stats, step = train_one_epoch(model, train.loader, optimizer, accelerator, epoch=epoch, step=step,
                                      lr_at=lr_at, make_inputs=masked_batch, grad_clip=cfg.train.grad_clip,
                                      progress=cfg.log.progress)
        val_loss = evaluate(model, val_loader, accelerator, lambda batch: {"images": batch[0], "mask": batch[1]})
        scores, line = {"val_loss": val_loss}, f"val loss {val_loss:.4f}"
        if probe is not None and (epoch == cfg.train.epochs - 1 or (epoch + 1) % cfg.probe.every == 0):
            scores.update(probe.score(unwrapped.encoder))
            line += f", probe mIoU {scores['probe_miou']:.3f} ({scores['probe_seconds']:.0f}s)"
        if accelerator.is_main_process:
            write_exports(unwrapped, cfg, run_dir, epoch)
            if epoch == cfg.train.epochs - 1 or (cfg.log.grid_every and (epoch + 1) % cfg.log.grid_every == 0):
                grid = write_grid(unwrapped, val_set, cfg, run_dir, epoch, val_loss)
                log_tracker_image(accelerator, "reconstructions", grid, step=epoch)
        end_epoch(accelerator, run_dir, epoch_record(epoch, step, stats, **scores),
                  f"epoch {epoch}: train loss {stats['loss']:.4f}, {line}, {speed_summary(stats)}")
        if "probe_miou" in scores:
            log_tracker_image(accelerator, "probe", save_probe_curve(run_dir, read_metrics(run_dir)), step=epoch)

    # --- final figures ------------------------------------------------------------------------------------------
    if accelerator.is_main_process:
        history = read_metrics(run_dir)
        probes = [r["probe_miou"] for r in history if "probe_miou" in r]
        atomic_write_json(run_dir / "metrics.json", {
            "epochs": cfg.train.epochs, "train_images": len(train_idx), "val_images": len(val_idx),
            "final_train_loss": history[-1]["train_loss"], "final_val_loss": history[-1]["val_loss"],
            "best_val_loss": min(r["val_loss"] for r in history),
            **({"final_probe_miou": probes[-1]} if probes else {}),
            "encoder_parameters": sum(p.numel() for p in unwrapped.encoder.parameters()),
            "pipeline": data.pipeline, **training_cost(history, accelerator.device),
        })
        accelerator.print(f"done in {time.perf_counter() - start:.0f}s: {run_dir}")
    accelerator.end_training()
    return run_dir


def write_exports(model: torch.nn.Module, cfg: PretrainConfig, run_dir: Path, epoch: int) -> None:
    """encoder.safetensors (what later stages load), model.safetensors (encoder + decoder, for grids) and, every
    ``log.export_every`` epochs, a kept copy of the encoder in exports/epoch_NNN/ (the pretraining-budget curve)."""
    metadata = {"stage": "pretrain", "method": cfg.method, "epoch": str(epoch)}
    export_encoder(run_dir / "encoder.safetensors", model.encoder, cfg.model, metadata)
    save_weights(run_dir / "model.safetensors", model.state_dict(), metadata)
    if cfg.log.export_every and (epoch + 1) % cfg.log.export_every == 0:
        export_encoder(run_dir / "exports" / f"epoch_{epoch:03d}" / "encoder.safetensors", model.encoder, cfg.model,
                       metadata)


def write_grid(model: torch.nn.Module, val_set: WithFixedMasks, cfg: PretrainConfig, run_dir: Path, epoch: int,
               val_loss: float) -> bytes:
    """grids/epoch_NNN.png: reconstructions of the first ``log.grid_rows`` held-out images with their fixed masks;
    returns the PNG's bytes."""
    rows = min(cfg.log.grid_rows, len(val_set))
    images = torch.stack([val_set[i][0] for i in range(rows)]).to(next(model.parameters()).device)
    return save_reconstruction_grid(run_dir / "grids" / f"epoch_{epoch:03d}.png", model, images,
                                    val_set.masks[:rows].to(images.device), cfg.aug.mean, cfg.aug.std,
                                    f"epoch {epoch}, val loss {val_loss:.4f}")


if __name__ == "__main__":
    run_main(lambda argv: main(stage_config(PretrainConfig, argv, "pretrain")), sys.argv[1:])
