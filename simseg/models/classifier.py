"""Image classifier: the encoder's cls token (or the mean of its patch tokens) and a linear head; MixUp targets.

Training targets are soft (B, K) distributions (:func:`mix_batch`: MixUp/CutMix and label smoothing, or smoothed
one-hot rows when mixing is off) and use timm's ``SoftTargetCrossEntropy``; class ids (B,) use
``LabelSmoothingCrossEntropy`` (plain cross-entropy at smoothing 0), which equals the soft loss on smoothed one-hot
rows.
"""

from __future__ import annotations

import torch
from timm.data import Mixup
from timm.data.mixup import mixup_target
from timm.layers import trunc_normal_
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.models.vision_transformer import VisionTransformer
from torch import nn

POOLS = ("token", "mean")


class Classifier(nn.Module):
    """Encoder + linear head.

    ``forward(images, targets=None)`` takes normalised images (B, 3, H, W) and returns ``{"logits": (B, K)}``; with
    ``targets`` (class ids (B,) int64, or soft targets (B, K) whose rows sum to one) it adds ``"loss"`` (scalar).
    """

    def __init__(self, encoder: VisionTransformer, num_classes: int, pool: str = "token", label_smoothing: float = 0.0):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.encoder, self.num_classes, self.pool = encoder, num_classes, pool
        self.head = nn.Linear(encoder.embed_dim, num_classes)
        trunc_normal_(self.head.weight, std=0.02)  # timm's ViT initialisation of Linear layers
        nn.init.zeros_(self.head.bias)
        self.soft_loss = SoftTargetCrossEntropy()
        self.hard_loss = LabelSmoothingCrossEntropy(label_smoothing) if label_smoothing > 0 else nn.CrossEntropyLoss()

    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{name}" for name in self.encoder.no_weight_decay()}

    def group_matcher(self, coarse: bool = False) -> dict:
        """The encoder's layer groups under ``encoder.`` (as
        :class:`simseg.models.segmentation.SegmentationModel`); the head matches none, which puts it in the last
        group, at the full LR."""
        return dict(stem=r"^encoder\.(?:cls_token|reg_token|pos_embed|patch_embed|norm_pre)",
                    blocks=[(r"^encoder\.blocks\.(\d+)", None), (r"^encoder\.norm", (99999,))])

    def head_keys(self) -> set[str]:
        """State-dict keys that are not the encoder's: what a pretrained export must leave missing."""
        return {k for k in self.state_dict() if not k.startswith("encoder.")}

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, D): the normed cls token, or the mean of the normed patch tokens; dropout (the encoder's rate)."""
        tokens = self.encoder.forward_features(images)  # (B, 1 + N, D)
        pooled = tokens[:, 0] if self.pool == "token" else tokens[:, self.encoder.num_prefix_tokens:].mean(1)
        return self.encoder.head_drop(pooled)

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.head(self.features(images))  # (B, K)
        result = {"logits": logits}
        if targets is not None:
            loss_fn = self.soft_loss if targets.ndim == 2 else self.hard_loss
            result["loss"] = loss_fn(logits.float(), targets)
        return result


def build_mixup(mixup_cfg, label_smoothing: float, num_classes: int) -> Mixup | None:
    """timm's ``Mixup`` as ``mixup_cfg`` asks (None when mixing is off). It draws from numpy's and torch's global
    generators: seed both per epoch for reproducible, resumable mixing."""
    if not mixup_cfg.enabled:
        return None
    return Mixup(mixup_alpha=mixup_cfg.alpha, cutmix_alpha=mixup_cfg.cutmix_alpha, prob=mixup_cfg.prob,
                 switch_prob=mixup_cfg.switch_prob, label_smoothing=label_smoothing, num_classes=num_classes)


def mix_batch(mixup: Mixup | None, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
              label_smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (B, 3, H, W), class ids (B,)) -> (mixed images, soft targets (B, K), rows summing to one).

    B must be even when ``mixup`` is given (each image is mixed with the batch's reverse). Without ``mixup`` the
    images are returned unchanged with smoothed one-hot targets."""
    if mixup is None:
        return images, mixup_target(labels, num_classes, 1.0, label_smoothing)
    return mixup(images, labels)

