"""Every registered segmentation model behind the one front door: shapes, gradients, losses, and the SimMIM export
loading into every ViT variant with exactly the decoder's keys missing."""

import pytest
import torch

from simseg.config.sections import ModelConfig
from simseg.errors import SimsegError
from simseg.models.registry import ARCHS, build_segmentation_model
from simseg.models.segmentation import IGNORE_INDEX, segmentation_loss
from simseg.models.vit import build_encoder
from simseg.training.handoff import load_encoder_weights

VIT_ARCHS = [name for name, spec in ARCHS.items() if spec.family == "vit"]


def build(arch: str, img_size: int, depth: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    encoder = None
    if ARCHS[arch].family == "vit":  # the study's patch and width, two blocks: seconds on a CPU
        encoder = build_encoder(ModelConfig(img_size=img_size, depth=depth))
    return build_segmentation_model(arch, 3, "ce+dice", encoder)


@pytest.mark.parametrize("img_size", [128, 96])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_logits_have_the_inputs_size_every_parameter_learns_and_the_loss_is_finite(arch, img_size):
    model = build(arch, img_size)
    images, mask = torch.randn(2, 3, img_size, img_size), torch.randint(0, 3, (2, img_size, img_size))
    out = model(images=images, mask=mask)
    assert out["logits"].shape == (2, 3, img_size, img_size)
    assert torch.isfinite(out["loss"]) and set(model(images=images)) == {"logits"}
    out["loss"].backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


@pytest.mark.parametrize("arch", VIT_ARCHS)
def test_a_vit_export_loads_into_every_vit_variant_leaving_exactly_the_decoder_missing(arch):
    exported = build_encoder(ModelConfig(depth=2)).state_dict()
    model = build(arch, 128)
    decoder_keys = {k for k in model.state_dict() if not k.startswith("encoder.") and "num_batches" not in k}
    assert model.head_keys() == decoder_keys and decoder_keys
    load_encoder_weights(model, exported, "export")
    assert all(torch.equal(model.encoder.state_dict()[k], v) for k, v in exported.items())
    with pytest.raises(SimsegError, match="does not fit the model's encoder"):
        load_encoder_weights(model, {k: v for k, v in exported.items() if k != "pos_embed"}, "export")


def test_the_fused_decoder_reads_four_evenly_spaced_blocks_and_the_image():
    model = build("vit_fused_skip", 128, depth=12)
    assert model.head.block_indices == [2, 5, 8, 11]
    images = torch.randn(1, 3, 128, 128)
    model.eval()
    with torch.no_grad():
        before = model(images=images)["logits"]
        nudged = images.clone()
        nudged[..., 60:64, 60:64] += 1.0  # inside one 16-pixel token: the ViT sees it blurred, the stem sharply
        after = model(images=nudged)["logits"]
    changed = (after - before).abs().amax(1)[0] > 1e-6  # (H, W) pixels whose logits moved
    assert changed[60:64, 60:64].all() and changed.sum() < 128 * 128


def test_cnn_models_refuse_sides_that_are_not_multiples_of_32():
    with pytest.raises(ValueError, match="multiples of 32"):
        build("unet_resnet18", 0)(images=torch.randn(1, 3, 80, 80))


def test_ignored_pixels_add_no_loss():
    logits = torch.randn(2, 3, 8, 8)
    mask = torch.randint(0, 3, (2, 8, 8))
    corners = mask.clone()
    corners[:, :2, :2] = IGNORE_INDEX
    shifted = logits.clone()
    shifted[:, :, :2, :2] += 100 * torch.randn(2, 3, 2, 2)  # whatever is predicted there must not matter
    for loss in ("ce", "ce+dice"):
        assert torch.isclose(segmentation_loss(logits, corners, loss), segmentation_loss(shifted, corners, loss))
        assert not torch.isclose(segmentation_loss(logits, mask, loss), segmentation_loss(shifted, mask, loss))
