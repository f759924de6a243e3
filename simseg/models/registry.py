"""The segmentation models ``model.arch`` can name, behind one front door: :func:`build_segmentation_model`.

============================  =====  ==================================================================
arch                          family what it is
============================  =====  ==================================================================
``vit_linear`` (default)      vit    the study's ViT + linear head, pixel-shuffled to full resolution
``vit_linear_upsample``       vit    the ViT + a linear head to a class map, upsampled bilinearly
``vit_pup``                   vit    the ViT + a progressive-upsampling conv decoder (SETR-PUP, ~0.25M)
``vit_fused_skip``            vit    the ViT + a decoder fusing four blocks and image skips (~0.3M)
``unet_resnet18``             cnn    U-Net, ResNet-18 encoder (segmentation_models_pytorch, ~14.3M)
``fpn_resnet18``              cnn    FPN, ResNet-18 encoder (segmentation_models_pytorch, ~13.0M)
============================  =====  ==================================================================

A ViT model takes its encoder from the caller (built from ``model.*``, maybe loaded from a SimMIM export); a CNN
builds its own and takes ImageNet weights or a local weights file (:mod:`simseg.training.cnn_weights`), never a
ViT export.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from simseg.models.cnn_segmentation import CNNSegmentationModel
from simseg.models.segmentation import SegmentationModel


@dataclass(frozen=True)
class SegmentationArch:
    family: Literal["vit", "cnn"]
    part: str
    """The ViT's head (``SegmentationModel(head=...)``), or the smp model kind for a CNN."""
    encoder: str = ""
    """A CNN's encoder name in segmentation_models_pytorch."""


ARCHS: dict[str, SegmentationArch] = {
    "vit_linear": SegmentationArch("vit", "linear"),
    "vit_linear_upsample": SegmentationArch("vit", "linear_upsample"),
    "vit_pup": SegmentationArch("vit", "pup"),
    "vit_fused_skip": SegmentationArch("vit", "fused_skip"),
    "unet_resnet18": SegmentationArch("cnn", "unet", "resnet18"),
    "fpn_resnet18": SegmentationArch("cnn", "fpn", "resnet18"),
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
