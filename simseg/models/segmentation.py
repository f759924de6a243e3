"""Segmentation model: the encoder's patch tokens and a linear head to per-pixel class logits.

Two heads (``head=``):

- ``linear`` (the study's): one Linear from each patch token to p*p*C logits, rearranged into the token's p x p
  pixels (pixel shuffle), so the prediction has full resolution with no upsampling;
- ``linear_upsample``: one Linear from each token to C logits, a (H/p, W/p) map upsampled bilinearly to (H, W).

Losses (``loss=``): ``ce`` is per-pixel cross-entropy; ``ce+dice`` is 0.5 x cross-entropy + 0.5 x soft Dice loss
(1 - mean over classes of the Dice of softmax probabilities and one-hot targets, summed over the batch's pixels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from simseg.models.patches import unpatchify

HEADS = ("linear", "linear_upsample")
LOSSES = ("ce", "ce+dice")
DICE_SMOOTH = 1.0  # added to the Dice numerator and denominator: a class absent from a batch and predicted nowhere
# scores 1, not 0/0


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean over classes of (2 |P.T| + s) / (|P| + |T| + s), P = softmax probabilities, T = one-hot target, sums
    over every pixel of the batch. logits: (B, C, H, W); target: (B, H, W) int64 class ids. Returns a scalar."""
    probs = logits.float().softmax(1)  # (B, C, H, W)
    one_hot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)  # (B, C, H, W)
    overlap = (probs * one_hot).sum((0, 2, 3))  # (C,)
    sizes = probs.sum((0, 2, 3)) + one_hot.sum((0, 2, 3))  # (C,)
    return 1 - ((2 * overlap + DICE_SMOOTH) / (sizes + DICE_SMOOTH)).mean()


class SegmentationModel(nn.Module):
    """Encoder + linear head.

    ``forward(images, mask=None)`` takes normalised images (B, 3, H, W) and returns ``{"logits": (B, C, H, W)}``;
    with ``mask`` (B, H, W) int64 class ids it adds ``"loss"`` (scalar). While ``freeze_encoder`` is true the encoder
    runs without gradients, so only the head trains (and the optimiser skips the encoder, whose grads stay None).
    """

    def __init__(self, encoder: VisionTransformer, num_classes: int = 3, head: str = "linear", loss: str = "ce"):
        super().__init__()
        if head not in HEADS or loss not in LOSSES:
            raise ValueError(f"head must be one of {HEADS} and loss one of {LOSSES}, got {head!r}, {loss!r}")
        self.encoder, self.num_classes, self.head_type, self.loss_type = encoder, num_classes, head, loss
        self.patch_size = encoder.patch_embed.patch_size[0]
        self.grid = tuple(encoder.patch_embed.grid_size)
        outputs = self.patch_size**2 * num_classes if head == "linear" else num_classes
        self.head = nn.Linear(encoder.embed_dim, outputs)
        trunc_normal_(self.head.weight, std=0.02)  # timm's ViT initialisation of Linear layers
        nn.init.zeros_(self.head.bias)
        self.freeze_encoder = False

    def no_weight_decay(self) -> set[str]:
        return {f"encoder.{name}" for name in self.encoder.no_weight_decay()}

    def group_matcher(self, coarse: bool = False) -> dict:
        """The encoder's layer groups (timm's ViT ``group_matcher`` under ``encoder.``) for layer-wise LR decay;
        the head matches none, which puts it in the last group, at the full LR."""
        return dict(stem=r"^encoder\.(?:cls_token|reg_token|pos_embed|patch_embed|norm_pre)",
                    blocks=[(r"^encoder\.blocks\.(\d+)", None), (r"^encoder\.norm", (99999,))])

    def head_keys(self) -> set[str]:
        """State-dict keys that are not the encoder's: what a pretrained export must leave missing."""
        return {k for k in self.state_dict() if not k.startswith("encoder.")}

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens (B, N, D) after the final norm, prefix (cls) tokens dropped."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            tokens = self.encoder.forward_features(images)  # (B, 1 + N, D)
        return tokens[:, self.encoder.num_prefix_tokens:]

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = self.head(self.features(images))  # (B, N, p*p*C) or (B, N, C)
        if self.head_type == "linear":
            logits = unpatchify(out, self.patch_size, self.grid)  # (B, C, H, W)
        else:
            coarse = out.transpose(1, 2).reshape(len(out), self.num_classes, *self.grid)  # (B, C, H/p, W/p)
            logits = F.interpolate(coarse, size=tuple(images.shape[-2:]), mode="bilinear", align_corners=False)
        result = {"logits": logits}
        if mask is not None:
            loss = F.cross_entropy(logits.float(), mask)
            if self.loss_type == "ce+dice":
                loss = 0.5 * loss + 0.5 * soft_dice_loss(logits, mask)
            result["loss"] = loss
        return result

