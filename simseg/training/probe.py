"""A linear probe of the frozen encoder, run while pretraining goes on: how well do its patch tokens already separate
the classes of the probe's labelled data (``probe.data``; on pets background, pet and boundary)?

A fixed, seeded draw of labelled images is loaded once (:meth:`LinearProbe.prepare`); each call of
:meth:`LinearProbe.score` computes the tokens of those images once, trains a fresh per-patch linear head on them
and scores it by mIoU on further labelled images at the input size. The head's logits are bilinearly upsampled to
pixels, as a segmentation head's are. Bilinear upsampling is linear with weights that sum to 1, so it commutes with
the linear head: the head trains on the upsampled tokens at a fixed, seeded sample of pixels per image (gathered
once), not on every pixel at every step, which keeps a few hundred full-batch steps cheap on a CPU. Scoring uses
every pixel.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simseg.config.segment import SegDataConfig
from simseg.data.label_set import BOUNDARY_CLASS, LabelSet
from simseg.data.pair_sources import open_pairs_source
from simseg.data.transforms import eval_transform
from simseg.errors import SimsegError
from simseg.models.segmentation import IGNORE_INDEX
from simseg.sizes import parse_size
from simseg.training.metrics import confusion_matrix, segmentation_metrics
from simseg.training.plots import plt, save_figure  # plt with plots' file-only backend

# Training pixels per image (two per patch at 128 px, 16-pixel patches): far more labels than the head has weights,
# and its score stays close to that of a head trained on every pixel, at a fraction of the cost per step.
PIXELS_PER_IMAGE = 128
BATCH = 64  # images per encoder forward


class LinearProbe:
    """The probe's labelled images, normalised (N, 3, S, S) float, with masks (N, S, S) int64 of class ids of
    ``classes`` (the probe data's label set; 255 = unlabelled)."""

    def __init__(self, probe_cfg, images: Tensor, masks: Tensor, train_names: list[str], score_names: list[str],
                 seed: int, classes: LabelSet):
        self.cfg, self.images, self.masks, self.seed, self.classes = probe_cfg, images, masks, seed, classes
        self.train_names, self.score_names = train_names, score_names  # the first len(train_names) rows train

    @classmethod
    def prepare(cls, probe_cfg, img_size: int, mean, std, exclude: set[str], seed: int) -> LinearProbe:
        """Open ``probe_cfg.data`` as the segment stage does (its default data keys, own synthetic stream), drop the
        items named in ``exclude`` (a name or file name matches by stem), and draw ``subset`` training and
        ``score_images`` scoring items with ``seed``; each is transformed as the segment stage evaluates."""
        subset = parse_size(probe_cfg.subset, "probe.subset")
        needed = subset + probe_cfg.score_images
        keys = set(exclude) | {Path(e).stem for e in exclude}
        data = SegDataConfig()
        # Synthetic names repeat across streams (synthetic_00012 of another stage is another picture), so the source
        # holds enough images that excluding names can never leave it short.
        source = open_pairs_source(probe_cfg.data, stream="probe", synthetic_count=needed + len(keys),
                                   synthetic_seed=data.synthetic_seed, synthetic_size=data.synthetic_image_size,
                                   skip_unpaired=data.skip_unpaired, split=data.split,
                                   image_column=data.image_column, mask_column=data.mask_column)
        kept = [i for i, name in enumerate(source.names) if name not in keys and Path(name).stem not in keys]
        if len(kept) < needed:
            raise SimsegError(f"probe.subset={probe_cfg.subset} + probe.score_images={probe_cfg.score_images} need "
                              f"{needed:,} labelled images but {source.name} holds {len(kept):,} (after excluding "
                              f"{len(source) - len(kept):,}): lower them or point probe.data at a larger source")
        drawn = [kept[i] for i in np.random.default_rng(seed).permutation(len(kept))[:needed]]
        transform = eval_transform(img_size, mean, std, op="resize")
        images, masks = zip(*(transform(*source.pair(i)) for i in drawn))
        names = [source.names[i] for i in drawn]
        return cls(probe_cfg, torch.stack(images), torch.stack(masks), names[:subset], names[subset:], seed,
                   source.label_set)

    def score(self, encoder: nn.Module) -> dict:
        """``probe_miou`` of a head trained on ``encoder``'s frozen tokens, ``probe_boundary_iou`` (the IoU of the
        class named "boundary") only when the probe's classes have one (pets, the synthetic trimaps), and
        ``probe_seconds``; an undefined figure is None (see :mod:`simseg.training.metrics`). The same encoder gives
        the same score; the encoder's weights and training flag are left as they were."""
        start, n_train = time.perf_counter(), len(self.train_names)
        tokens, grid = patch_tokens(encoder, self.images)  # (N, h*w, D)
        # Standardised with the training tokens' statistics (MAE's probe: BatchNorm without affine), so one
        # learning rate suits every epoch's encoder however its token scale drifts.
        mean, std = tokens[:n_train].mean((0, 1)), tokens[:n_train].std((0, 1)) + 1e-6
        tokens = (tokens - mean) / std
        size = tuple(self.masks.shape[-2:])
        generator = torch.Generator().manual_seed(self.seed)
        rows, cols = (torch.randint(0, s, (n_train, PIXELS_PER_IMAGE), generator=generator) for s in size)
        features = pixel_features(tokens[:n_train], grid, size, rows.to(tokens.device), cols.to(tokens.device))
        targets = self.masks[torch.arange(n_train)[:, None], rows, cols]  # (n_train, K)
        count = self.classes.num_classes
        head = train_head(features, targets.to(tokens.device), self.cfg.steps, self.cfg.lr, count)
        confusion = torch.zeros(count, count, dtype=torch.long)
        with torch.no_grad():
            for lo in range(n_train, len(tokens), BATCH):
                logits = head(tokens[lo:lo + BATCH]).transpose(1, 2).unflatten(2, grid)  # (B, C, h, w)
                pred = F.interpolate(logits, size=size, mode="bilinear", align_corners=False).argmax(1).cpu()
                confusion += confusion_matrix(pred, self.masks[lo:lo + BATCH], count, IGNORE_INDEX)
        figures = segmentation_metrics(confusion, list(self.classes.names))
        # the band's IoU beside the mIoU, where the data has one (pets): the part pretraining helps least
        has_band = BOUNDARY_CLASS in self.classes.names
        boundary = {"probe_boundary_iou": figures["iou"][BOUNDARY_CLASS]} if has_band else {}
        return {"probe_miou": figures["miou"], **boundary, "probe_seconds": time.perf_counter() - start}


@torch.no_grad()
def patch_tokens(encoder: nn.Module, images: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """timm encoder, images (N, 3, H, W) -> (patch tokens (N, h*w, D) float on the encoder's device, (h, w)),
    computed in eval mode; the encoder's training flag is restored."""
    was_training, device = encoder.training, next(encoder.parameters()).device
    encoder.eval()
    try:
        tokens = torch.cat([encoder.forward_features(images[lo:lo + BATCH].to(device))[:, encoder.num_prefix_tokens:]
                            .float() for lo in range(0, len(images), BATCH)])
    finally:
        encoder.train(was_training)
    patch = encoder.patch_embed.patch_size
    return tokens, (images.shape[-2] // patch[0], images.shape[-1] // patch[1])


def bilinear_matrix(n_in: int, n_out: int) -> Tensor:
    """(n_out, n_in) weights of 1-D bilinear upsampling as ``F.interpolate`` does it (align_corners=False): row i
    holds the weights of output position i. Bilinear upsampling is separable, so a 2-D map's is
    ``U_H @ map @ U_W.T``."""
    eye = torch.eye(n_in).view(1, 1, n_in, n_in)  # each column an impulse; interpolating only the rows
    return F.interpolate(eye, size=(n_out, n_in), mode="bilinear", align_corners=False)[0, 0]


def pixel_features(tokens: Tensor, grid: tuple[int, int], size: tuple[int, int], rows: Tensor, cols: Tensor) -> Tensor:
    """The token map (N, h*w, D) on grid (h, w), bilinearly upsampled to ``size`` (H, W), at pixels (rows[n, k],
    cols[n, k]) of each image n: (N, K, D). Equals ``F.interpolate`` of the map, read at those pixels."""
    (h, w), (height, width) = grid, size
    row_weights = bilinear_matrix(h, height).to(tokens.device)[rows]  # (N, K, h)
    col_weights = bilinear_matrix(w, width).to(tokens.device)[cols]  # (N, K, w)
    weights = (row_weights[..., :, None] * col_weights[..., None, :]).flatten(2)  # (N, K, h*w)
    return weights @ tokens


def train_head(features: Tensor, targets: Tensor, steps: int, lr: float, num_classes: int) -> nn.Linear:
    """A linear head features (N, K, D) -> ``num_classes`` logits, fitted to targets (N, K) by full-batch AdamW.
    Zero initialised, so the fit is a function of its inputs alone (no random draw to seed)."""
    head = nn.Linear(features.shape[-1], num_classes).to(features.device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr)
    flat, labels = features.reshape(-1, features.shape[-1]), targets.reshape(-1)  # (N*K, D), (N*K,)
    with torch.enable_grad():
        for _ in range(steps):
            loss = F.cross_entropy(head(flat), labels, ignore_index=IGNORE_INDEX)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return head.requires_grad_(False)


def save_probe_curve(run_dir: str | Path, history: list[dict]) -> bytes | None:
    """probe.png in ``run_dir``: probe mIoU (and boundary IoU, where the probe's classes have a boundary class)
    against epoch, from the ``metrics.jsonl`` records that hold ``probe_miou``; returns the PNG's bytes, or None
    (and writes nothing) before the first probe."""
    probed = [r for r in history if r.get("probe_miou") is not None]
    if not probed:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.2))
    epochs = [r["epoch"] for r in probed]
    ax.plot(epochs, [r["probe_miou"] for r in probed], marker="o", label="mIoU")
    if any("probe_boundary_iou" in r for r in probed):
        ax.plot(epochs, [r.get("probe_boundary_iou") for r in probed], marker=".", linestyle="--",
                label="boundary IoU")
    ax.set_xlabel("epoch")
    ax.set_ylabel("linear probe")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, Path(run_dir) / "probe.png")
