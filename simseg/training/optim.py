"""Optimiser and learning-rate schedule. The LR is a pure function of the step (nanoGPT's habit): resuming needs
only the step, and the schedule can be tested and plotted without a model."""

from __future__ import annotations

import math

import torch
from timm.optim import param_groups_layer_decay, param_groups_weight_decay


def milestone_epochs(milestones: list[float], epochs: int) -> list[int]:
    """Milestones below 1 are fractions of ``epochs``, others are epoch numbers: [0.5, 0.85] of 100 -> [50, 85]."""
    return sorted(round(m * epochs) if m < 1 else int(m) for m in milestones)


def step_lr(step: int, base_lr: float, warmup_steps: int, milestone_steps: list[int], decay: float) -> float:
    """Linear warmup over ``warmup_steps``, then ``base_lr`` times ``decay`` once per milestone passed.

    "LR x 0.1 after epoch 50" means the first step of epoch 50 (0-based) already uses the lower rate.
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    return base_lr * decay ** sum(step >= m for m in milestone_steps)


def cosine_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_lr: float) -> float:
    """Linear warmup over ``warmup_steps``, then half a cosine from ``base_lr`` down to ``min_lr`` at
    ``total_steps`` (reached by the step after the last one, so the last step still trains a little)."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (base_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def schedule_for(train_cfg, steps_per_epoch: int):
    """The run's ``step -> lr`` function: ``train.schedule`` multistep (the study's), cosine or constant, each after
    a linear warmup of ``train.warmup_epochs``."""
    warmup = round(train_cfg.warmup_epochs * steps_per_epoch)
    schedule = train_cfg.schedule
    if schedule == "cosine":
        total = train_cfg.epochs * steps_per_epoch
        return lambda step: cosine_lr(step, train_cfg.lr, warmup, total, train_cfg.min_lr)
    milestones = [] if schedule == "constant" else [
        e * steps_per_epoch for e in milestone_epochs(train_cfg.milestones, train_cfg.epochs)]

    def lr_at(step: int) -> float:
        return step_lr(step, train_cfg.lr, warmup, milestones, train_cfg.lr_decay)

    return lr_at


def build_adamw(model: torch.nn.Module, lr: float, weight_decay: float, layer_decay: float = 1.0,
                fused: bool = True) -> torch.optim.AdamW:
    """AdamW without decay on 1-D parameters (norms, biases) and on the model's ``no_weight_decay()`` names
    (position embedding, cls token, mask token). ``fused``: torch's fused update, one kernel for every parameter
    per step, on the CPU as on GPUs; False: torch's default for the device (its foreach kernels on CUDA, a few
    small ops for each parameter on the CPU).

    ``layer_decay`` < 1: timm's layer-wise LR decay groups (the model needs a timm-style ``group_matcher``); each
    group's ``lr_scale`` multiplies the scheduled LR in :func:`set_lr`."""
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()  # timm's rule: any module works
    if layer_decay < 1:
        groups = param_groups_layer_decay(model, weight_decay, no_weight_decay_list=skip, layer_decay=layer_decay)
    else:
        groups = param_groups_weight_decay(model, weight_decay, no_weight_decay_list=skip)
    return torch.optim.AdamW(groups, lr=lr, fused=fused or None)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
