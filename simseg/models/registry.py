"""The segmentation models ``model.arch`` can name, behind one front door: :func:`build_segmentation_model`.

Each entry of :data:`ARCHS` says what it is in its ``description`` (``simseg segment --help`` lists them): a ViT
model takes its encoder from the caller (built from ``model.*``, maybe loaded from a pretraining export); a CNN builds
its own and takes ImageNet weights or a local weights file (:mod:`simseg.training.cnn_weights`), never a ViT export.
Registering a model is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from simseg.models.cnn_segmentation import CNNSegmentationModel
from simseg.models.segmentation import SegmentationModel
from simseg.models.vit import build_encoder


@dataclass(frozen=True)
class SegmentationArch:
    family: Literal["vit", "cnn"]
    """``vit``: a head or decoder on the simseg ViT; ``cnn``: a whole model from segmentation_models_pytorch."""
    part: str
    """The ViT's head (``SegmentationModel(head=...)``), or the smp model kind for a CNN."""
    description: str
    """What it is, in a sentence (``simseg segment --help`` lists it under ``model.arch``)."""
    encoder: str = ""
    """A CNN's encoder name in segmentation_models_pytorch."""


ARCHS: dict[str, SegmentationArch] = {
    "vit_linear": SegmentationArch(
        "vit", "linear", description="The study's ViT + a linear head, pixel-shuffled to full resolution."),
    "vit_linear_upsample": SegmentationArch(
        "vit", "linear_upsample",
        description="The ViT + a linear head to a class map at patch resolution, upsampled bilinearly."),
    "vit_pup": SegmentationArch(
        "vit", "pup", description="The ViT + a progressive-upsampling conv decoder (SETR-PUP, ~0.25M parameters)."),
    "vit_fused_skip": SegmentationArch(
        "vit", "fused_skip",
        description="The ViT + a conv decoder fusing four blocks' tokens with skips from the image (~0.3M "
                    "parameters)."),
    "unet_resnet18": SegmentationArch(
        "cnn", "unet", encoder="resnet18",
        description="U-Net with a ResNet-18 encoder (segmentation_models_pytorch, ~14.3M parameters)."),
    "fpn_resnet18": SegmentationArch(
        "cnn", "fpn", encoder="resnet18",
        description="FPN with a ResNet-18 encoder (segmentation_models_pytorch, ~13.0M parameters)."),
}
DEFAULT_ARCH = "vit_linear"
# The top-level ``head=`` key of configs written before ``model.arch``: each value names the ViT arch it meant.
HEAD_SYNONYMS = {"linear": "vit_linear", "linear_upsample": "vit_linear_upsample"}


def build_segmentation_model(arch: str, num_classes: int, loss: str, encoder: nn.Module | None = None) -> nn.Module:
    """The model ``arch`` names; a ViT arch needs the ``encoder`` (timm VisionTransformer), a CNN arch takes none."""
    spec = ARCHS[arch]
    if spec.family == "vit":
        if encoder is None:
            raise ValueError(f"{arch} is a ViT model: give it the encoder")
        return SegmentationModel(encoder, num_classes, spec.part, loss)
    return CNNSegmentationModel(spec.part, spec.encoder, num_classes, loss)


def model_for_config(model_cfg, num_classes: int, loss: str) -> nn.Module:
    """The segmentation model a ``SegmentConfig.model`` describes, with fresh weights: the training stage starts
    from it, and a trained run folder is rebuilt from it before its weights are loaded. A ViT's encoder is built
    with ``dynamic_img_size`` so that test-time augmentation's scales can feed it other sizes."""
    if ARCHS[model_cfg.arch].family == "cnn":
        return build_segmentation_model(model_cfg.arch, num_classes, loss)
    return build_segmentation_model(model_cfg.arch, num_classes, loss, build_encoder(model_cfg, dynamic_img_size=True))
