"""Training throughput of the pretraining step (forward + backward + clipping + AdamW, fp32).

``--method simmim`` (the default): simseg's SimMIM step against Hugging Face transformers'
ViTForMaskedImageModeling (same architecture, same batch, same optimiser), plus this machine's fp32 matrix-multiply
rate as a roofline. ``--method mae``: simseg's MAE step (75% of 16-pixel units masked, norm_pix, decoder 128 wide,
1 block, 4 heads) against transformers' ViTMAEForPreTraining at the same configuration and the same masks, and
against simseg's own SimMIM step (the stage's defaults), with the parameter counts of the two MAEs checked equal.

    pip install -e '.[bench]' && python benchmarks/pretrain_throughput.py [--method simmim|mae] [--batch 64]
        [--steps 10] [--rounds 3] [--compile] [--processes 2] [--json PATH]

The models are timed in interleaved rounds (A, B, C, A, B, C, ...) after warm-up steps, so that a busy machine slows
all alike; each figure is the median over rounds. Step FLOPs are counted by torch's FlopCounterMode (forward +
backward of one step).
"""

from __future__ import annotations

import argparse
import functools
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

from simseg.config.pretrain import PretrainConfig
from simseg.files import atomic_write_json
from simseg.models.masking import masked_patch_count, random_unit_mask
from simseg.models.pretraining import build_pretrainer
from simseg.models.vit import build_encoder
from simseg.training.optim import build_adamw


def pretrain_config(method: str) -> PretrainConfig:
    """The stage's config for ``method``: its defaults (SimMIM: 50% of 16-pixel units, raw pixels; MAE: 75%, decoder
    128 wide, 1 block, 4 heads), with MAE's norm_pix targets."""
    return PretrainConfig(method=method, norm_pix=method == "mae")


def simseg_model(method: str):
    """The pretraining model and its config, built as ``stages/pretrain.py`` builds them."""
    cfg = pretrain_config(method)
    masked = masked_patch_count(cfg.model.img_size, cfg.model.patch_size, cfg.mask.unit, cfg.mask.ratio)
    return build_pretrainer(cfg.method, build_encoder(cfg.model), masked, cfg.norm_pix, cfg.decoder), cfg


def bench_mask(batch: int, cfg: PretrainConfig) -> torch.Tensor:
    """The masks every arm of a method trains on: (B, H/p, W/p), True = masked, the same seed for all."""
    return random_unit_mask(batch, cfg.model.img_size, cfg.model.patch_size, cfg.mask.unit, cfg.mask.ratio,
                            torch.Generator().manual_seed(0))


def simseg_step(batch: int, ddp: bool = False, compile: bool = False, method: str = "simmim"):
    model, cfg = simseg_model(method)
    optimizer = build_adamw(model, cfg.train.lr, cfg.train.weight_decay)
    model = DistributedDataParallel(model) if ddp else model
    model = torch.compile(model) if compile else model  # what train.compile=true does (inductor)
    images = torch.randn(batch, 3, 128, 128)
    mask = bench_mask(batch, cfg)

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
    return hf_training_step(model, optimizer, pixel_values=images, bool_masked_pos=mask)


def hf_training_step(model, optimizer, **inputs):
    """One step of a transformers model on fixed inputs: its loss, backward, clipping at 5 as simseg's stages clip,
    AdamW."""
    def step():
        model(**inputs).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def images_per_second(step, batch: int, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - start)


def hf_mae_model():
    """transformers' ViTMAEForPreTraining at simseg's MAE configuration (the study's ViT, timm's LayerNorm eps)."""
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    cfg = pretrain_config("mae")
    model, decoder = cfg.model, cfg.decoder
    config = ViTMAEConfig(image_size=model.img_size, patch_size=model.patch_size, hidden_size=model.embed_dim,
                          num_hidden_layers=model.depth, num_attention_heads=model.num_heads,
                          intermediate_size=model.mlp_dim, qkv_bias=True,
                          hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-6,
                          decoder_hidden_size=decoder.dim, decoder_num_hidden_layers=decoder.depth,
                          decoder_num_attention_heads=decoder.num_heads, decoder_intermediate_size=4 * decoder.dim,
                          mask_ratio=cfg.mask.ratio, norm_pix_loss=cfg.norm_pix)
    return ViTMAEForPreTraining(config)


def hf_mae_step(batch: int, ddp: bool = False):
    model = hf_mae_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    model = DistributedDataParallel(model) if ddp else model
    images = torch.randn(batch, 3, 128, 128)
    # ViTMAE keeps the patches of lowest noise: 0 where visible, 1 where masked gives it simseg's masks exactly.
    noise = bench_mask(batch, pretrain_config("mae")).flatten(1).float()  # (B, N)
    return hf_training_step(model, optimizer, pixel_values=images, noise=noise)


