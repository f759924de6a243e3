"""Training throughput of the SimMIM pretraining step: simseg vs Hugging Face transformers' ViTForMaskedImageModeling
(same architecture, same batch, same optimiser), plus this machine's fp32 matrix-multiply rate as a roofline.

    pip install -e '.[bench]' && python benchmarks/pretrain_throughput.py [--batch 64] [--steps 10] [--rounds 3]

The two models are timed in alternating rounds so that a busy machine slows both alike; each figure is the median
over rounds. Step FLOPs are counted by torch's FlopCounterMode (forward + backward of one step).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from simseg.config import ModelConfig
from simseg.masking import random_unit_mask
from simseg.optim import build_adamw
from simseg.simmim import SimMIM
from simseg.vit import build_encoder


def simseg_step(batch: int):
    model = SimMIM(build_encoder(ModelConfig()))
    optimizer = build_adamw(model, 1e-4, 0.05)
    images = torch.randn(batch, 3, 128, 128)
    mask = random_unit_mask(batch, 128, 16, 16, 0.5, torch.Generator().manual_seed(0))

    def step():
        loss = model(images=images, mask=mask)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def hf_step(batch: int):
    from transformers import ViTConfig, ViTForMaskedImageModeling

    config = ViTConfig(image_size=128, patch_size=16, hidden_size=128, num_hidden_layers=12, num_attention_heads=8,
                       intermediate_size=512, encoder_stride=16, layer_norm_eps=1e-6, qkv_bias=True)
    model = ViTForMaskedImageModeling(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    images = torch.randn(batch, 3, 128, 128)
    mask = random_unit_mask(batch, 128, 16, 16, 0.5, torch.Generator().manual_seed(0)).flatten(1)

    def step():
        loss = model(pixel_values=images, bool_masked_pos=mask).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def images_per_second(step, batch: int, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def sgemm_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def step_gflop_per_image(step, batch: int) -> float:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / batch / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    steps = {"simseg": simseg_step(args.batch), "transformers": hf_step(args.batch)}
    for step in steps.values():  # warm-up: allocator, thread pools, first-call overheads
        for _ in range(2):
            step()
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            rates[name].append(images_per_second(step, args.batch, args.steps))
    ours, peer = statistics.median(rates["simseg"]), statistics.median(rates["transformers"])
    gflop = step_gflop_per_image(steps["simseg"], args.batch)
    sgemm = sgemm_gflops()
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, batch {args.batch}, {args.rounds} rounds x {args.steps} steps")
    def rounds(name: str) -> str:
        return ", ".join(f"{r:.1f}" for r in rates[name])

    print(f"simseg SimMIM step:                 {ours:8.1f} images/s  (rounds: {rounds('simseg')})")
    print(f"transformers ViTForMaskedImageModeling: {peer:6.1f} images/s  (rounds: {rounds('transformers')})")
    print(f"ratio simseg / transformers:        {ours / peer:8.2f}x")
    print(f"step cost (FlopCounterMode):        {gflop:8.3f} GFLOP per image (forward + backward)")
    print(f"achieved:                           {ours * gflop:8.1f} GFLOP/s")
    print(f"fp32 sgemm 2048^3:                  {sgemm:8.1f} GFLOP/s")
    print(f"fraction of sgemm rate:             {ours * gflop / sgemm:8.1%}")


if __name__ == "__main__":
    main()
