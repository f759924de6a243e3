"""Kernels that one training step of each stage issues on the batched path, split into its parts, at two batch sizes.

    python benchmarks/kernels_per_step.py [--batches 8,64] [--device cuda] [--bf16] [--out kernels.json] [KEY=VALUE ...]

The step is built here from the library, as the stages build it (no stage script is imported, so the library stays
free of profiling code): an in-memory image cache of random pixels (masks for segment, labels for classify) read by
``CachedBatches`` with the stage's ``BatchAugment``, the stage's model and ``build_adamw``'s optimiser. Each part
runs under ``torch.profiler`` on its own, inside a ``record_function`` range of its name, after two unprofiled
steps (AdamW's state, allocator and thread pools warm):

  augmentation  index batch -> the model's inputs: gather from the cache, batched augmentation, then the stage's
                own per-batch inputs (pretraining masks; MixUp for classify, and for segment when its recipe mixes);
  forward       the model's loss (under bf16 autocast with --bf16);
  backward      loss.backward();
  clip          gradient clipping at train.grad_clip (torch's clip_grad_norm_, what Accelerate calls);
  step          the learning rate set, optimizer.step() and zero_grad(set_to_none=True).

What is counted. On CUDA: the GPU's kernels (kernel launches; the copies and memsets are given apart) and the host
waits (cudaStreamSynchronize: every blocking copy between host and device is one). On the CPU: aten ops that do work
(not a view, an allocation or the read of one number) and call no other op that does: the innermost loops, the CPU's
kernels.
``ops`` in the JSON counts the aten calls made from Python (the dispatches, each a launch's host cost on a GPU).
A kernel count that grows with the batch means a loop over the images (or over parameters, for the optimiser).
``KEY=VALUE`` overrides go to every stage's config (e.g. model.depth=1 model.img_size=32 for a quick look).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

from simseg.config.classify import ClassifyConfig
from simseg.config.loader import load_config
from simseg.config.pretrain import PretrainConfig
from simseg.config.segment import SegmentConfig
from simseg.data.batch_augment import BatchAugment
from simseg.data.cached_batches import CachedBatches
from simseg.data.image_cache import CacheSpec, ImageCache, cache_side
from simseg.models.classifier import Classifier, build_mixup, mix_batch
from simseg.models.masking import random_unit_mask
from simseg.models.pretraining import pretrainer_for_config
from simseg.models.registry import model_for_config
from simseg.models.segmentation_mixing import mix_segmentation_batch
from simseg.models.vit import build_encoder
from simseg.training.optim import build_adamw, set_lr

STAGES = ("pretrain-simmim", "pretrain-mae", "segment", "classify")
PARTS = ("augmentation", "forward", "backward", "clip", "step")
SEGMENT_CLASSES, SCENE_CLASSES = 3, 6  # pet trimaps; Intel scenes
# Ops that allocate, read one number or change metadata only: no loop of their own on the CPU.
_NO_KERNEL = {"aten::empty", "aten::empty_strided", "aten::detach_", "aten::set_", "aten::resize_", "aten::item",
              "aten::_local_scalar_dense"}


@dataclasses.dataclass
class Step:
    """One training step of a stage in its parts: ``inputs(items)`` -> the model's keywords, then the model."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    inputs: Callable[[torch.Tensor], dict]
    lr: float
    grad_clip: float


def random_cache(count: int, spec: CacheSpec, seed: int = 0) -> ImageCache:
    """An image cache held in memory: ``count`` random squares from originals of random sizes (so the crops differ
    per image, as on real data), with masks of 3 classes or labels of 6 when ``spec`` asks for them."""
    rng = np.random.default_rng(seed)
    side = spec.train_size
    arrays = {"images": rng.integers(0, 256, (count, side, side, 3), dtype=np.uint8),
              "sizes": rng.integers(side, 3 * side, (count, 2)).astype(np.int32),
              "items": np.arange(count, dtype=np.int64)}
    if spec.masks:
        arrays["masks"] = rng.integers(0, SEGMENT_CLASSES, (count, side, side), dtype=np.uint8)
    if spec.labels:
        arrays["labels"] = rng.integers(0, SCENE_CLASSES, count).astype(np.int64)
    return ImageCache(Path("memory"), {"spec": dataclasses.asdict(spec)}, arrays)