STEPS = {"simseg": simseg_step, "transformers": hf_step}
# --method mae: the arms in the order of each round.
MAE_STEPS = {"simseg MAE": functools.partial(simseg_step, method="mae"), "transformers MAE": hf_mae_step,
             "simseg SimMIM": functools.partial(simseg_step, method="simmim")}


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


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(learned, fixed) parameter counts; fixed = parameters that require no gradient (buffers not counted)."""
    learned = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return learned, sum(p.numel() for p in model.parameters()) - learned


def compare_mae_models() -> dict:
    """The two MAEs must hold the same weights, or their speeds are not comparable. They differ in one place by
    design: simseg's encoder learns its position table (timm's ViT, which SimMIM pretrains too), transformers' fixes
    it at sin-cos values (a parameter without gradient); both fix the decoder's (a buffer in simseg). Also names
    transformers' version and attention kernel: its eager attention would flatter simseg."""
    import transformers

    ours, _ = simseg_model("mae")
    theirs = hf_mae_model()
    print(f"transformers {transformers.__version__}, ViTMAE attention: {theirs.config._attn_implementation}")
    ours_learned, _ = parameter_counts(ours)
    theirs_learned, theirs_fixed = parameter_counts(theirs)
    position_table = ours.encoder.pos_embed.numel()
    print(f"parameters: simseg MAE {ours_learned:,} learned (encoder position table {position_table:,} of them); "
          f"transformers ViTMAEForPreTraining {theirs_learned:,} learned + {theirs_fixed:,} fixed sin-cos "
          f"position tables (encoder and decoder)")
    if ours_learned - position_table != theirs_learned:
        raise SystemExit(f"the two MAEs differ: simseg learns {ours_learned - position_table:,} weights besides its "
                         f"position table, transformers {theirs_learned:,}; fix the configurations before timing")
    print(f"  equal but for simseg's learned encoder position table: {theirs_learned:,} = {theirs_learned:,}")
    return {"transformers": transformers.__version__, "transformers_attention": theirs.config._attn_implementation,
            "parameters": {"simseg_mae_learned": ours_learned, "simseg_mae_position_table": position_table,
                           "transformers_mae_learned": theirs_learned, "transformers_mae_fixed": theirs_fixed}}


def interleaved_rates(steps: dict, batch: int, steps_per_round: int, rounds: int) -> dict[str, list[float]]:
    """images/s of each step per round, the steps taking turns (A, B, C, A, B, C, ...) after 3 warm-up steps each
    (allocator, thread pools, first-call overheads, compilation), which are discarded."""
    for step in steps.values():
        for _ in range(3):
            step()
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            rates[name].append(images_per_second(step, batch, steps_per_round))
    return rates


def main_mae(args) -> None:
    """simseg's MAE step against transformers' ViTMAEForPreTraining and against simseg's SimMIM step."""
    figures = {"method": "mae", "batch": args.batch, "steps": args.steps, "rounds": args.rounds,
               "threads": torch.get_num_threads(), "torch": torch.__version__, **compare_mae_models()}
    torch.manual_seed(0)
    steps = {name: build(args.batch) for name, build in MAE_STEPS.items()}
    if args.compile:
        steps["simseg MAE compiled"] = simseg_step(args.batch, compile=True, method="mae")
    rates = interleaved_rates(steps, args.batch, args.steps, args.rounds)
    medians = {name: statistics.median(r) for name, r in rates.items()}
    gflop = {name: step_gflop_per_image(steps[name], args.batch) for name in MAE_STEPS}
    ours, peer, simmim = medians["simseg MAE"], medians["transformers MAE"], medians["simseg SimMIM"]
    mae_cfg, simmim_cfg = pretrain_config("mae"), pretrain_config("simmim")
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, batch {args.batch}, fp32, {args.rounds} rounds x {args.steps} steps")
    print(f"MAE: {mae_cfg.mask.ratio:.0%} of {mae_cfg.mask.unit}-px units masked, norm_pix, decoder "
          f"{mae_cfg.decoder.dim} wide, {mae_cfg.decoder.depth} block(s), {mae_cfg.decoder.num_heads} heads; SimMIM: "
          f"{simmim_cfg.mask.ratio:.0%} of {simmim_cfg.mask.unit}-px units, norm_pix={simmim_cfg.norm_pix}")
    for name, rate in medians.items():
        cost = f", {gflop[name]:.3f} GFLOP/image = {rate * gflop[name]:.1f} GFLOP/s" if name in gflop else ""
        each = ", ".join(f"{r:.1f}" for r in rates[name])
        print(f"{name + ' step:':27s}{rate:8.1f} images/s{cost}  (rounds: {each})")
    print(f"ratio simseg MAE / transformers MAE:  {ours / peer:5.2f}x  (target >= 1.2)")
    print(f"ratio simseg MAE / simseg SimMIM:     {ours / simmim:5.2f}x  (target >= 2.5; FLOP ratio "
          f"{gflop['simseg SimMIM'] / gflop['simseg MAE']:.2f}x)")
    if args.compile:
        print(f"ratio simseg MAE compiled / eager:    {medians['simseg MAE compiled'] / ours:5.2f}x")
    figures.update(images_per_s=medians, rounds_images_per_s=rates, gflop_per_image=gflop,
                   mae_over_transformers=ours / peer, mae_over_simmim=ours / simmim)
    if args.json:
        atomic_write_json(args.json, figures)


def main_simmim(args) -> None:
    """simseg's SimMIM step against transformers' ViTForMaskedImageModeling, with rooflines."""
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
    if args.json:
        atomic_write_json(args.json, {
            "method": "simmim", "batch": args.batch, "steps": args.steps, "rounds": args.rounds,
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "images_per_s": {name: statistics.median(r) for name, r in rates.items()}, "rounds_images_per_s": rates,
            "gflop_per_image": gflop, "sgemm_gflops": sgemm, "model_gemm_gflops": shaped,
            "simseg_over_transformers": ours / peer, **({"ddp_images_per_s": ddp} if args.processes > 1 else {})})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=["simmim", "mae"], default="simmim",
                        help="simmim: simseg vs ViTForMaskedImageModeling; mae: simseg MAE vs ViTMAEForPreTraining "
                             "and vs simseg SimMIM")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true",
                        help="also time simseg's step under torch.compile (train.compile=true) in the same rounds")
    parser.add_argument("--processes", type=int, default=0,
                        help="also time both with this many 1-thread data-parallel processes (gloo), e.g. 2 "
                             "(--method simmim only)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    if args.method == "mae":
        if args.processes:
            parser.error("--processes is only measured with --method simmim")
        return main_mae(args)
    main_simmim(args)


if __name__ == "__main__":
    main()
