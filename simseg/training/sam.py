"""Sharpness-aware minimisation (Foret et al. 2021; adaptive: ASAM, Kwon et al. 2021) as two functions the epoch
loop calls around a second forward/backward pass, on SAM steps only:

    backward(loss)                            gradient g at the weights w
    moves = perturb(params, rho, adaptive)    w <- w + e, e = rho * g / ||g||  (ASAM: rho * w^2 g / ||w g||)
    zero_grad; backward(loss at w + e)        the gradient the optimiser steps with
    restore(params, moves)                    w <- w - e, then clip and step as on any step

Why our own and not pytorch-optimizer's ``SAM``: that one wraps the optimiser and takes a closure for its two
passes, which fits neither Accelerate's prepared optimiser (gradient clipping between the passes, our per-group LR
set before each step) nor SAM on every k-th step only. Under DDP the first backward already averages g over the
processes, so every rank computes the same e and the weights stay identical across ranks; the cost is one more
forward, backward and all-reduce per SAM step.
"""

from __future__ import annotations

import torch

EPSILON = 1e-12  # keeps the step finite when the gradient vanishes


@torch.no_grad()
def perturb(params: list[torch.nn.Parameter], rho: float, adaptive: bool = False) -> list[torch.Tensor | None]:
    """Move each parameter with a gradient by its share of the ascent step of length ``rho``; returns the moves
    (None where a parameter had no gradient) for :func:`restore`."""
    scaled = [None if p.grad is None else (p.abs() * p.grad if adaptive else p.grad) for p in params]
    norm = torch.norm(torch.stack([s.float().norm(2) for s in scaled if s is not None]), 2)
    moves = []
    for p, s in zip(params, scaled):
        if s is None:
            moves.append(None)
            continue
        move = (p.abs() * s if adaptive else s) * (rho / (norm + EPSILON))  # ASAM: w^2 g / ||w g||
        p.add_(move.to(p.dtype))
        moves.append(move)
    return moves


@torch.no_grad()
def restore(params: list[torch.nn.Parameter], moves: list[torch.Tensor | None]) -> None:
    """Undo :func:`perturb`: the weights are back at w, their gradients those taken at w + e."""
    for p, move in zip(params, moves):
        if move is not None:
            p.sub_(move.to(p.dtype))
