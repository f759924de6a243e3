"""What ``train.compile=true`` costs and gives, per stage: seconds to compile the training step with an empty cache
folder and again from that folder in a new process, the compiled step against the eager one, and the recompiles.

    python benchmarks/compile_time.py [--stages simmim,mae,segment,classify] [--batch 16] [--steps 10]
                                      [--warmup 3] [--mixed-precision no] [--out compile_time.json]
    python benchmarks/compile_time.py --smoke --out /tmp/compile_time.json   # a tiny model: proves it runs

Each stage is measured in three fresh processes, one after the other: eager; compiled with an empty cache folder
(cold: Dynamo traces, inductor builds every kernel); compiled again on that folder (cached: Dynamo traces again,
the FX graph and AOTAutograd caches give back the kernels). Each process builds the stage's model, optimiser and
Accelerator as the stage does (:func:`simseg.training.engine.make_accelerator`: the same backend, static shapes and
cache folder), makes one fixed training batch through the batched augmentation (the stage's layout and dtypes;
pretraining draws a new mask every step) and takes the step of :func:`~simseg.training.engine.train_one_epoch`
(forward, backward, clipping, AdamW), each timed to a device sync. compile s = the first step's seconds minus the
median step's. After the timed steps it runs the stage's evaluation (:func:`~simseg.training.engine.evaluate` or
:func:`~simseg.training.engine.evaluate_confusion`) on two batches, the second short, then trains on: recompiles
counts the guards torch found failing over the whole process (0 is the design). Defaults: the study's model at the
stage's image size, batch 16 on a CPU (configs/pretrain_cpu.yaml) or the stage's default on a GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # stages/ is importable from a source checkout

STAGES = ("simmim", "mae", "segment", "classify")
SMOKE = ["model.depth=1", "model.img_size=32", "model.patch_size=8"]
NUM_CLASSES = {"segment": 3, "classify": 6}


def stage_config(stage: str, overrides: list[str]):
    """The stage's config with ``overrides`` (``method=`` for the pretraining methods)."""
    from simseg.config.classify import ClassifyConfig
    from simseg.config.loader import load_config
    from simseg.config.pretrain import PretrainConfig
    from simseg.config.segment import SegmentConfig

    if stage in ("simmim", "mae"):
        return load_config(PretrainConfig, None, [f"method={stage}", *overrides])
    return load_config({"segment": SegmentConfig, "classify": ClassifyConfig}[stage], None, overrides)


def stage_model(stage: str, cfg) -> torch.nn.Module:
    """The model the stage trains, built by the stage's own code."""
    if stage in ("simmim", "mae"):
        from simseg.models.pretraining import pretrainer_for_config
        return pretrainer_for_config(cfg)
    from stages import classify, segment
    return {"segment": segment, "classify": classify}[stage].build_model(cfg, NUM_CLASSES[stage])[0]


def batch_maker(stage: str, cfg, batch: int, device: torch.device):
    """``make(generator)`` -> one training batch's model inputs, as the stage's ``make_inputs`` gives them: a fixed
    batch of random images through the batched augmentation (eager), a new mask per call for pretraining."""
    from simseg.data.batch_augment import BatchAugment
    from simseg.models.classifier import build_mixup, mix_batch
    from simseg.models.masking import random_unit_mask
    from simseg.models.segmentation_mixing import mix_segmentation_batch

    img, seed = cfg.model.img_size, torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (batch, 3, img, img), dtype=torch.uint8, generator=seed).to(device)
    sides = torch.full((batch,), img)
    masks = torch.randint(0, NUM_CLASSES["segment"], (batch, img, img), generator=seed).to(device)
    augment = BatchAugment.from_aug_config(cfg.aug, img)
    images, masks = augment(pixels, sides, sides, masks if stage == "segment" else None, generator=seed)
    if stage in ("simmim", "mae"):
        def make(generator):
            mask = random_unit_mask(batch, img, cfg.model.patch_size, cfg.mask.unit, cfg.mask.ratio, generator)
            return {"images": images, "mask": mask}
    elif stage == "segment":
        def make(generator):
            if not cfg.mixup.enabled:
                return {"images": images, "mask": masks}
            mix = cfg.mixup
            mixed, targets = mix_segmentation_batch(images, masks, NUM_CLASSES[stage], mix.alpha, mix.cutmix_alpha,
                                                    mix.prob, mix.switch_prob)
            return {"images": mixed, "mask": targets}
    else:
        labels = torch.arange(batch, device=device) % NUM_CLASSES[stage]
        mixup = build_mixup(cfg.mixup, cfg.train.label_smoothing, NUM_CLASSES[stage])

        def make(generator):
            mixed, targets = mix_batch(mixup, images, labels, NUM_CLASSES[stage], cfg.train.label_smoothing)
            return {"images": mixed, "targets": targets}
    return make, images, masks


