"""CNN baselines from segmentation_models_pytorch: what a researcher would train instead of the ViT.

``unet_resnet18`` is the usual Oxford-IIIT Pet baseline (U-Net decoder on a ResNet-18 encoder, ~14.3M parameters,
11.2M of them the encoder); ``fpn_resnet18`` is the lighter FPN decoder on the same encoder. Both are built without
weights; :mod:`simseg.training.cnn_weights` puts ImageNet (or a local file's) weights into the encoder afterwards,
so a pretrained model's decoder starts exactly as a scratch model's of the same seed.

The wrapper gives them the ViT model's interface: ``forward(images, mask=None) -> {"logits", "loss"}``,
``encoder``, ``head_keys()``, ``no_weight_decay()`` and ``freeze_encoder``.
"""

from __future__ import annotations

import torch
from torch import nn

from simseg.models.segmentation import BN_COUNTER, LOSSES, with_loss

SMP_MODELS = {"unet": "Unet", "fpn": "FPN"}
ENCODER_STRIDE = 32  # ResNet's five stride-2 stages: inputs must be multiples of 32


class CNNSegmentationModel(nn.Module):
    """An smp model (``kind`` ``unet`` or ``fpn``) with a timm/torchvision ``encoder_name`` encoder.

    ``forward`` runs smp's encoder, decoder and segmentation head itself (not ``smp.Unet.forward``) so that
    ``freeze_encoder`` can run the encoder without gradients, as the ViT model does."""

    def __init__(self, kind: str, encoder_name: str, num_classes: int = 3, loss: str = "ce"):
        super().__init__()
        import segmentation_models_pytorch as smp

        if kind not in SMP_MODELS or loss not in LOSSES:
            raise ValueError(f"kind must be one of {tuple(SMP_MODELS)} and loss one of {LOSSES}")
        self.net = getattr(smp, SMP_MODELS[kind])(encoder_name=encoder_name, encoder_weights=None,
                                                  classes=num_classes)
        self.encoder_name, self.num_classes, self.loss_type = encoder_name, num_classes, loss
        self.freeze_encoder = False

    @property
    def encoder(self) -> nn.Module:
        return self.net.encoder

    def no_weight_decay(self) -> set[str]:
        return set()  # norms and biases are 1-D, which the optimiser already leaves undecayed

    def head_keys(self) -> set[str]:
        """State-dict keys outside the encoder (decoder and segmentation head; BatchNorm step counters aside)."""
        return {k for k in self.state_dict() if not k.startswith("net.encoder.") and not k.endswith(BN_COUNTER)}

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if images.shape[-1] % ENCODER_STRIDE or images.shape[-2] % ENCODER_STRIDE:
            raise ValueError(f"{self.encoder_name} needs image sides that are multiples of {ENCODER_STRIDE}, "
                             f"got {tuple(images.shape[-2:])}")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            features = self.net.encoder(images)  # [(B, C_i, H / 2^i, W / 2^i) for i = 0..5]
        logits = self.net.segmentation_head(self.net.decoder(features))  # (B, C, H, W)
        return with_loss({"logits": logits}, mask, self.loss_type)
