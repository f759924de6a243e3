"""The encoder: timm's VisionTransformer at the study's sizes, registered so ``timm.create_model`` builds it.

>>> import timm, simseg.models.vit
>>> encoder = timm.create_model("simseg_vit_tiny_patch16_128")   # the study's 2.5M-parameter ViT
"""

from __future__ import annotations

from typing import Any

import torch
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer

# Architecture fields of each registered encoder. ``ModelConfig`` fills its null fields from here, so a config names
# an architecture and overrides single fields (``model.depth=6``) without repeating the rest. Each encoder's
# description is the docstring of its builder below (``simseg pretrain --help`` lists both under ``model.name``).
ARCHITECTURES: dict[str, dict[str, int]] = {
    "simseg_vit_tiny_patch16_128": dict(img_size=128, patch_size=16, embed_dim=128, depth=12, num_heads=8, mlp_dim=512),
    "simseg_vit_base_patch16_128": dict(img_size=128, patch_size=16, embed_dim=768, depth=12, num_heads=12,
                                        mlp_dim=3072),
}
DEFAULT_ARCHITECTURE = "simseg_vit_tiny_patch16_128"


def _vit(name: str, **overrides: Any) -> VisionTransformer:
    fields = {**ARCHITECTURES[name], **overrides}
    embed_dim, mlp_dim = fields.pop("embed_dim"), fields.pop("mlp_dim")
    # timm's factory passes its hub arguments along; no hub weights exist for these models (see load_encoder).
    for factory_arg in ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        fields.pop(factory_arg, None)
    return VisionTransformer(
        embed_dim=embed_dim,
        mlp_ratio=mlp_dim / embed_dim,
        num_classes=0,  # an encoder: each stage adds its own head
        global_pool="token",
        class_token=True,
        **fields,
    )


@register_model
def simseg_vit_tiny_patch16_128(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """The study's encoder: a small ViT for 128-pixel images (~2.49M parameters)."""
    return _vit("simseg_vit_tiny_patch16_128", **kwargs)


@register_model
def simseg_vit_base_patch16_128(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-B/16 at the same 128-pixel resolution, the larger encoder the study also tried (~85.7M parameters)."""
    return _vit("simseg_vit_base_patch16_128", **kwargs)


def build_encoder(model_cfg, dynamic_img_size: bool = False) -> VisionTransformer:
    """The encoder described by a resolved :class:`simseg.config.sections.ModelConfig`. ``dynamic_img_size``: accept
    other image sizes than ``img_size`` (multiples of the patch), resampling the position embedding (timm's), as
    segmentation's test-time scales need; at ``img_size`` the output is the same."""
    import timm

    encoder = timm.create_model(
        model_cfg.name,
        **model_cfg.architecture(),
        # The study's one dropout rate applies wherever timm can drop: after the embedding (pos_drop_rate), in the
        # attention and MLP outputs (proj_drop_rate) and before a head (drop_rate).
        drop_rate=model_cfg.drop_rate,
        pos_drop_rate=model_cfg.drop_rate,
        proj_drop_rate=model_cfg.drop_rate,
        attn_drop_rate=model_cfg.attn_drop_rate,
        drop_path_rate=model_cfg.drop_path_rate,
        **({"dynamic_img_size": True} if dynamic_img_size else {}),
    )
    if model_cfg.pos_embed_init == "sincos":
        init_sincos_pos_embed(encoder)
    return encoder


@torch.no_grad()
def init_sincos_pos_embed(encoder: VisionTransformer) -> None:
    """Fill the patch rows of the learned position embedding with 2-D sin-cos values (the cls row gets zeros)."""
    grid = list(encoder.patch_embed.grid_size)
    table = build_sincos2d_pos_embed(grid, encoder.embed_dim)  # (h*w, D)
    prefix = encoder.num_prefix_tokens if not encoder.no_embed_class else 0
    encoder.pos_embed[0, :prefix] = 0
    encoder.pos_embed[0, prefix:] = table.to(encoder.pos_embed.dtype)
