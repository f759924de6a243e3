"""MAE: the encoder sees only the visible patches; a light decoder puts mask tokens back in their places and
predicts every patch's pixels; the loss is the mean squared error on the masked patches (He et al., 2022).

At 75% masking the study's encoder runs 1 + 16 of its 65 tokens, which is where MAE's speed comes from. Every image
has the same number of masked patches (:func:`simseg.models.masking.random_unit_mask`), so the visible tokens are
gathered into a tensor of fixed shape: no boolean indexing, no shapes that depend on the mask, one compiled graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import trunc_normal_
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from simseg.models.masking import flatten_mask, gather_tokens, positions_where
from simseg.models.patches import pixel_targets, predictions_to_images


class MAE(nn.Module):
    """Encoder on the visible tokens + transformer decoder (its own width, sin-cos position table and mask token).

    ``forward(images, mask)`` takes normalised images (B, 3, H, W) and a patch mask (B, H/p, W/p), True = masked,
    with exactly ``masked_patches`` True per image, and returns ``{"loss": scalar, "loss_per_image": (B,)}`` (plus
    ``"reconstruction"`` (B, 3, H, W) of every patch on request). ``norm_pix``: the targets are per-patch
    normalised pixels (the paper's default), and the reconstruction is put back at each patch's own statistics.
    """

    def __init__(self, encoder: VisionTransformer, masked_patches: int, decoder_dim: int = 128,
                 decoder_depth: int = 1, decoder_heads: int = 4, norm_pix: bool = False):
        super().__init__()
        if encoder.num_prefix_tokens != 1 or encoder.no_embed_class or encoder.pos_embed is None:
            raise ValueError("MAE needs a ViT with one cls token and a learned position embedding that covers it")
        self.encoder = encoder
        self.patch_size = encoder.patch_embed.patch_size[0]
        self.grid = encoder.patch_embed.grid_size
        self.num_patches = self.grid[0] * self.grid[1]
        if not 0 < masked_patches < self.num_patches:
            raise ValueError(f"masked_patches must be in (0, {self.num_patches}), got {masked_patches}")
        self.masked_patches = masked_patches
        self.norm_pix = norm_pix
        self.decoder_embed = nn.Linear(encoder.embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        # Fixed 2-D sin-cos positions (MAE's choice), with a zero row for the cls token: a buffer, not a weight.
        table = build_sincos2d_pos_embed(list(self.grid), decoder_dim)  # (N, Dd)
        self.register_buffer("decoder_pos_embed", torch.cat([torch.zeros(1, decoder_dim), table])[None],
                             persistent=False)  # (1, 1 + N, Dd)
        self.decoder_blocks = nn.Sequential(*[Block(decoder_dim, decoder_heads, mlp_ratio=4.0, qkv_bias=True)
                                              for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch_size**2 * 3)
        self.apply_decoder_init()

    def apply_decoder_init(self) -> None:
        """MAE's initialisation of what it adds to the encoder: Xavier-uniform linear layers, zero biases, unit
        norms, and a mask token drawn like timm's cls token."""
        trunc_normal_(self.mask_token, std=0.02)
        for name, module in self.named_modules():
            if name.startswith("encoder"):
                continue
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def no_weight_decay(self) -> set[str]:
        return {"mask_token"} | {f"encoder.{name}" for name in self.encoder.no_weight_decay()}

    def encode_visible(self, images: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """The encoder on the cls token and the visible patches: (B, 1 + V, D), the cls token first, then the
        patches at ``visible`` (B, V) in that order. Each patch gets its position before the others are dropped,
        as in timm's ``_pos_embed`` for the full sequence."""
        enc = self.encoder
        # Only the visible patches are embedded: the patch embedding is a linear map of each patch's pixels (its
        # conv's weight flattened in (c, p, q) order), so embedding V of N patches is the same as embedding all.
        pixels = rearrange(images, "b c (h p) (w q) -> b (h w) (c p q)", p=self.patch_size, q=self.patch_size)
        proj = enc.patch_embed.proj
        embedded = F.linear(gather_tokens(pixels, visible), proj.weight.flatten(1), proj.bias)  # (B, V, D)
        embedded = enc.patch_embed.norm(embedded) + gather_tokens(enc.pos_embed[:, 1:].expand(len(images), -1, -1),
                                                                  visible)
        cls = (enc.cls_token + enc.pos_embed[:, :1]).expand(len(images), -1, -1)  # (B, 1, D)
        tokens = torch.cat([cls, embedded], dim=1)  # (B, 1 + V, D)
        tokens = enc.norm_pre(enc.patch_drop(enc.pos_drop(tokens)))
        return enc.norm(enc.blocks(tokens))

    def decode(self, encoded: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Encoded tokens (B, 1 + V, D) -> decoded patch tokens (B, N, Dd), before the pixel prediction: the visible
        tokens go back to their positions, the mask token fills the others."""
        tokens = self.decoder_embed(encoded)  # (B, 1 + V, Dd)
        batch, _, width = tokens.shape
        full = self.mask_token.to(tokens.dtype).expand(batch, self.num_patches, width)
        full = full.scatter(1, visible.unsqueeze(-1).expand(-1, -1, width), tokens[:, 1:])  # (B, N, Dd)
        full = torch.cat([tokens[:, :1], full], dim=1) + self.decoder_pos_embed.to(tokens.dtype)
        return self.decoder_norm(self.decoder_blocks(full))[:, 1:]  # (B, N, Dd)

    def forward(self, images: torch.Tensor, mask: torch.Tensor, reconstruct: bool = False) -> dict[str, torch.Tensor]:
        token_mask = flatten_mask(mask)  # (B, N)
        count = self.masked_patches
        # Checked on the device without waiting for it (a CUDA assert fires at the next sync; on the CPU at once).
        torch._assert_async((token_mask.sum(1) == count).all(),
                            f"MAE(masked_patches={count}) got a mask with another count per image")
        visible = positions_where(~token_mask, self.num_patches - count)  # (B, V)
        decoded = self.decode(self.encode_visible(images, visible), visible)  # (B, N, Dd)
        masked = positions_where(token_mask, count)  # (B, M)
        # Pixels are predicted for the masked patches alone: the loss needs no others, and P = 768 >> Dd.
        predictions = self.decoder_pred(gather_tokens(decoded, masked))  # (B, M, P)
        targets = pixel_targets(images, self.patch_size, self.norm_pix)  # (B, N, P)
        error = (predictions - gather_tokens(targets, masked)) ** 2  # (B, M, P)
        loss_per_image = error.mean(dim=(1, 2))
        out = {"loss": loss_per_image.mean(), "loss_per_image": loss_per_image}
        if reconstruct:
            out["reconstruction"] = predictions_to_images(self.decoder_pred(decoded), images, self.patch_size,
                                                          self.grid, self.norm_pix)
        return out
