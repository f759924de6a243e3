"""End-to-end throughput of the labelled stages (classify, segment), data loading included, against their training
step alone, and each stage's peak memory at its default batch size.

    python benchmarks/labelled_pipelines.py [--images 1024] [--workers 2] [--epochs 2] [--pipelines batched,per_image]

In one run, per stage, on the same model, batch and thread count:
  step only    the stage's own model (``build_model`` of stages/classify.py or stages/segment.py) trained on one
               batch already in memory: forward, loss (MixUp targets for classify), backward, clipping, AdamW;
  end to end   `simseg classify` / `simseg segment` in a fresh process on real images (Intel scenes, Oxford-IIIT
               Pet beside the checkout in ../shared/data, else synthetic ones), once per data path: ``batched``
               (the stages' default for data that fits in memory: decoded once into a cache, gathered and augmented
               as one batch) and ``per_image`` (PIL decoding and augmentation in the loader); the figure is the
               training loop's images/s of the last epoch (metrics.jsonl), so start-up (the cache's decoding
               included) and evaluation are not counted but data loading and augmentation are.
Peak memory is the stage's metrics.json (process peak RSS on the CPU, allocated CUDA memory on a GPU).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # stages/ is importable from a source checkout
from pretrain_pipeline import timed_images_per_second  # noqa: E402 (this folder, as a script's own)

from simseg.config.classify import ClassifyConfig  # noqa: E402
from simseg.config.sections import default_num_workers  # noqa: E402
from simseg.config.segment import SegmentConfig  # noqa: E402
from simseg.models.classifier import build_mixup, mix_batch  # noqa: E402
from simseg.training.optim import build_adamw  # noqa: E402
from stages import classify as classify_stage  # noqa: E402
from stages import segment as segment_stage  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA = {"classify": SHARED / "intel-image-classification", "segment": SHARED / "oxford-iiit-pet"}


def classify_step(batch: int, device: str):
    """One training step of the classify stage (default config, 6 classes) on a fixed batch."""
    cfg = ClassifyConfig()
    model = classify_stage.build_model(cfg, 6)[0].to(device).train()
    mixup = build_mixup(cfg.mixup, cfg.train.label_smoothing, 6)
    images = torch.randn(batch, 3, cfg.model.img_size, cfg.model.img_size, device=device)
    labels = torch.randint(0, 6, (batch,), device=device)

    def inputs():
        mixed, targets = mix_batch(mixup, images, labels, 6, cfg.train.label_smoothing)
        return {"images": mixed, "targets": targets}
    return model, inputs, cfg.train


def segment_step(batch: int, device: str):
    """One training step of the segment stage (default config, 3 trimap classes) on a fixed batch."""
    cfg = SegmentConfig()
    model = segment_stage.build_model(cfg, 3)[0].to(device).train()
    size = cfg.model.img_size
    images = torch.randn(batch, 3, size, size, device=device)
    masks = torch.randint(0, 3, (batch, size, size), device=device)
    return model, lambda: {"images": images, "mask": masks}, cfg.train


def step_only(make, batch: int, images: int, device: str, bf16: bool = False) -> float:
    model, inputs, train_cfg = make(batch, device)
    optimizer = build_adamw(model, train_cfg.lr, train_cfg.weight_decay, getattr(train_cfg, "layer_decay", 1.0))

    def step():
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = model(**inputs())["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return timed_images_per_second(step, batch, images, device)


def workers_of(args) -> int:
    """--workers, else the stages' own default for this machine."""
    return default_num_workers() if args.workers is None else args.workers


def end_to_end(name: str, source: str, args, out: Path, pipeline: str) -> dict:
    """`simseg NAME` for --epochs epochs on --images training images in a fresh process: the last epoch's images/s
    and the run's peak memory."""
    command = [sys.executable, "-m", "simseg.cli", name, f"data.source={source}", f"data.subset={args.images}",
               "data.test_size=64", f"data.pipeline={pipeline}", f"train.batch_size={args.batch_of[name]}",
               f"train.mixed_precision={'bf16' if args.bf16 else 'no'}",
               f"data.num_workers={workers_of(args)}", f"train.epochs={args.epochs}", "eval.every=0",
               "log.progress=false", f"output_dir={out}"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    last_epoch = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    metrics = json.loads((out / "metrics.json").read_text())
    return {"images_per_s": last_epoch["images_per_s"], "peak_memory_mib": metrics["peak_memory_mib"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1024, help="training images per stage run")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per stage run (the last one is reported)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers; default: the stages' own for this machine (data.num_workers=null)")
    parser.add_argument("--data", default=str(SHARED),
                        help="folder holding intel-image-classification/ and oxford-iiit-pet/; 'synthetic' (or a "
                             "folder without them) times the built-in images, of which any number can be drawn")
    parser.add_argument("--stages", default="classify,segment", help="which stages to time")
    parser.add_argument("--pipelines", default="batched,per_image", help="data paths to time (data.pipeline values)")
    parser.add_argument("--batch", type=int, default=None, help="batch size of both stages (default: each stage's)")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=torch.cuda.is_available(),
                        help="train.mixed_precision=bf16 and a bf16 step only (default: on a GPU)")
    args = parser.parse_args()
    data = {name: Path(args.data) / folder.name for name, folder in DATA.items()}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    work = Path(tempfile.mkdtemp(prefix="simseg-bench-"))
    stages = {"classify": (classify_step, args.batch or ClassifyConfig().train.batch_size),
              "segment": (segment_step, args.batch or SegmentConfig().train.batch_size)}
    args.batch_of = {name: batch for name, (_, batch) in stages.items()}
    largest_batch = max(batch for _, batch in stages.values())
    if args.images < largest_batch:
        raise SystemExit(f"--images {args.images} is less than one batch of the stages' default {largest_batch}: "
                         f"give at least {largest_batch}")
    print(f"machine: {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; {args.images} training "
          f"images per stage, {workers_of(args)} loader workers, last of {args.epochs} epochs"
          f"{', bf16' if args.bf16 else ''}")
    for name, (make, batch) in stages.items():
        if name not in args.stages.split(","):
            continue
        source = str(data[name]) if data[name].exists() else "synthetic"
        # Step-only timed just before and just after the stage runs: a noisy machine drifts within minutes.
        before = step_only(make, batch, args.images, device, args.bf16)
        runs = {p: end_to_end(name, source, args, work / f"{name}-{p}", p) for p in args.pipelines.split(",")}
        after = step_only(make, batch, args.images, device, args.bf16)
        step = (before + after) / 2
        print(f"{name} (batch {batch}, {Path(source).name}):")
        print(f"  step only:            {step:7.1f} images/s (before {before:.1f}, after {after:.1f})")
        for pipeline, run in runs.items():
            print(f"  end to end {pipeline + ':':10s} {run['images_per_s']:7.1f} images/s = "
                  f"{run['images_per_s'] / step:6.1%} of step only; peak memory {run['peak_memory_mib']:,.0f} MiB")


if __name__ == "__main__":
    main()
