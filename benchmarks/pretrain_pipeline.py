"""End-to-end pretraining throughput (data loading included) against the step alone, and each run's peak memory.

    python benchmarks/pretrain_pipeline.py [--data ../shared/data/imagenet-subset/train] [--images 2048] [--batch 64]

In one run, on the same images, model, batch and thread count:
  step only      the training step (mask, forward, backward, clipping, AdamW) on batches already in memory;
  per_image      `simseg pretrain` with PIL transforms in DataLoader workers (the path for plain image folders);
  batched        `simseg pretrain` on a uint8 cache (`simseg data cache`) with batched augmentation on the device.
Each stage figure is the training loop's own images/s (metrics.jsonl), so model set-up and the validation pass are
not counted, but data loading is. Peak memory: the stage's metrics.json (process peak RSS on the CPU, allocated
CUDA memory on a GPU), measured in a fresh process per stage. Without --data (or when it is missing) the images
are synthetic.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from simseg.cache import build_cache
from simseg.config import DataConfig, ModelConfig
from simseg.data import open_image_source
from simseg.masking import random_unit_mask
from simseg.optim import build_adamw
from simseg.simmim import SimMIM
from simseg.vit import build_encoder

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-subset" / "train"


class FirstImages:
    """The first ``count`` images of a source (what the stage's data.subset would not give: a fixed set)."""

    def __init__(self, source, count: int):
        self.source, self.count, self.name = source, min(count, len(source)), f"{source.name}[:{count}]"

    def __len__(self) -> int:
        return self.count

    def image(self, index: int):
        return self.source.image(index)


def step_only(images: int, batch: int, device: str) -> float:
    """images/s of the bare training step on one fixed batch, over ``images`` images."""
    model = SimMIM(build_encoder(ModelConfig())).to(device)
    optimizer = build_adamw(model, 1e-4, 0.05, fused=device == "cuda")
    pixels = torch.randn(batch, 3, 128, 128, device=device)
    generator = torch.Generator(device).manual_seed(0)

    def step():
        mask = random_unit_mask(batch, 128, 16, 16, 0.5, generator)
        loss = model(images=pixels, mask=mask)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    steps = max(1, images // batch)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def stage(source: str, pipeline: str, out: Path, args) -> dict:
    """One epoch of `simseg pretrain` in a fresh process; its loop's images/s and peak memory."""
    command = [sys.executable, "-m", "simseg.cli", "pretrain", f"data.source={source}", f"data.pipeline={pipeline}",
               f"data.num_workers={args.workers}", f"train.batch_size={args.batch}", "train.epochs=1",
               "data.val_size=8", "log.progress=false", "log.grid_every=0", f"output_dir={out}"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    epoch = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    metrics = json.loads((out / "metrics.json").read_text())
    return {"images_per_s": epoch["images_per_s"], "peak_memory_mib": metrics["peak_memory_mib"],
            "images": metrics["train_images"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA),
                        help="an image folder (default: the shared ImageNet subset)")
    parser.add_argument("--images", type=int, default=2048, help="training images per run")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="loader workers of the per-image path")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = args.data if Path(args.data).exists() else "synthetic"
    work = Path(tempfile.mkdtemp(prefix="simseg-bench-"))
    # The per-image run reads a folder of the same images the cache holds: the first --images + 8 held out.
    source = FirstImages(open_image_source(DataConfig(source=data, synthetic_size=args.images + 8), "pretrain"),
                         args.images + 8)
    folder = work / "images" / "all"
    folder.mkdir(parents=True)
    for i in range(len(source)):
        source.image(i).save(folder / f"{i:06d}.png")
    start = time.perf_counter()
    build_cache(source, work / "cache", size=144, workers=args.workers, progress=False)
    cache_seconds = time.perf_counter() - start

    step = step_only(args.images, args.batch, device)
    runs = {pipeline: stage(str(where), pipeline, work / pipeline, args)
            for pipeline, where in (("per_image", work / "images"), ("batched", work / "cache"))}

    print(f"machine: {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; {data}: "
          f"{args.images} training images at batch {args.batch}; per-image loader with {args.workers} workers")
    print(f"cache build ({len(source)} images at 144 px):  {cache_seconds:7.1f} s")
    print(f"step only:                          {step:7.1f} images/s")
    for name, run in runs.items():
        print(f"end to end, {name + ':':<24}{run['images_per_s']:7.1f} images/s = {run['images_per_s'] / step:6.1%} "
              f"of step only; peak memory {run['peak_memory_mib']:,.0f} MiB")


if __name__ == "__main__":
    main()
