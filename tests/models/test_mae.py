"""MAE and the pretraining registry: what the encoder sees, what the loss covers, normalised targets, gradients, and
how an MAE export fits the segmentation models."""

import pytest
import torch

from simseg.config.sections import ModelConfig
from simseg.models.mae import MAE
from simseg.models.masking import masked_patch_count, random_unit_mask
from simseg.models.patches import normalize_patches, patchify, predictions_to_images
from simseg.models.pretraining import METHODS, build_pretrainer
from simseg.models.registry import ARCHS, build_segmentation_model
from simseg.models.simmim import SimMIM
from simseg.models.vit import build_encoder

SMALL = dict(depth=2, img_size=32, patch_size=8, embed_dim=32, num_heads=4, mlp_dim=64)  # 4x4 = 16 patches


class Decoder:
    dim, depth, num_heads = 16, 1, 2


def small_mae(masked: int = 12, norm_pix: bool = False) -> MAE:
    torch.manual_seed(0)
    return MAE(build_encoder(ModelConfig(**SMALL)), masked, decoder_dim=16, decoder_depth=1, decoder_heads=2,
               norm_pix=norm_pix)


def small_mask(batch: int, ratio: float = 0.75, seed: int = 0) -> torch.Tensor:
    return random_unit_mask(batch, 32, 8, 8, ratio, torch.Generator().manual_seed(seed))  # (B, 4, 4)


def test_the_encoder_receives_exactly_the_visible_tokens_in_order():
    model = small_mae().eval()
    images, mask = torch.randn(2, 3, 32, 32), small_mask(2)
    seen = {}
    model.encoder.blocks[0].register_forward_pre_hook(lambda module, args: seen.setdefault("tokens", args[0]))
    with torch.no_grad():
        model(images, mask)
    enc = model.encoder
    embedded = enc.patch_embed(images) + enc.pos_embed[:, 1:]  # (B, 16, D) every patch with its position
    tokens = seen["tokens"]
    assert tokens.shape == (2, 1 + 4, 32)  # the cls token and the 4 visible patches of 16
    for b in range(2):
        visible = (~mask[b].flatten()).nonzero().flatten()  # ascending token order
        assert torch.allclose(tokens[b, 1:], embedded[b, visible], atol=1e-6)
        assert torch.allclose(tokens[b, 0], (enc.cls_token + enc.pos_embed[:, 0])[0, 0], atol=1e-6)


def test_the_decoder_gets_each_visible_token_back_at_its_own_position():
    model = small_mae().eval()
    mask = small_mask(2)
    encoded = torch.randn(2, 5, 32)
    visible = torch.stack([(~m.flatten()).nonzero().flatten() for m in mask])  # (2, 4)
    seen = {}
    model.decoder_blocks[0].register_forward_pre_hook(lambda module, args: seen.setdefault("tokens", args[0]))
    with torch.no_grad():
        model.decode(encoded, visible)
    full = seen["tokens"] - model.decoder_pos_embed  # (2, 1 + 16, Dd) without the positions
    projected = model.decoder_embed(encoded)
    for b in range(2):
        assert torch.allclose(full[b, 1 + visible[b]], projected[b, 1:], atol=1e-6)
        assert torch.allclose(full[b, 0], projected[b, 0], atol=1e-6)
        hidden = mask[b].flatten().nonzero().flatten()
        assert torch.allclose(full[b, 1 + hidden], model.mask_token[0].expand(len(hidden), -1), atol=1e-6)


def test_masked_patch_contents_are_all_the_loss_depends_on_and_visible_ones_all_the_encoder_sees():
    model = small_mae().eval()
    images, mask = torch.randn(2, 3, 32, 32), small_mask(2)
    pixels = mask.repeat_interleave(8, 1).repeat_interleave(8, 2)[:, None].float()  # (B, 1, 32, 32)
    with torch.no_grad():
        base = model(images, mask)["loss_per_image"]
        # New content under the masked patches changes the targets (the loss) but not the prediction
        scrambled = images * (1 - pixels) + torch.randn_like(images) * pixels
        visible = torch.stack([(~m.flatten()).nonzero().flatten() for m in mask])
        assert torch.allclose(model.encode_visible(images, visible), model.encode_visible(scrambled, visible))
        assert not torch.allclose(model(scrambled, mask)["loss_per_image"], base)