def build_step(stage: str, batch: int, device: torch.device, overrides: list[str]) -> Step:
    """The stage's model, optimiser and input pipeline for batches of ``batch`` on ``device`` (configs at their
    defaults plus ``overrides``)."""
    if stage.startswith("pretrain"):
        cfg = load_config(PretrainConfig, None, [f"method={stage.split('-')[1]}", *overrides])
        model, spec = pretrainer_for_config(cfg), CacheSpec(cache_side(cfg.model.img_size))
    elif stage == "segment":
        cfg = load_config(SegmentConfig, None, overrides)
        model = model_for_config(cfg.model, SEGMENT_CLASSES, cfg.loss)
        spec = CacheSpec(cache_side(cfg.model.img_size), masks=True)
    else:
        cfg = load_config(ClassifyConfig, None, overrides)
        model = Classifier(build_encoder(cfg.model), SCENE_CLASSES, cfg.pool, cfg.train.label_smoothing)
        spec = CacheSpec(cache_side(cfg.model.img_size), labels=True)
    img = cfg.model.img_size
    cached = CachedBatches(random_cache(batch, spec), BatchAugment.from_aug_config(cfg.aug, img), device)
    cached.manual_seed(0)
    mask_generator = torch.Generator(device).manual_seed(0)
    mixup = build_mixup(cfg.mixup, cfg.train.label_smoothing, SCENE_CLASSES) if stage == "classify" else None

    def inputs(items: torch.Tensor) -> dict:
        images, targets = cached(items)
        if stage.startswith("pretrain"):
            mask = random_unit_mask(len(images), img, cfg.model.patch_size, cfg.mask.unit, cfg.mask.ratio,
                                    mask_generator)
            return {"images": images, "mask": mask}
        if stage == "segment":
            if cfg.mixup.enabled:
                images, targets = mix_segmentation_batch(images, targets, SEGMENT_CLASSES, cfg.mixup.alpha,
                                                         cfg.mixup.cutmix_alpha, cfg.mixup.prob,
                                                         cfg.mixup.switch_prob)
            return {"images": images, "mask": targets}
        images, soft = mix_batch(mixup, images, targets, SCENE_CLASSES, cfg.train.label_smoothing)
        return {"images": images, "targets": soft}

    # The optimiser as the library builds it by default (layer-wise decay where the segment config asks for it).
    optimizer = build_adamw(model, cfg.train.lr, cfg.train.weight_decay, getattr(cfg.train, "layer_decay", 1.0))
    return Step(model.to(device).train(), optimizer, inputs, cfg.train.lr, cfg.train.grad_clip)


def run_parts(step: Step, items: torch.Tensor, bf16: bool, measure: Callable | None = None) -> None:
    """One training step, each part through ``measure(name, fn)`` (which runs it) when given."""
    run = measure or (lambda name, fn: fn())
    device = next(step.model.parameters()).device
    state: dict = {}
    state["inputs"] = run("augmentation", lambda: step.inputs(items))

    def forward():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return step.model(**state["inputs"])["loss"]

    state["loss"] = run("forward", forward)
    run("backward", lambda: state["loss"].backward())
    if step.grad_clip > 0:
        run("clip", lambda: torch.nn.utils.clip_grad_norm_(step.model.parameters(), step.grad_clip))

    def optimiser_step():
        set_lr(step.optimizer, step.lr)
        step.optimizer.step()
        step.optimizer.zero_grad(set_to_none=True)

    run("step", optimiser_step)


@functools.cache
def does_no_work(name: str) -> bool:
    """Whether the aten op ``name`` only makes a view (its schema's outputs alias an input and none is written), an
    empty tensor or reads one number: no kernel of its own."""
    if name in _NO_KERNEL:
        return True
    packet = getattr(torch.ops.aten, name.removeprefix("aten::"), None)
    if packet is None:
        return False
    overloads = packet.overloads()
    schema = getattr(packet, "default" if "default" in overloads else overloads[0])._schema
    returns = schema.returns
    return bool(returns) and all(r.alias_info is not None and not r.alias_info.is_write for r in returns)


def does_work_inside(event) -> bool:
    return any(c.name.startswith("aten::") and (not does_no_work(c.name) or does_work_inside(c))
               for c in event.cpu_children)


def innermost_work(event) -> bool:
    """A CPU kernel: an op that does work (:func:`does_no_work`) and calls no op that does (``aten::linear`` runs
    its ``addmm``; the fused AdamW's reads of the step count do not hide its own loop)."""
    return not does_no_work(event.name) and not does_work_inside(event)


