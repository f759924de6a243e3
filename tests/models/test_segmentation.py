import pytest
import torch
import torch.nn.functional as F

from simseg.config.sections import ModelConfig
from simseg.errors import SimsegError
from simseg.models.segmentation import SegmentationModel, soft_dice_loss
from simseg.models.vit import build_encoder
from simseg.training.handoff import load_encoder_weights
from simseg.training.optim import build_adamw, set_lr

# 32 x 32 images in 8 x 8 patches: a 4 x 4 token grid
SMALL = ModelConfig(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_dim=64)


def model_and_batch(head="linear", loss="ce", seed=0):
    torch.manual_seed(seed)
    model = SegmentationModel(build_encoder(SMALL), num_classes=3, head=head, loss=loss)
    images = torch.randn(2, 3, 32, 32)
    mask = torch.randint(0, 3, (2, 32, 32))
    return model, images, mask


@pytest.mark.parametrize("head", ["linear", "linear_upsample"])
@pytest.mark.parametrize("loss", ["ce", "ce+dice"])
def test_full_resolution_logits_finite_loss_and_every_parameter_gets_a_gradient(head, loss):
    model, images, mask = model_and_batch(head, loss)
    out = model(images, mask)
    assert out["logits"].shape == (2, 3, 32, 32) and out["loss"].shape == ()
    assert torch.isfinite(out["logits"]).all() and torch.isfinite(out["loss"])
    assert set(model(images)) == {"logits"}
    out["loss"].backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad


def test_linear_head_puts_each_tokens_logits_in_its_own_patch(monkeypatch):
    model, images, _ = model_and_batch("linear")
    with torch.no_grad():
        model.head.weight.fill_(1.0)
        model.head.bias.zero_()
    tokens = torch.zeros(2, 16, 32)  # (B, N, D)
    tokens[:, 6] = 1.0  # token 6 of the 4 x 4 grid: row 1, column 2
    monkeypatch.setattr(model, "features", lambda images: tokens)
    logits = model(images)["logits"]
    nonzero = logits.abs().sum((0, 1)) > 0  # (H, W)
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[8:16, 16:24] = True
    assert torch.equal(nonzero, expected)


def test_upsample_head_interpolates_a_token_map():
    model, images, _ = model_and_batch("linear_upsample")
    tokens = model.features(images)  # (B, 16, D)
    coarse = model.head(tokens).transpose(1, 2).reshape(2, 3, 4, 4)
    expected = F.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
    torch.testing.assert_close(model(images)["logits"], expected)


def test_frozen_encoder_gets_no_gradient_and_the_head_does():
    model, images, mask = model_and_batch()
    model.freeze_encoder = True
    model(images, mask)["loss"].backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.head.parameters())


def test_soft_dice_loss_is_zero_for_a_perfect_prediction_and_near_one_for_a_wrong_one():
    target = torch.randint(0, 3, (2, 8, 8))
    perfect = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 100
    assert soft_dice_loss(perfect, target) < 1e-4
    wrong = F.one_hot((target + 1) % 3, 3).permute(0, 3, 1, 2).float() * 100
    assert soft_dice_loss(wrong, target) > 0.95


def test_ce_plus_dice_is_half_and_half():
    model, images, mask = model_and_batch(loss="ce+dice")
    torch.manual_seed(1)
    model.eval()
    out = model(images, mask)
    expected = 0.5 * F.cross_entropy(out["logits"], mask) + 0.5 * soft_dice_loss(out["logits"], mask)
    torch.testing.assert_close(out["loss"], expected)


def test_no_weight_decay_and_layer_decay_groups():
    model, _, _ = model_and_batch()
    assert {"encoder.pos_embed", "encoder.cls_token"} <= model.no_weight_decay()
    optimizer = build_adamw(model, lr=1.0, weight_decay=0.1, layer_decay=0.5)
    set_lr(optimizer, 2.0)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    # groups: embeddings, block 0, block 1 with the final norm, head -> LR x 0.5^3, 0.5^2, 0.5^1, 0.5^0
    assert lr_of[id(params["head.weight"])] == lr_of[id(params["head.bias"])] == 2.0
    assert lr_of[id(params["encoder.norm.weight"])] == lr_of[id(params["encoder.blocks.1.mlp.fc1.weight"])] == 1.0
    assert lr_of[id(params["encoder.blocks.0.attn.qkv.weight"])] == 0.5
    assert lr_of[id(params["encoder.patch_embed.proj.weight"])] == lr_of[id(params["encoder.pos_embed"])] == 0.25
    assert decay_of[id(params["head.weight"])] == 0.1 and decay_of[id(params["encoder.pos_embed"])] == 0.0
    assert decay_of[id(params["head.bias"])] == 0.0
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(params)
    plain = build_adamw(model, lr=1.0, weight_decay=0.1)  # layer_decay 1: every group at the scheduled LR
    set_lr(plain, 2.0)
    assert {g["lr"] for g in plain.param_groups} == {2.0}


def test_loading_an_encoder_checks_that_exactly_the_head_is_missing():
    model, _, _ = model_and_batch()
    donor = build_encoder(SMALL).state_dict()
    load_encoder_weights(model, donor, "donor")
    assert torch.equal(model.encoder.pos_embed, donor["pos_embed"])
    assert model.head_keys() == {"head.weight", "head.bias"}
    incomplete = {k: v for k, v in donor.items() if k != "blocks.1.norm1.weight"}
    with pytest.raises(SimsegError, match=r"wrong.safetensors does not fit .*missing \['encoder.blocks.1.norm1"):
        load_encoder_weights(model, incomplete, "wrong.safetensors")
    with pytest.raises(SimsegError, match=r"unexpected \['encoder.decoder.weight'\]"):
        load_encoder_weights(model, {**donor, "decoder.weight": torch.zeros(1)}, "simmim.safetensors")