def evaluate_once(stage: str, model, accelerator, make, images, masks) -> None:
    """The stage's evaluation on two batches, the second half as long: eager by design, so it must not compile."""
    from simseg.training.engine import evaluate, evaluate_confusion

    half = len(images) // 2
    if stage in ("simmim", "mae"):
        inputs = make(torch.Generator(images.device).manual_seed(1))
        batches = [(inputs["images"], inputs["mask"]), (inputs["images"][:half], inputs["mask"][:half])]
        evaluate(model, batches, accelerator, lambda batch: {"images": batch[0], "mask": batch[1]})
    else:
        targets = masks if stage == "segment" else torch.arange(len(images), device=images.device) % NUM_CLASSES[stage]
        evaluate_confusion(model, [(images, targets), (images[:half], targets[:half])], accelerator,
                           NUM_CLASSES[stage])


def child(stage: str, compiled: bool, cache_dir: str, args) -> dict:
    """One process's measurement (see the module's docstring)."""
    import torch._dynamo.utils as dynamo_utils

    from simseg.training.engine import make_accelerator
    from simseg.training.optim import build_adamw

    with tempfile.TemporaryDirectory() as scratch:
        smoke = [*SMOKE, *(["mask.unit=8"] if stage in ("simmim", "mae") else [])] if args.smoke else []
        overrides = [*smoke, f"train.compile={str(compiled).lower()}", f"train.compile_cache_dir={cache_dir}",
                     f"train.mixed_precision={args.mixed_precision}", f"output_dir={scratch}/run"]
        cfg = stage_config(stage, overrides)
        accelerator = make_accelerator(cfg)
        device = accelerator.device
        batch = args.batch or (16 if device.type == "cpu" else cfg.train.batch_size)
        model = stage_model(stage, cfg)
        layer_decay = getattr(cfg.train, "layer_decay", 1.0)  # the segment stage's key; 1 = off
        optimizer = build_adamw(model, cfg.train.lr, cfg.train.weight_decay, layer_decay)
        model, optimizer = accelerator.prepare(model, optimizer)
        model.train()
        make, images, masks = batch_maker(stage, cfg, batch, device)
        generator = torch.Generator(device).manual_seed(0)

        def step() -> float:
            """One training step, as train_one_epoch takes it, in seconds to its result on the host."""
            inputs = make(generator)
            start = time.perf_counter()
            loss = model(**inputs)["loss"]
            accelerator.backward(loss)
            if cfg.train.grad_clip > 0:
                accelerator.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss.item()  # waits for the device
            return time.perf_counter() - start

        first = step()
        for _ in range(args.warmup):
            step()
        steps = [step() for _ in range(args.steps)]
        evaluate_once(stage, model, accelerator, make, images, masks)
        model.train()
        for _ in range(2):
            step()
        metrics = dynamo_utils.get_compilation_metrics()
        median = statistics.median(steps)
        return {
            "stage": stage, "compiled": compiled, "batch": batch, "img_size": cfg.model.img_size,
            "first_step_s": first, "compile_s": first - median if compiled else None, "median_step_s": median,
            "recompiles": [m.recompile_reason for m in metrics if m.recompile_reason],
            "graphs": dynamo_utils.counters["stats"].get("unique_graphs", 0),
            "fx_cache_hits": sum(m.inductor_fx_local_cache_hit_count or 0 for m in metrics),
            "fx_cache_misses": sum(m.inductor_fx_local_cache_miss_count or 0 for m in metrics),
            "aot_cache_hits": sum(m.aotautograd_local_cache_hit_count or 0 for m in metrics),
        }