def count_events(events, cuda: bool) -> dict:
    """The figures of one part's profiler ``events`` (see the module docstring)."""
    aten = [e for e in events if e.device_type == DeviceType.CPU and e.name.startswith("aten::")]
    called = [e for e in aten if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
    if not cuda:
        return {"kernels": sum(innermost_work(e) for e in aten), "ops": len(called)}
    kinds = [device_kind(e) for e in events if e.device_type == DeviceType.CUDA]
    return {"kernels": kinds.count("kernels"), "copies": kinds.count("copies"),
            "syncs": sum(e.name == "cudaStreamSynchronize" for e in events), "ops": len(called)}


def device_kind(event) -> str | None:
    """``kernels`` or ``copies`` (memcpy and memset) for a GPU event, None for the rest (the ranges' annotations)."""
    kind = getattr(event, "activity_type", None)
    if kind:
        return {"kernel": "kernels", "gpu_memcpy": "copies", "gpu_memset": "copies"}.get(kind)
    if event.is_user_annotation:  # a torch whose events carry no activity_type: tell copies by their names
        return None
    return "copies" if event.name.startswith(("Memcpy", "Memset")) else "kernels"


def profile_step(step: Step, items: torch.Tensor, bf16: bool) -> dict:
    """{part: figures} of one step, each part profiled alone; ``total`` sums them."""
    cuda = items.device.type == "cuda" or next(step.model.parameters()).is_cuda
    activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if cuda else [])]
    figures: dict = {}

    def measure(name: str, fn: Callable):
        with profile(activities=activities) as prof:
            with record_function(name):
                out = fn()
            if cuda:
                torch.cuda.synchronize()  # the part's kernels finish inside the profile (a device sync, not counted)
        figures[name] = count_events(prof.events(), cuda)
        return out

    run_parts(step, items, bf16, measure)
    figures["total"] = {key: sum(f[key] for f in figures.values()) for key in next(iter(figures.values()))}
    return figures


def measure_stage(stage: str, batch: int, device: torch.device, bf16: bool, overrides: list[str]) -> dict:
    torch.manual_seed(0)
    step = build_step(stage, batch, device, overrides)
    items = torch.arange(batch)
    for _ in range(2):  # AdamW's state, the allocator, thread pools and cuDNN choices settle
        run_parts(step, items, bf16)
    return profile_step(step, items, bf16)


def table(results: dict, batches: list[int]) -> str:
    """A markdown table per stage: kernels per part at each batch size."""
    parts = [p for p in (*PARTS, "total") if any(p in r for by in results.values() for r in by.values())]
    lines = ["| stage | batch | " + " | ".join(parts) + " |", "| --- | ---: |" + " ---: |" * len(parts)]
    for stage, by_batch in results.items():
        for batch in batches:
            figures = by_batch[str(batch)]
            lines.append(f"| {stage} | {batch} | "
                         + " | ".join(str(figures[p]["kernels"]) if p in figures else "-" for p in parts) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="8,64", help="two (or more) batch sizes, comma-separated")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"some of {','.join(STAGES)}")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="the forward pass under bf16 autocast")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE for every stage's config")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    stages = args.stages.split(",")
    if unknown := set(stages) - set(STAGES):
        parser.error(f"unknown stages {sorted(unknown)}: choose from {','.join(STAGES)}")
    device = torch.device(args.device)
    results = {stage: {str(b): measure_stage(stage, b, device, args.bf16, args.overrides) for b in batches}
               for stage in stages}
    counted = "CUDA kernels" if device.type == "cuda" else "CPU kernels (innermost aten ops doing work)"
    print(f"{counted} per training step, {device}, torch {torch.__version__}"
          + (", bf16" if args.bf16 else "") + (f", {' '.join(args.overrides)}" if args.overrides else ""))
    print(table(results, batches))
    grows = [f"{s} {p}" for s, by in results.items() for p in PARTS
             if p in by[str(batches[0])] and len({by[str(b)][p]["kernels"] for b in batches}) > 1]
    print("kernel counts that change with the batch: " + (", ".join(grows) if grows else "none"))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"device": str(device), "torch": torch.__version__, "bf16": args.bf16,
                                        "overrides": args.overrides, "batches": batches, "stages": results},
                                       indent=2) + "\n")


if __name__ == "__main__":
    main()
