import pytest
import torch

from simseg.config.sections import ModelConfig
from simseg.models.masking import mask_to_pixels, masked_patch_count, random_unit_mask
from simseg.models.simmim import SimMIM, masked_l1_loss, masked_patch_l1
from simseg.models.vit import build_encoder


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SimMIM(build_encoder(ModelConfig(depth=2))).eval()


def test_masked_l1_matches_hand_computation():
    target = torch.zeros(1, 3, 2, 2)
    recon = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]] * 3])
    pixel_mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    # masked pixels (0,0) and (1,1) over 3 channels: (1 + 4) * 3 / 6
    assert masked_l1_loss(recon, target, pixel_mask).item() == pytest.approx(2.5)


def test_loss_ignores_predictions_on_visible_pixels():
    torch.manual_seed(0)
    target, recon = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    mask = random_unit_mask(2, 32, 8, 8, 0.5, torch.Generator().manual_seed(0))
    pixels = mask_to_pixels(mask, 8)
    loss = masked_l1_loss(recon, target, pixels)
    changed_visible = recon + 5.0 * (1 - pixels.float())
    assert torch.allclose(masked_l1_loss(changed_visible, target, pixels), loss)
    changed_masked = recon + 5.0 * pixels.float()
    assert not torch.allclose(masked_l1_loss(changed_masked, target, pixels), loss)


def test_forward_shapes_and_finite(model):
    images = torch.randn(3, 3, 128, 128)
    mask = random_unit_mask(3, 128, 16, 16, 0.5, torch.Generator().manual_seed(0))
    out = model(images=images, mask=mask, reconstruct=True)
    assert out["reconstruction"].shape == images.shape
    assert out["loss_per_image"].shape == (3,)
    assert torch.isfinite(out["loss"])


def test_masked_patch_contents_never_reach_the_encoder(model):
    """The mask token replaces masked patches: changing their pixels changes nothing the encoder computes."""
    images = torch.randn(2, 3, 128, 128)
    mask = random_unit_mask(2, 128, 16, 16, 0.5, torch.Generator().manual_seed(0))
    pixels = mask_to_pixels(mask, 16).float()
    scrambled = images * (1 - pixels) + torch.randn_like(images) * pixels
    with torch.no_grad():
        assert torch.allclose(model.encode(images, mask), model.encode(scrambled, mask), atol=1e-6)
        unmasked = torch.zeros_like(mask)
        assert not torch.allclose(model.encode(images, unmasked), model.encode(scrambled, unmasked), atol=1e-3)


def test_every_parameter_gets_a_gradient():
    model = SimMIM(build_encoder(ModelConfig(depth=2))).train()
    mask = random_unit_mask(2, 128, 16, 32, 0.5, torch.Generator().manual_seed(0))
    model(images=torch.randn(2, 3, 128, 128), mask=mask)["loss"].backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_no_weight_decay_names_exist(model):
    names = dict(model.named_parameters())
    assert {"mask_token", "encoder.pos_embed", "encoder.cls_token"} <= model.no_weight_decay()
    assert {"mask_token", "encoder.pos_embed", "encoder.cls_token"} <= set(names)


def test_the_loss_on_masked_patches_equals_the_pixel_definition(model):
    """The model decodes only masked tokens; its loss must be the masked-pixel L1 of the full reconstruction, also
    for masks with a different count per image (and an image with none)."""
    images = torch.randn(3, 3, 128, 128)
    mask = random_unit_mask(3, 128, 16, 16, 0.5, torch.Generator().manual_seed(1))
    mask[1, :2] = ~mask[1, :2]
    mask[2] = False
    with torch.no_grad():
        out = model(images=images, mask=mask, reconstruct=True)
        reference = masked_l1_loss(out["reconstruction"], images, mask_to_pixels(mask, 16))
    assert torch.allclose(out["loss_per_image"], reference, atol=1e-6) and out["loss_per_image"][2] == 0
    predictions, targets = torch.randn(5, 4), torch.randn(5, 4)
    token_mask = torch.tensor([[True, False, True], [False, False, False], [True, True, True]])
    expected = torch.stack([(predictions[:2] - targets[:2]).abs().mean(), torch.tensor(0.0),
                            (predictions[2:] - targets[2:]).abs().mean()])
    assert torch.allclose(masked_patch_l1(predictions, targets, token_mask), expected)


def test_a_fixed_mask_count_gives_the_same_loss_and_gradients_with_static_shapes():
    torch.manual_seed(0)
    general = SimMIM(build_encoder(ModelConfig(depth=2))).train()
    fixed = SimMIM(build_encoder(ModelConfig(depth=2)), masked_patches=masked_patch_count(128, 16, 32, 0.5)).train()
    fixed.load_state_dict(general.state_dict())
    images = torch.randn(3, 3, 128, 128)
    mask = random_unit_mask(3, 128, 16, 32, 0.5, torch.Generator().manual_seed(2))
    losses = []
    for model in (general, fixed):
        torch.manual_seed(1)  # the same dropout draws, if any
        out = model(images=images, mask=mask, reconstruct=True)
        out["loss"].backward()
        losses.append(out["loss_per_image"].detach())
        reference = masked_l1_loss(out["reconstruction"], images, mask_to_pixels(mask, 16))
        assert torch.allclose(out["loss_per_image"], reference, atol=1e-6)
    assert torch.allclose(losses[0], losses[1], atol=1e-6)
    for (name, a), b in zip(general.named_parameters(), fixed.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name
    uneven = mask.clone()
    uneven[0, 0, 0] = ~uneven[0, 0, 0]
    with pytest.raises(RuntimeError, match="another count per image"):
        fixed(images=images, mask=uneven)


@pytest.mark.slow  # a torch.compile build: seconds, left to the full suite
def test_a_fixed_mask_count_compiles_into_one_graph():
    """Boolean indexing has data-dependent shapes: torch.compile splits the forward there and a GPU syncs."""
    torch._dynamo.reset()
    model = SimMIM(build_encoder(ModelConfig(depth=1)), masked_patches=32)
    mask = random_unit_mask(2, 128, 16, 16, 0.5, torch.Generator().manual_seed(0))
    explained = torch._dynamo.explain(model)(torch.randn(2, 3, 128, 128), mask)
    assert explained.graph_break_count == 0 and explained.graph_count == 1, explained.break_reasons
    torch._dynamo.reset()
