"""ViT segmentation model: the encoder's patch tokens and a head (decoder) to per-pixel class logits.

Heads (``SegmentationModel(head=...)``; users pick them through ``model.arch``, :mod:`simseg.models.registry`):

- ``linear`` (the study's): one Linear from each patch token to p*p*C logits, rearranged into the token's p x p
  pixels (pixel shuffle), so the prediction has full resolution with no upsampling;
- ``linear_upsample``: one Linear from each token to C logits, a (H/p, W/p) map upsampled bilinearly to (H, W);
- ``pup`` and ``fused_skip``: the convolutional decoders of :mod:`simseg.models.vit_decoders`, which upsample
  progressively (and, for ``fused_skip``, fuse four blocks and the image itself).

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
from simseg.models.vit_decoders import DECODERS

HEADS = ("linear", "linear_upsample", *DECODERS)
LOSSES = ("ce", "ce+dice")
BN_COUNTER = "num_batches_tracked"  # BatchNorm's step counter: load_state_dict fills it when missing
IGNORE_INDEX = 255  # mask value of pixels without a label (a rotation's uncovered corners): no loss there
DICE_SMOOTH = 1.0  # added to the Dice numerator and denominator: a class absent from a batch and predicted nowhere
# scores 1, not 0/0


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """``ce``: per-pixel cross-entropy; ``ce+dice``: its mean with :func:`soft_dice_loss`. Scalar. ``target`` is
    (B, H, W) class ids (``IGNORE_INDEX`` skipped) or (B, C, H, W) soft targets (MixUp/CutMix; a zero vector is
    skipped)."""
    if target.dim() == 4:
        labelled = target.sum(1) > 0  # (B, H, W)
        per_pixel = -(target * logits.float().log_softmax(1)).sum(1)  # (B, H, W)
        value = per_pixel[labelled].mean() if labelled.any() else per_pixel.sum() * 0
    else:
        value = F.cross_entropy(logits.float(), target, ignore_index=IGNORE_INDEX)
    return 0.5 * value + 0.5 * soft_dice_loss(logits, target) if loss == "ce+dice" else value


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean over classes of (2 |P.T| + s) / (|P| + |T| + s), P = softmax probabilities, T = one-hot target, sums
    over every labelled pixel of the batch (``IGNORE_INDEX`` pixels left out). logits: (B, C, H, W); target:
    (B, H, W) int64 class ids, or (B, C, H, W) soft targets. Returns a scalar."""
    if target.dim() == 4:  # soft targets (B, C, H, W): mixed batches
        labelled = (target.sum(1) > 0).unsqueeze(1)
        one_hot = target.float()
    else:
        labelled = (target != IGNORE_INDEX).unsqueeze(1)  # (B, 1, H, W)
        one_hot = F.one_hot(target.masked_fill(~labelled[:, 0], 0), logits.shape[1]).permute(0, 3, 1, 2)
    probs = logits.float().softmax(1) * labelled  # (B, C, H, W)
    one_hot = one_hot.float() * labelled  # (B, C, H, W)
    overlap = (probs * one_hot).sum((0, 2, 3))  # (C,)
    sizes = probs.sum((0, 2, 3)) + one_hot.sum((0, 2, 3))  # (C,)
    return 1 - ((2 * overlap + DICE_SMOOTH) / (sizes + DICE_SMOOTH)).mean()


class SegmentationModel(nn.Module):
    """Encoder + head.

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
        if head in DECODERS:
            self.head = DECODERS[head](encoder.embed_dim, len(encoder.blocks), self.patch_size, num_classes)
        else:
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
        """State-dict keys that are not the encoder's: what a pretrained export must leave missing (BatchNorm's step
        counters aside: ``load_state_dict`` fills a missing one itself and never reports it)."""
        return {k for k in self.state_dict() if not k.startswith("encoder.") and not k.endswith(BN_COUNTER)}

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Patch tokens (B, N, D) after the final norm, prefix (cls) tokens dropped."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            tokens = self.encoder.forward_features(images)  # (B, 1 + N, D)
        return tokens[:, self.encoder.num_prefix_tokens:]

    def block_maps(self, images: torch.Tensor, indices: list[int]) -> list[torch.Tensor]:
        """The patch tokens of blocks ``indices`` (0-based) after the final norm, as maps (B, D, H/p, W/p)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            return self.encoder.forward_intermediates(images, indices=indices, norm=True, output_fmt="NCHW",
                                                      intermediates_only=True)

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if self.head_type in DECODERS:
            logits = self.head(self.block_maps(images, self.head.block_indices), images)  # (B, C, H, W)
            return with_loss({"logits": logits}, mask, self.loss_type)
        out = self.head(self.features(images))  # (B, N, p*p*C) or (B, N, C)
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)  # img_size's, or a TTA view's
        if self.head_type == "linear":
            logits = unpatchify(out, self.patch_size, grid)  # (B, C, H, W)
        else:
            coarse = out.transpose(1, 2).reshape(len(out), self.num_classes, *grid)  # (B, C, H/p, W/p)
            logits = F.interpolate(coarse, size=tuple(images.shape[-2:]), mode="bilinear", align_corners=False)
        return with_loss({"logits": logits}, mask, self.loss_type)


def with_loss(result: dict[str, torch.Tensor], mask: torch.Tensor | None, loss: str) -> dict[str, torch.Tensor]:
    """``result`` with its ``"loss"`` against ``mask`` when a mask is given (every segmentation model's output)."""
    if mask is not None:
        result["loss"] = segmentation_loss(result["logits"], mask, loss)
    return result