def in_new_process(stage: str, compiled: bool, cache_dir: str, args) -> dict:
    """:func:`child` in a fresh Python process (its result is the last line it prints)."""
    command = [sys.executable, __file__, "--child", stage, "--compiled" if compiled else "--eager",
               "--cache-dir", cache_dir, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--mixed-precision", args.mixed_precision, *(["--batch", str(args.batch)] if args.batch else []),
               *(["--smoke"] if args.smoke else [])]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{stage} ({'compiled' if compiled else 'eager'}) failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def sitting(args) -> dict:
    """Every stage: eager, compiled cold, compiled from the cache; and the machine they ran on."""
    results = {}
    with tempfile.TemporaryDirectory() as caches:
        for stage in args.stages:
            cache_dir = str(Path(caches) / stage)  # empty: nothing of another stage or an earlier sitting
            eager = in_new_process(stage, False, cache_dir, args)
            cold = in_new_process(stage, True, cache_dir, args)
            cached = in_new_process(stage, True, cache_dir, args)
            results[stage] = {"eager": eager, "cold": cold, "cached": cached}
            print(f"  {stage}: done", file=sys.stderr)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {"machine": {"device": device, "threads": torch.get_num_threads(), "torch": torch.__version__},
            "settings": {"steps": args.steps, "warmup": args.warmup, "batch": args.batch or "stage default",
                         "mixed_precision": args.mixed_precision, "smoke": args.smoke},
            "stages": results}


def table(report: dict) -> str:
    """The sitting as a text table: one row per stage."""
    machine, settings = report["machine"], report["settings"]
    rows = [f"machine: {machine['device']}, {machine['threads']} threads, torch {machine['torch']}; median of "
            f"{settings['steps']} steps after {settings['warmup']} warm-up, mixed precision "
            f"{settings['mixed_precision']}",
            f"{'stage':9s} {'batch':>5s} {'img':>4s} {'cold s':>7s} {'cached s':>8s} {'eager ms':>9s} "
            f"{'compiled ms':>11s} {'speed-up':>8s} {'recompiles':>10s}  cache hits (fx, aot)"]
    for stage, r in report["stages"].items():
        eager, cold, cached = r["eager"], r["cold"], r["cached"]
        recompiles = len(cold["recompiles"]) + len(cached["recompiles"])
        lookups = cached["fx_cache_hits"] + cached["fx_cache_misses"]
        speed_up = eager["median_step_s"] / cold["median_step_s"]
        rows.append(f"{stage:9s} {cold['batch']:5d} {cold['img_size']:4d} {cold['compile_s']:7.1f} "
                    f"{cached['compile_s']:8.1f} {eager['median_step_s'] * 1e3:9.1f} "
                    f"{cold['median_step_s'] * 1e3:11.1f} {speed_up:7.2f}x {recompiles:10d}  "
                    f"{cached['fx_cache_hits']}/{lookups}, {cached['aot_cache_hits']}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stages", default=",".join(STAGES), type=lambda s: s.split(","))
    parser.add_argument("--batch", type=int, default=None, help="default: 16 on a CPU, the stage's on a GPU")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per process")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps after the first")
    parser.add_argument("--mixed-precision", default="no", choices=("no", "bf16", "fp16"))
    parser.add_argument("--smoke", action="store_true", help="a 1-block model at 32 px, batch 4, 3 steps")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--child", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--compiled", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--eager", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.compiled, args.cache_dir, args)))
        return
    unknown = sorted(set(args.stages) - set(STAGES))
    if unknown:
        parser.error(f"--stages: unknown {unknown}; choose from {list(STAGES)}")
    if args.smoke:
        args.batch, args.steps, args.warmup = args.batch or 4, min(args.steps, 3), min(args.warmup, 1)
    report = sitting(args)
    print(table(report))
    if args.out:
        from simseg.files import atomic_write_json
        atomic_write_json(args.out, report)
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
