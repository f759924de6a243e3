"""What a model costs, measured the same way for every model: parameters, forward FLOPs, inference speed.

FLOPs come from ``torch.utils.flop_counter`` (2 per multiply-add of matmuls and convolutions; norms, activations
and softmax are not counted, as in most papers' GFLOPs). Its table lacks the CPU flash-attention kernel that
``scaled_dot_product_attention`` dispatches to on a CPU, so a ViT's attention would be missed there; it is added
below with the counter's own attention formula. For the study's encoder at 128 px that is 12 blocks x 2 x
(65 x 65 x 128) multiply-adds, 8% of its forward (tests/models/test_cost.py checks the total against a hand count).
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

INFERENCE_BATCH = 32


def _cpu_flash_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention_flops}


def parameter_counts(model: nn.Module) -> dict[str, int]:
    """``parameters`` (all) and ``encoder_parameters`` (``model.encoder``'s)."""
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "encoder_parameters": sum(p.numel() for p in model.encoder.parameters())}


@torch.no_grad()
def forward_flops(model: nn.Module, img_size: int) -> int:
    """FLOPs of one forward pass of one (1, 3, img_size, img_size) image, in eval mode (dropout off)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
            model(images=torch.zeros(1, 3, img_size, img_size, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops()


@torch.no_grad()
def inference_images_per_s(model: nn.Module, img_size: int, batch_size: int = INFERENCE_BATCH,
                           repeats: int = 3) -> float:
    """Images per second of eval-mode forward passes at ``batch_size`` on the model's device (one warm-up pass,
    then the best of ``repeats``: the least disturbed by other work on the machine)."""
    device = next(model.parameters()).device
    images = torch.zeros(batch_size, 3, img_size, img_size, device=device)
    was_training = model.training
    model.eval()
    best = float("inf")
    try:
        for attempt in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(images=images)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if attempt:  # the first pass warms caches and kernels up
                best = min(best, time.perf_counter() - start)
    finally:
        model.train(was_training)
    return batch_size / best


def model_cost(model: nn.Module, img_size: int) -> dict[str, float]:
    """The cost keys of ``metrics.json``: parameters, encoder_parameters, gflops (per image, forward) and
    inference_images_per_s (batch 32)."""
    return {**parameter_counts(model), "gflops": forward_flops(model, img_size) / 1e9,
            "inference_images_per_s": inference_images_per_s(model, img_size)}
