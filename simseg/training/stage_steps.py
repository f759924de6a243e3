"""The steps every stage script takes, as plain functions: start a run, resume or begin it, seed and run its epochs,
close an epoch, and the final figures and exports. Each stage's loop stays in its own script (``stages/*.py``),
where the stories differ; these are the lines they would otherwise repeat."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from simseg.config.loader import flat_dict, to_dict
from simseg.files import atomic_write_json
from simseg.models.cost import model_cost
from simseg.training.data_path import TrainingBatches
from simseg.training.engine import compile_cache_dir, epoch_seed, make_accelerator, peak_memory_mib
from simseg.training.handoff import export_encoder
from simseg.training.resume_state import save_state
from simseg.training.rundir import append_metrics, prepare_run_dir, start_or_resume
from simseg.training.weight_files import save_weights


def start_run(cfg, **accelerator_kwargs):
    """(accelerator, run folder) of a stage run, seeded with ``cfg.seed``; ``accelerator_kwargs`` go to
    ``Accelerator`` (e.g. ``kwargs_handlers``). Every process checks the run folder, so a refusal (a non-empty
    output_dir, a changed config, a damaged state to resume from) stops all ranks, before anything is written."""
    accelerator = make_accelerator(cfg, **accelerator_kwargs)
    run_dir = prepare_run_dir(cfg)
    accelerator.wait_for_everyone()
    torch.manual_seed(cfg.seed)
    return accelerator, run_dir


def begin_or_resume(accelerator, run_dir: Path, cfg, stage: str, lineage: dict | None = None,
                    resolved: dict | None = None) -> tuple[int, int]:
    """(first epoch, step) after restoring the newest state with ``resume=true``; a new run writes config.yaml
    with what it ``resolved`` (and, under ``train.compile``, the compile cache folder it used) and
    ``lineage.json`` (where its encoder's weights came from), and trackers start either way."""
    if cfg.train.compile:
        resolved = resolved or {}
        train = {**resolved.get("train", {}), "compile_cache_dir": str(compile_cache_dir(cfg))}
        resolved = {**resolved, "train": train}  # beside, not over, any train keys the stage resolved
    start_epoch, step, new_run = start_or_resume(accelerator, run_dir, cfg, resolved)
    if new_run and lineage is not None and accelerator.is_main_process:
        atomic_write_json(run_dir / "lineage.json", lineage)
    if cfg.log.trackers:
        accelerator.init_trackers(stage, config=flat_dict(to_dict(cfg)))
    return start_epoch, step


def epochs(accelerator, cfg, start_epoch: int, train: TrainingBatches, *generators: torch.Generator
           ) -> Iterator[int]:
    """The epochs left to run, each seeded from (seed, epoch, process) before it starts, so a run resumed at an
    epoch draws what an uninterrupted run draws there: torch's global generator (dropout, per-image augmentation
    through the loader's worker seeds), numpy's (timm's MixUp draws from it), the batched augmentation,
    ``generators`` (e.g. masks), and the loader's shuffle."""
    for epoch in range(start_epoch, cfg.train.epochs):
        seed = epoch_seed(cfg.seed, epoch, accelerator.process_index)
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        train.manual_seed(seed)
        for generator in generators:
            generator.manual_seed(seed)
        train.loader.set_epoch(epoch)
        yield epoch


def evaluation_due(cfg, epoch: int) -> bool:
    """Whether ``epoch`` is scored: the last one, and every ``eval.every``-th."""
    return epoch == cfg.train.epochs - 1 or bool(cfg.eval.every and (epoch + 1) % cfg.eval.every == 0)


def end_epoch(accelerator, run_dir: Path, record: dict, line: str) -> None:
    """Close an epoch: its log line, its trackers' values, its ``metrics.jsonl`` line, then the resume state (last,
    so a run killed before it repeats this epoch and logs it once)."""
    accelerator.print(line)
    accelerator.log(record, step=record["step"])
    if accelerator.is_main_process:
        append_metrics(run_dir, record)
    save_state(accelerator, run_dir, {"epoch": record["epoch"] + 1, "step": record["step"]})


def training_cost(history: list[dict], device: torch.device) -> dict:
    """``train_seconds``, ``images_per_s`` (images trained over those seconds, every epoch of every resume) and
    ``peak_memory_mib`` of a run, from its ``metrics.jsonl`` lines."""
    seconds = sum(r["seconds"] for r in history)
    images = sum(r["images_per_s"] * r["seconds"] for r in history)
    return {"train_seconds": seconds, "images_per_s": images / seconds, "peak_memory_mib": peak_memory_mib(device)}


def labelled_metrics(cfg, model: torch.nn.Module, history: list[dict], train_images: int, test_images: int,
                     device: torch.device) -> dict:
    """The ``metrics.json`` keys both labelled stages write beside their own scores: the run's size and time, and
    the model's cost (:func:`simseg.models.cost.model_cost`: parameters, GFLOPs, inference images/s)."""
    return {"epochs": cfg.train.epochs, "init": cfg.init, "test_images": test_images,
            "train_images": train_images, "final_train_loss": history[-1]["train_loss"],
            **model_cost(model, cfg.model.img_size), **training_cost(history, device)}


def write_labelled_exports(run_dir: Path, model: torch.nn.Module, cfg, stage: str, **metadata: str) -> None:
    """``encoder.safetensors`` (the ViT export the next stage loads; a CNN has none) and ``model.safetensors``
    (encoder + head, with the model config and the stage's own ``metadata``), written last."""
    if cfg.model.family == "vit":
        export_encoder(run_dir / "encoder.safetensors", model.encoder, cfg.model, {"stage": stage})
    save_weights(run_dir / "model.safetensors", model.state_dict(),
                 {"stage": stage, **metadata, "model": json.dumps(to_dict(cfg.model))})


def init_name(init: str) -> str:
    """How a figure's title names an init: ``scratch``, or the run folder's name."""
    return init if init == "scratch" else Path(init).name
