"""End-to-end pretraining throughput (data loading included) against the step alone, and each run's peak memory.

    python benchmarks/pretrain_pipeline.py [--data ../shared/data/imagenet-subset/train] [--images 2048] [--batch 64]
    # the GPU fast path at scale: bf16, compiled, a cache of random images kept on the GPU, model FLOP utilisation
    python benchmarks/pretrain_pipeline.py --noise-images 200000 --batch 1024 --epochs 3 --pipelines batched \
        --compile --workers 16

In one run, on the same images, model, batch and thread count:
  step only      the training step (mask, forward, backward, clipping, AdamW) on batches already in memory;
  default        `simseg pretrain` on the image folder with every data setting at its default (data.pipeline=auto: a
                 folder that fits in memory is decoded once into an automatic cache and augmented in batches);
  per_image      `simseg pretrain` with PIL transforms in DataLoader workers (data.pipeline=per_image);
  batched        `simseg pretrain` on an image cache (`simseg data cache`) with batched augmentation on the device.
Each stage figure is the training loop's own images/s (metrics.jsonl), so model set-up and the validation pass are
not counted, but data loading is. Peak memory: the stage's metrics.json (process peak RSS on the CPU, allocated
CUDA memory on a GPU), measured in a fresh process per stage. Without --data (or when it is missing) the images
are synthetic; --noise-images N uses N random-pixel images instead (as fast to augment as real ones, and cheap to
make at GPU scale). Model FLOP utilisation (MFU) is the step's FLOPs (torch's FlopCounterMode, forward + backward) x
images/s over the device's peak: dense bf16 tensor-core TFLOP/s for known GPUs or --peak-tflops, and on the CPU
this machine's measured fp32 sgemm rate.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from simseg.config.pretrain import PretrainDataConfig
from simseg.config.sections import ModelConfig, default_num_workers
from simseg.data.cache_build import build_cache
from simseg.data.image_cache import CacheSpec, cache_side
from simseg.data.sources import digest
from simseg.data.unlabelled import open_image_source
from simseg.models.masking import random_unit_mask
from simseg.models.simmim import SimMIM
from simseg.models.vit import build_encoder
from simseg.training.optim import build_adamw

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-subset" / "train"
# Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendor's data sheets, matched against the device name.
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "A100": 312.0}


class NoiseImages:
    """``count`` random-pixel RGB images of ``size`` x ``size``, image i from seed i (an ImageSource)."""

    def __init__(self, count: int, size: int = 144):
        self.count, self.size, self.name = count, size, f"noise[{count}]"

    def __len__(self) -> int:
        return self.count

    def image(self, index: int) -> Image.Image:
        pixels = np.random.default_rng(index).integers(0, 256, (self.size, self.size, 3), dtype=np.uint8)
        return Image.fromarray(pixels)

    def fingerprint(self) -> str:
        return digest("noise", self.count, self.size)


class FirstImages:
    """The first ``count`` images of a source (what the stage's data.subset would not give: a fixed set)."""

    def __init__(self, source, count: int):
        self.source, self.count, self.name = source, min(count, len(source)), f"{source.name}[:{count}]"

    def __len__(self) -> int:
        return self.count

    def image(self, index: int):
        return self.source.image(index)

    def fingerprint(self) -> str:
        return digest(self.source.fingerprint(), self.count)


def step_flops_per_image() -> float:
    """FLOPs of one training step (forward + backward) per image, counted by torch on a batch of 2."""
    model = SimMIM(build_encoder(ModelConfig()))
    mask = random_unit_mask(2, 128, 16, 16, 0.5, torch.Generator().manual_seed(0))
    with FlopCounterMode(display=False) as counter:
        model(images=torch.randn(2, 3, 128, 128), mask=mask)["loss"].backward()
    return counter.get_total_flops() / 2


def peak_flops(device: str, override_tflops: float | None) -> tuple[float, str]:
    """The device's peak FLOP/s and what it is: --peak-tflops, a known GPU's bf16 peak, or the measured sgemm rate."""
    if override_tflops:
        return override_tflops * 1e12, "--peak-tflops"
    if device == "cuda":
        name = torch.cuda.get_device_name()
        for key, tflops in PEAK_BF16_TFLOPS.items():  # "H100 PCIe" is listed before "H100"
            if key in name:
                return tflops * 1e12, f"{name} dense bf16 peak"
        raise SystemExit(f"no known peak for {name}: pass --peak-tflops (dense bf16 TFLOP/s of this GPU)")
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start = time.perf_counter()
    for _ in range(5):
        a @ b
    return 5 * 2 * 2048**3 / (time.perf_counter() - start), "this CPU's fp32 sgemm rate (2048^3)"


def step_only(images: int, batch: int, device: str, bf16: bool = False, compile: bool = False) -> float:
    """images/s of the bare training step on one fixed batch, over ``images`` images, with the stage's
    mixed precision and compilation."""
    model = SimMIM(build_encoder(ModelConfig()), masked_patches=32).to(device)  # as the stage builds it
    optimizer = build_adamw(model, 1e-4, 0.05)
    forward = torch.compile(model) if compile else model
    pixels = torch.randn(batch, 3, 128, 128, device=device)
    generator = torch.Generator(device).manual_seed(0)

    def step():
        mask = random_unit_mask(batch, 128, 16, 16, 0.5, generator)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = forward(images=pixels, mask=mask)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return timed_images_per_second(step, batch, images, device)


def timed_images_per_second(step, batch: int, images: int, device: str, warmup: int = 3) -> float:
    """images/s of ``step()`` (one batch of ``batch``) over ``images`` images, after ``warmup`` untimed steps
    (allocator, thread pools, compilation); the device is synchronised around the timed steps."""
    for _ in range(warmup):
        step()
    steps = max(1, images // batch)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps * batch / (time.perf_counter() - start)


def workers_of(args) -> int:
    """--workers, else the stage's own default for this machine."""
    return default_num_workers() if args.workers is None else args.workers


def stage(source: str, pipeline: str, out: Path, args) -> dict:
    """--epochs epochs of `simseg pretrain` in a fresh process; the last epoch's images/s and the peak memory."""
    data_keys = [] if pipeline == "default" else [f"data.pipeline={pipeline}", f"data.num_workers={workers_of(args)}"]
    command = [sys.executable, "-m", "simseg.cli", "pretrain", f"data.source={source}", *data_keys,
               f"train.batch_size={args.batch}", f"train.epochs={args.epochs}",
               f"train.mixed_precision={'bf16' if args.bf16 else 'no'}", f"train.compile={str(args.compile).lower()}",
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
    parser.add_argument("--workers", type=int, default=None,
                        help="loader workers of the per-image path (and of the cache build); default: the stage's "
                             "default for this machine (data.num_workers=null)")
    parser.add_argument("--noise-images", type=int, default=0,
                        help="use this many random-pixel images instead of --data (GPU scale)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per stage run; the last one is reported")
    parser.add_argument("--pipelines", default="default,per_image,batched", help="which stage paths to run")
    parser.add_argument("--compile", action="store_true", help="train.compile=true, and a compiled step only")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=torch.cuda.is_available(),
                        help="train.mixed_precision=bf16 and a bf16 step only (default: on a GPU)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak, for MFU")
    args = parser.parse_args()
    pipelines = [p.strip() for p in args.pipelines.split(",")]
    unknown = set(pipelines) - {"default", "per_image", "batched"}
    if unknown:
        raise SystemExit(f"--pipelines: unknown {sorted(unknown)}; choose from default, per_image, batched")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    work = Path(tempfile.mkdtemp(prefix="simseg-bench-"))
    # Training images plus 8 held out (the stage's data.val_size): the cache and the per-image folder hold the same.
    if args.noise_images:
        data, source = "random pixels", NoiseImages(args.noise_images + 8)
    else:
        data = args.data if Path(args.data).exists() else "synthetic"
        data_cfg = PretrainDataConfig(source=data, synthetic_size=args.images + 8)
        source = FirstImages(open_image_source(data_cfg, "pretrain"), args.images + 8)
    if {"per_image", "default"} & set(pipelines):
        folder = work / "images" / "all"
        folder.mkdir(parents=True)
        for i in range(len(source)):
            source.image(i).save(folder / f"{i:06d}.png")
    start = time.perf_counter()
    build_cache(source, work / "cache", CacheSpec(cache_side(128)), workers=workers_of(args), progress=False)
    cache_seconds = time.perf_counter() - start

    step = step_only(len(source) - 8, args.batch, device, args.bf16, args.compile)
    where = {"default": work / "images", "per_image": work / "images", "batched": work / "cache"}
    runs = {pipeline: stage(str(where[pipeline]), pipeline, work / pipeline, args) for pipeline in pipelines}
    flops = step_flops_per_image()
    peak, peak_name = peak_flops(device, args.peak_tflops)

    name = torch.cuda.get_device_name() if device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"machine: {name}, torch {torch.__version__}; {data}: {len(source) - 8} training images at batch "
          f"{args.batch}, {'bf16' if args.bf16 else 'fp32'}{', compiled' if args.compile else ''}, last of "
          f"{args.epochs} epoch(s); per-image loader with {workers_of(args)} workers")
    print(f"cache build ({len(source)} images at {cache_side(128)} px):  {cache_seconds:7.1f} s")
    print(f"step only:                          {step:7.1f} images/s; MFU {step * flops / peak:.1%} "
          f"({flops / 1e9:.3f} GFLOP per image; peak {peak / 1e9:,.0f} GFLOP/s = {peak_name})")
    for pipeline, run in runs.items():
        print(f"end to end, {pipeline + ':':<24}{run['images_per_s']:7.1f} images/s = "
              f"{run['images_per_s'] / step:6.1%} of step only, MFU {run['images_per_s'] * flops / peak:.1%}; "
              f"peak memory {run['peak_memory_mib']:,.0f} MiB")


if __name__ == "__main__":
    main()