@pytest.mark.parametrize("norm_pix", [False, True])
def test_mae_loss_is_the_mean_squared_error_on_the_masked_patches_by_hand(norm_pix):
    model = small_mae(norm_pix=norm_pix).eval()
    images, mask = torch.randn(2, 3, 32, 32), small_mask(2)
    with torch.no_grad():
        loss = model(images, mask)["loss_per_image"]
        visible = torch.stack([(~m.flatten()).nonzero().flatten() for m in mask])
        predictions = model.decoder_pred(model.decode(model.encode_visible(images, visible), visible))  # (B, 16, P)
    for b in range(2):
        total, count = 0.0, 0
        for n in range(16):
            if not mask[b].flatten()[n]:
                continue
            patch = patchify(images[b:b + 1], 8)[0, n]  # (192,)
            if norm_pix:
                patch = (patch - patch.mean()) / (patch.var(unbiased=False) + 1e-6).sqrt()
            total += ((predictions[b, n] - patch) ** 2).sum().item()
            count += patch.numel()
        assert loss[b].item() == pytest.approx(total / count, rel=1e-5)


@pytest.mark.parametrize("norm_pix", [False, True])
def test_simmim_loss_is_the_l1_on_the_masked_patches_by_hand(norm_pix):
    torch.manual_seed(0)
    model = SimMIM(build_encoder(ModelConfig(**SMALL)), masked_patches=12, norm_pix=norm_pix).eval()
    images, mask = torch.randn(2, 3, 32, 32), small_mask(2)
    with torch.no_grad():
        loss = model(images, mask)["loss_per_image"]
        predictions = model.decoder(model.encode(images, mask))  # (B, 16, 192)
    targets = patchify(images, 8)
    if norm_pix:
        targets = (targets - targets.mean(-1, keepdim=True)) / (targets.var(-1, unbiased=False, keepdim=True)
                                                                + 1e-6).sqrt()
    masked = mask.flatten(1)
    expected = torch.stack([(predictions[b, masked[b]] - targets[b, masked[b]]).abs().mean() for b in range(2)])
    assert torch.allclose(loss, expected, rtol=1e-5)


def test_normalised_patches_have_zero_mean_and_unit_variance_and_grids_undo_it():
    images = torch.rand(2, 3, 32, 32) * 3 + 1
    normalised = normalize_patches(patchify(images, 8))
    assert torch.allclose(normalised.mean(-1), torch.zeros(2, 16), atol=1e-5)
    assert torch.allclose(normalised.var(-1, unbiased=False), torch.ones(2, 16), atol=1e-3)
    # A perfect normalised prediction is drawn as the image itself
    assert torch.allclose(predictions_to_images(normalised, images, 8, (4, 4), norm_pix=True), images, atol=1e-4)
    assert torch.equal(predictions_to_images(patchify(images, 8), images, 8, (4, 4), norm_pix=False), images)


def test_a_flat_patch_normalises_to_zeros_not_nan():
    flat = normalize_patches(torch.full((1, 4, 12), 0.7))
    assert torch.isfinite(flat).all() and flat.abs().max() < 1e-3


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("norm_pix", [False, True])
def test_every_method_trains_a_step_with_a_finite_loss_and_a_gradient_for_every_parameter(method, norm_pix):
    torch.manual_seed(0)
    masked = masked_patch_count(32, 8, 8, METHODS[method].mask_ratio)
    model = build_pretrainer(method, build_encoder(ModelConfig(**SMALL)), masked, norm_pix, Decoder()).train()
    images, mask = torch.randn(3, 3, 32, 32), small_mask(3, METHODS[method].mask_ratio)
    out = model(images, mask, reconstruct=True)
    assert out["reconstruction"].shape == images.shape and out["loss_per_image"].shape == (3,)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    without = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without == []
    assert model.no_weight_decay() >= {"mask_token", "encoder.pos_embed", "encoder.cls_token"}


def test_a_mask_with_another_count_than_the_model_expects_is_refused():
    with pytest.raises(RuntimeError, match="masked_patches=12"):
        small_mae(masked=12)(torch.randn(1, 3, 32, 32), small_mask(1, ratio=0.5))


@pytest.mark.parametrize("arch", [name for name, a in ARCHS.items() if a.family == "vit"])
def test_an_mae_encoder_loads_into_every_vit_segmentation_model_with_exactly_the_head_missing(arch):
    mae = small_mae()
    model = build_segmentation_model(arch, 3, "ce", build_encoder(ModelConfig(**SMALL), dynamic_img_size=True))
    encoder_state = {f"encoder.{k}": v for k, v in mae.encoder.state_dict().items()}
    missing, unexpected = model.load_state_dict(encoder_state, strict=False)
    assert set(missing) == model.head_keys() and unexpected == []
    assert not any(k.startswith("encoder.") for k in missing)
