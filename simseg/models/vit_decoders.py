"""Light decoders from a ViT's token grid to per-pixel logits, that can draw what a linear head cannot.

A linear map from an 8 x 8 token grid to the 16 x 16 pixels of each token predicts blocky tiles and barely learns a
3-pixel boundary band. Both decoders here upsample progressively with 3 x 3 convolutions (SETR's PUP), so
neighbouring tokens shape each pixel; the second also fuses several blocks' tokens (SimMIM's linear probe is best on
an intermediate block) and sees the image itself at full and half resolution, where boundaries are sharp (the skip
connections of UNETR and U-Net, at a small width).

Each decoder takes ``maps``: the tokens of the encoder blocks it asked for (``block_indices``), each reshaped to a
map (B, D, H/p, W/p), and the normalised ``images`` (B, 3, H, W); it returns logits (B, C, H, W). Both stay under
~0.4M parameters at the study's width (D = 128).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3 x 3 convolution (no bias: the norm has one), batch norm, ReLU: U-Net's and SETR's unit."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class ProgressiveUpsampleDecoder(nn.Module):
    """SETR-PUP at a small width: the last block's map, then (3 x 3 conv, BN, ReLU, x2 bilinear) until the map has
    the image's size, then a 1 x 1 classifier. For patch 16 that is four steps: 8 -> 16 -> 32 -> 64 -> 128 (each
    convolution runs before its upsampling, so the widest one sees the smallest map)."""

    def __init__(self, embed_dim: int, depth: int, patch_size: int, num_classes: int,
                 widths: tuple[int, ...] = (128, 64, 32, 16)):
        super().__init__()
        steps = patch_size.bit_length() - 1
        if 2**steps != patch_size:
            raise ValueError(f"the progressive decoder needs a power-of-two patch size, got {patch_size}")
        widths = (list(widths) + [widths[-1]] * steps)[:steps]
        self.block_indices = [depth - 1]
        self.stages = nn.ModuleList(conv_bn_relu(c_in, c_out) for c_in, c_out in zip([embed_dim, *widths], widths))
        self.classifier = nn.Conv2d(widths[-1], num_classes, 1)

    def forward(self, maps: list[torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        x = maps[-1]  # (B, D, H/p, W/p)
        for stage in self.stages:
            x = upsample2(stage(x))  # width halves ... while the map doubles
        return self.classifier(x)  # (B, C, H, W)


class FusedSkipDecoder(nn.Module):
    """Tokens of four evenly spaced blocks (for depth 12: blocks 3, 6, 9 and 12, 1-based), concatenated and mixed by
    a 1 x 1 convolution, upsampled progressively like :class:`ProgressiveUpsampleDecoder`; at half and full
    resolution each step is concatenated with a small convolutional stem of the image (its skip connections), so
    the last layers place class boundaries on the image's own edges."""

    def __init__(self, embed_dim: int, depth: int, patch_size: int, num_classes: int,
                 widths: tuple[int, ...] = (96, 64, 32, 16), stem_widths: tuple[int, int] = (16, 32)):
        super().__init__()
        steps = patch_size.bit_length() - 1
        if 2**steps != patch_size or steps < 2:
            raise ValueError(f"the fused decoder needs a power-of-two patch size >= 4, got {patch_size}")
        widths = (list(widths) + [widths[-1]] * steps)[:steps]
        self.block_indices = sorted({-(-depth * k // 4) - 1 for k in (1, 2, 3, 4)})  # ceil: distinct, >= 0
        self.fuse = nn.Sequential(nn.Conv2d(embed_dim * len(self.block_indices), embed_dim, 1, bias=False),
                                  nn.BatchNorm2d(embed_dim), nn.ReLU(inplace=True))
        full, half = stem_widths
        self.stem_full = conv_bn_relu(3, full)  # (B, full, H, W)
        self.stem_half = conv_bn_relu(full, half, stride=2)  # (B, half, H/2, W/2)
        self.stages = nn.ModuleList(conv_bn_relu(c_in, c_out) for c_in, c_out in zip([embed_dim, *widths], widths))
        # After the second-to-last upsampling the map is at H/2: it meets the half stem there, the full one last.
        self.merge_half = conv_bn_relu(widths[-2] + half, widths[-2])
        self.merge_full = conv_bn_relu(widths[-1] + full, widths[-1])
        self.classifier = nn.Conv2d(widths[-1], num_classes, 1)

    def forward(self, maps: list[torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        full = self.stem_full(images)
        half = self.stem_half(full)
        x = self.fuse(torch.cat(maps, dim=1))  # (B, D, H/p, W/p)
        *coarse, second_last, last = self.stages
        for stage in coarse:
            x = upsample2(stage(x))
        x = upsample2(second_last(x))  # (B, widths[-2], H/2, W/2)
        x = self.merge_half(torch.cat([x, half], dim=1))
        x = upsample2(last(x))  # (B, widths[-1], H, W)
        x = self.merge_full(torch.cat([x, full], dim=1))
        return self.classifier(x)  # (B, C, H, W)


DECODERS = {"pup": ProgressiveUpsampleDecoder, "fused_skip": FusedSkipDecoder}
