"""Training throughput of the SimMIM pretraining step: simseg vs Hugging Face transformers' ViTForMaskedImageModeling
(same architecture, same batch, same optimiser), plus this machine's fp32 matrix-multiply rate as a roofline.

    pip install -e '.[bench]' && python benchmarks/pretrain_throughput.py [--batch 64] [--steps 10] [--rounds 3]
        [--processes 2]

The two models are timed in alternating rounds so that a busy machine slows both alike; each figure is the median
over rounds. Step FLOPs are counted by torch's FlopCounterMode (forward + backward of one step).
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel
from torch.utils.flop_counter import FlopCounterMode

from simseg.config.sections import ModelConfig
from simseg.models.masking import random_unit_mask
from simseg.models.simmim import SimMIM
from simseg.models.vit import build_encoder
from simseg.training.optim import build_adamw


def simseg_step(batch: int, ddp: bool = False, compile: bool = False):
    model = SimMIM(build_encoder(ModelConfig()), masked_patches=32)  # as the stage builds it: 32 of 64 masked
    optimizer = build_adamw(model, 1e-4, 0.05)
    model = DistributedDataParallel(model) if ddp else model
    model = torch.compile(model) if compile else model  # what train.compile=true does (inductor)
    images = torch.randn(batch, 3, 128, 128)
    mask = random_unit_mask(batch, 128, 16, 16, 0.5, torch.Generator().manual_seed(0))

    def step():
        loss = model(images=images, mask=mask)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def hf_step(batch: int, ddp: bool = False):
    from transformers import ViTConfig, ViTForMaskedImageModeling

    config = ViTConfig(image_size=128, patch_size=16, hidden_size=128, num_hidden_layers=12, num_attention_heads=8,
                       intermediate_size=512, encoder_stride=16, layer_norm_eps=1e-6, qkv_bias=True)
    model = ViTForMaskedImageModeling(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    model = DistributedDataParallel(model) if ddp else model
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


STEPS = {"simseg": simseg_step, "transformers": hf_step}


def _ddp_worker(rank: int, world: int, name: str, batch: int, steps: int, port: int, results) -> None:
    """One rank of a data-parallel run: 1 thread, batch // world images, gradients all-reduced over gloo."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    step = STEPS[name](batch // world, ddp=True)
    for _ in range(2):
        step()
    dist.barrier()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    dist.barrier()
    if rank == 0:
        results.put(batch * steps / (time.perf_counter() - start))
    dist.destroy_process_group()


def ddp_images_per_second(name: str, batch: int, steps: int, world: int) -> float:
    """Global images/s of ``world`` 1-thread processes (what ``torchrun --nproc_per_node N`` with OMP_NUM_THREADS=1
    runs), each on its share of the same global batch."""
    context = mp.get_context("spawn")
    results = context.Queue()
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.start_processes(_ddp_worker, args=(world, name, batch, steps, port, results), nprocs=world,
                       start_method="spawn")
    return results.get()


def sgemm_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def model_gemm_gflops(batch: int, repeats: int = 3) -> float:
    """fp32 rate of the step's own matrix multiplies: each linear layer's forward (M, K) @ (K, N) and its two backward
    products, at the paper encoder's shapes (M = batch x 65 tokens; K, N = 128/384/512; patch embedding and the
    masked-token decoder). A roofline for this model's GEMMs, which are far skinnier than a 2048^3 sgemm."""
    tokens, patches, masked = batch * 65, batch * 64, batch * 32
    shapes = 12 * [(tokens, 128, 384), (tokens, 128, 128), (tokens, 128, 512), (tokens, 512, 128)]
    shapes += [(patches, 768, 128), (masked, 128, 768)]
    products = []
    for m, k, n in shapes:  # forward, grad of the input, grad of the weight
        products += [(torch.randn(m, k), torch.randn(k, n)), (torch.randn(m, n), torch.randn(n, k)),
                     (torch.randn(n, m), torch.randn(m, k))]
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in products)
    for a, b in products:
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        for a, b in products:
            a @ b
    return flops * repeats / (time.perf_counter() - start) / 1e9


