"""The pretraining methods ``method`` can name, behind one front door: :func:`build_pretrainer`.

Every method wraps the same encoder and has the same interface, so the stage script never asks which one it runs:
``forward(images (B, 3, H, W), mask (B, H/p, W/p) True = masked, reconstruct=False)`` returns ``{"loss",
"loss_per_image" (B,), and on request "reconstruction" (B, 3, H, W)}``, ``.encoder`` is what
``encoder.safetensors`` exports, and ``no_weight_decay()`` names the parameters AdamW leaves alone. Every mask has
the same number of masked patches per image (static shapes). Registering a method is one entry in :data:`METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from timm.models.vision_transformer import VisionTransformer
from torch import nn

from simseg.models.mae import MAE
from simseg.models.masking import masked_patch_count
from simseg.models.simmim import SimMIM
from simseg.models.vit import build_encoder


@dataclass(frozen=True)
class PretrainingMethod:
    title: str
    """How text names it (a model card's "MAE-pretrained encoder")."""
    description: str
    """What it is, in a sentence (``simseg pretrain --help`` lists it under ``method``)."""
    mask_ratio: float
    """The share of mask units hidden when ``mask.ratio`` is left null: each paper's value."""
    build: Callable[..., nn.Module]
    """``build(encoder, masked_patches, norm_pix, decoder)`` -> the model; ``decoder`` is the config's decoder
    section (width, depth, heads), which a method without a transformer decoder ignores."""


def _simmim(encoder: VisionTransformer, masked_patches: int, norm_pix: bool, decoder) -> nn.Module:
    return SimMIM(encoder, masked_patches, norm_pix=norm_pix)


def _mae(encoder: VisionTransformer, masked_patches: int, norm_pix: bool, decoder) -> nn.Module:
    return MAE(encoder, masked_patches, decoder_dim=decoder.dim, decoder_depth=decoder.depth,
               decoder_heads=decoder.num_heads, norm_pix=norm_pix)


METHODS: dict[str, PretrainingMethod] = {
    "simmim": PretrainingMethod(
        "SimMIM", "SimMIM (the study's): masked patches become a mask token, every token goes through the encoder, "
        "a linear decoder predicts the masked pixels, L1 loss.", mask_ratio=0.5, build=_simmim),
    "mae": PretrainingMethod(
        "MAE", "MAE: the encoder runs on the visible patches only (17 of 65 tokens at 75% masking), a light "
        "transformer decoder (decoder.*) predicts the masked pixels, mean squared error.", mask_ratio=0.75, build=_mae),
}
LEGACY_METHOD = "simmim"  # the method of runs and configs written before ``method`` existed: SimMIM was the only one


def build_pretrainer(method: str, encoder: VisionTransformer, masked_patches: int, norm_pix: bool,
                     decoder) -> nn.Module:
    """The model that pretrains ``encoder`` with ``method`` (a name of :data:`METHODS`)."""
    return METHODS[method].build(encoder, masked_patches, norm_pix, decoder)


def pretrainer_for_config(cfg) -> nn.Module:
    """The model a resolved pretraining config describes (``method``, ``model``, ``mask``, ``norm_pix``,
    ``decoder``), on a freshly built encoder: what the stage trains and what ``simseg grid`` reloads."""
    model = cfg.model
    masked = masked_patch_count(model.img_size, model.patch_size, cfg.mask.unit, cfg.mask.ratio)
    return build_pretrainer(cfg.method, build_encoder(model), masked, cfg.norm_pix, cfg.decoder)
