"""Training-step speed of the segmentation models against each other, for comparisons at equal training minutes.

    python benchmarks/model_train_speed.py [--models vit_linear,vit_fused_skip,unet_resnet18] [--batch 16]
                                           [--steps 6] [--rounds 3]

Each round times every model's training step (forward, loss, backward, clipping, AdamW; the segment stage's
``build_model`` and default recipe on a fixed batch at 128 px) one after the other, so a machine that slows down
slows every model alike; the figure is each model's median over rounds, and the ratio is against the first model.
``studies/models.sh`` turns the ratio into the epochs that give a model the training minutes of another.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # stages/ is importable from a source checkout
from pretrain_pipeline import timed_images_per_second  # noqa: E402 (this folder, as a script's own)

from simseg.config.segment import SegmentConfig  # noqa: E402
from simseg.training.optim import build_adamw  # noqa: E402
from stages import segment as segment_stage  # noqa: E402


def step_of(arch: str, batch: int, device: str):
    """A function running one training step of ``arch`` on a fixed batch."""
    cfg = SegmentConfig()
    cfg = replace(cfg, model=replace(cfg.model, arch=arch))
    model = segment_stage.build_model(cfg, 3)[0].to(device).train()
    optimizer = build_adamw(model, cfg.train.lr, cfg.train.weight_decay)
    size = cfg.model.img_size
    images = torch.randn(batch, 3, size, size, device=device)
    masks = torch.randint(0, 3, (batch, size, size), device=device)

    def step():
        loss = model(images=images, mask=masks)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def measure(models: list[str], batch: int, steps: int, rounds: int, device: str) -> dict[str, list[float]]:
    """{model: images/s of each round}; every round times every model, one after the other."""
    step = {arch: step_of(arch, batch, device) for arch in models}
    speeds: dict[str, list[float]] = {arch: [] for arch in models}
    for _ in range(rounds):
        for arch in models:
            speeds[arch].append(timed_images_per_second(step[arch], batch, batch * steps, device))
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vit_linear,vit_fused_skip,unet_resnet18")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per model and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    models = args.models.split(",")
    speeds = measure(models, args.batch, args.steps, args.rounds, device)
    print(f"machine: {device}, {torch.get_num_threads()} threads, torch {torch.__version__}; batch {args.batch}, "
          f"median of {args.rounds} interleaved rounds of {args.steps} steps")
    first = statistics.median(speeds[models[0]])
    for arch in models:
        median = statistics.median(speeds[arch])
        print(f"  {arch:16s} {median:7.1f} images/s  {median / first:5.2f}x {models[0]}  "
              f"(rounds: {', '.join(f'{v:.1f}' for v in speeds[arch])})")


if __name__ == "__main__":
    main()
