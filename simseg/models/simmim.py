"""SimMIM: masked patches are replaced by a learned mask token, every token goes through the encoder, and a linear
decoder predicts each patch's pixels; the loss is L1 on the masked pixels only (Xie et al., 2022)."""

from __future__ import annotations

import torch
from timm.layers import trunc_normal_
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from simseg.models.masking import flatten_mask, gather_tokens, positions_where
from simseg.models.patches import pixel_targets, predictions_to_images


def masked_l1_loss(reconstruction: torch.Tensor, target: torch.Tensor, pixel_mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean absolute error over masked pixels and all channels.

    reconstruction, target: (B, C, H, W); pixel_mask: (B, 1, H, W), 1 where masked. Returns (B,).
    Visible pixels contribute nothing, whatever is predicted there.
    """
    weight = pixel_mask.to(reconstruction.dtype)
    error = (reconstruction - target).abs() * weight  # (B, C, H, W)
    channels = reconstruction.shape[1]
    return error.flatten(1).sum(1) / (weight.flatten(1).sum(1) * channels).clamp_min(1)


def masked_patch_l1(predictions: torch.Tensor, targets: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
    """:func:`masked_l1_loss` computed on the masked patches alone.

    predictions, targets: (M, P) for the M masked tokens of the batch, in ``token_mask[b, n]`` order (row-major over
    images, then tokens); token_mask: (B, N) bool. Returns (B,), the mean over each image's masked values.
    """
    error = (predictions - targets).abs().mean(1)  # (M,) every masked patch has the same P values
    counts = token_mask.sum(1)  # (B,)
    image_of_token = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)  # (M,)
    total = torch.zeros(len(counts), dtype=error.dtype, device=error.device).index_add_(0, image_of_token, error)
    return total / counts.clamp_min(1)


class SimMIM(nn.Module):
    """Encoder + mask token + linear pixel decoder.

    ``forward(images, mask)`` takes normalised images (B, 3, H, W) and a patch mask (B, H/p, W/p), True = masked,
    and returns ``{"loss": scalar, "loss_per_image": (B,)}`` (plus ``"reconstruction"`` (B, 3, H, W) on request).
    ``norm_pix``: the targets are each patch's pixels normalised to zero mean and unit variance; the reconstruction
    is put back at each patch's own statistics.
    """

    def __init__(self, encoder: VisionTransformer, masked_patches: int | None = None, norm_pix: bool = False):
        super().__init__()
        self.encoder = encoder
        self.norm_pix = norm_pix  # predict per-patch normalised pixels (MAE's norm_pix_loss)
        # How many patches every mask covers, when that is fixed (random_unit_mask masks the same number in every
        # image): the loss then gathers exactly that many tokens per image, shapes never depend on the mask's
        # values, so there is no device sync and no torch.compile graph break. None accepts any mask.
        self.masked_patches = masked_patches
        self.patch_size = encoder.patch_embed.patch_size[0]
        self.grid = encoder.patch_embed.grid_size
        dim = encoder.embed_dim
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        trunc_normal_(self.mask_token, std=0.02)
        # SimMIM's decoder is a 1x1 conv to p*p*3 channels plus pixel shuffle: per token, one linear layer.
        self.decoder = nn.Linear(dim, self.patch_size**2 * 3)

    def no_weight_decay(self) -> set[str]:
        return {"mask_token"} | {f"encoder.{name}" for name in self.encoder.no_weight_decay()}

    def encode(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Patch tokens (B, N, D) of images whose masked patches were replaced by the mask token.

        Mirrors timm's ``VisionTransformer.forward_features`` with the replacement between the patch embedding and
        the position embedding, so masked tokens still learn where they are.
        """
        enc = self.encoder
        tokens = enc.patch_embed(images)  # (B, N, D)
        masked = flatten_mask(mask).unsqueeze(-1)  # (B, N, 1)
        tokens = torch.where(masked, self.mask_token.to(tokens.dtype), tokens)
        tokens = enc.norm_pre(enc.patch_drop(enc._pos_embed(tokens)))  # (B, 1 + N, D) with the cls token
        tokens = enc.norm(enc.blocks(tokens))
        return tokens[:, enc.num_prefix_tokens:]  # (B, N, D)

    def forward(self, images: torch.Tensor, mask: torch.Tensor, reconstruct: bool = False) -> dict[str, torch.Tensor]:
        """The loss decodes only the masked tokens (half the decoder's work, and no pixel shuffle): visible pixels
        never enter it. ``reconstruct=True`` also decodes every token into ``"reconstruction"`` (B, 3, H, W)."""
        tokens = self.encode(images, mask)  # (B, N, D)
        token_mask = flatten_mask(mask)  # (B, N)
        targets = pixel_targets(images, self.patch_size, self.norm_pix)  # (B, N, p*p*3)
        if self.masked_patches is None:  # boolean indexing: M masked tokens in all, any count per image
            loss_per_image = masked_patch_l1(self.decoder(tokens[token_mask]), targets[token_mask], token_mask)
        else:
            loss_per_image = self.fixed_count_loss(tokens, targets, token_mask)
        out = {"loss": loss_per_image.mean(), "loss_per_image": loss_per_image}
        if reconstruct:
            out["reconstruction"] = predictions_to_images(self.decoder(tokens), images, self.patch_size, self.grid,
                                                          self.norm_pix)
        return out

    def fixed_count_loss(self, tokens: torch.Tensor, targets: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """:func:`masked_patch_l1` when every image has ``masked_patches`` masked tokens. tokens (B, N, D), targets
        (B, N, P), token_mask (B, N) -> (B,)."""
        count = self.masked_patches
        # Checked on the device without waiting for it (a CUDA assert fires at the next sync; on the CPU at once).
        torch._assert_async((token_mask.sum(1) == count).all(),
                            f"SimMIM(masked_patches={count}) got a mask with another count per image")
        positions = positions_where(token_mask, count)  # (B, M) each image's masked positions in token order
        predictions = self.decoder(gather_tokens(tokens, positions))  # (B, M, P)
        return (predictions - gather_tokens(targets, positions)).abs().mean(dim=(1, 2))