def step_gflop_per_image(step, batch: int) -> float:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / batch / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true",
                        help="also time simseg's step under torch.compile (train.compile=true) in the same rounds")
    parser.add_argument("--processes", type=int, default=0,
                        help="also time both with this many 1-thread data-parallel processes (gloo), e.g. 2")
    args = parser.parse_args()
    torch.manual_seed(0)
    steps = {"simseg": simseg_step(args.batch), "transformers": hf_step(args.batch)}
    if args.compile:
        steps["simseg compiled"] = simseg_step(args.batch, compile=True)
    for step in steps.values():  # warm-up: allocator, thread pools, first-call overheads, compilation
        for _ in range(3):
            step()
    rates: dict[str, list[float]] = {name: [] for name in steps}
    sgemm_rounds, shaped_rounds = [], []  # interleaved with the steps: a busy moment slows rooflines and models alike
    for _ in range(args.rounds):
        for name, step in steps.items():
            rates[name].append(images_per_second(step, args.batch, args.steps))
        sgemm_rounds.append(sgemm_gflops())
        shaped_rounds.append(model_gemm_gflops(args.batch))
    ours, peer = statistics.median(rates["simseg"]), statistics.median(rates["transformers"])
    gflop = step_gflop_per_image(steps["simseg"], args.batch)
    sgemm, shaped = statistics.median(sgemm_rounds), statistics.median(shaped_rounds)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, batch {args.batch}, {args.rounds} rounds x {args.steps} steps")
    def rounds(name: str) -> str:
        return ", ".join(f"{r:.1f}" for r in rates[name])

    print(f"simseg SimMIM step:                 {ours:8.1f} images/s  (rounds: {rounds('simseg')})")
    print(f"transformers ViTForMaskedImageModeling: {peer:6.1f} images/s  (rounds: {rounds('transformers')})")
    print(f"ratio simseg / transformers:        {ours / peer:8.2f}x")
    if args.compile:
        compiled = statistics.median(rates["simseg compiled"])
        print(f"simseg step, torch.compile:         {compiled:8.1f} images/s  (rounds: {rounds('simseg compiled')}) "
              f"= {compiled / peer:.2f}x transformers, {compiled / ours:.2f}x eager; "
              f"{compiled * gflop / sgemm:.1%} of sgemm")
    print(f"step cost (FlopCounterMode):        {gflop:8.3f} GFLOP per image (forward + backward)")
    print(f"achieved:                           {ours * gflop:8.1f} GFLOP/s")
    print(f"fp32 sgemm 2048^3:                  {sgemm:8.1f} GFLOP/s  (rounds: "
          f"{', '.join(f'{r:.1f}' for r in sgemm_rounds)})")
    print(f"fraction of sgemm rate:             {ours * gflop / sgemm:8.1%}")
    print(f"the model's own GEMM shapes:        {shaped:8.1f} GFLOP/s = {shaped / sgemm:.0%} of sgemm; the step "
          f"reaches {ours * gflop / shaped:.0%} of it")
    if args.processes > 1:  # after the single-process rounds, so their threads do not compete
        ddp = {name: ddp_images_per_second(name, args.batch, args.steps, args.processes) for name in STEPS}
        print(f"{args.processes} processes x 1 thread (DDP, gloo), same global batch:")
        print(f"  simseg:                           {ddp['simseg']:8.1f} images/s")
        print(f"  transformers:                     {ddp['transformers']:8.1f} images/s")
        print(f"  ratio simseg / transformers:      {ddp['simseg'] / ddp['transformers']:8.2f}x")
        print(f"  simseg DDP / transformers 1 process: {ddp['simseg'] / peer:5.2f}x")
        print(f"  simseg DDP fraction of sgemm rate:   {ddp['simseg'] * gflop / sgemm:5.1%}")


if __name__ == "__main__":
    main()
