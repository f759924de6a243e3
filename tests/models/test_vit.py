import pytest
import timm
import torch

import simseg.models.vit  # noqa: F401  (registers the models)
from simseg.config.sections import ModelConfig
from simseg.models.vit import build_encoder


def test_study_encoder_through_timm_front_door():
    encoder = timm.create_model("simseg_vit_tiny_patch16_128")
    assert sum(p.numel() for p in encoder.parameters()) == 2_486_400  # the study's ~2.5M
    assert encoder.patch_embed.grid_size == (8, 8) and encoder.embed_dim == 128 and len(encoder.blocks) == 12
    assert encoder.cls_token is not None and encoder.pos_embed.shape == (1, 65, 128)
    assert encoder.blocks[0].mlp.fc1.out_features == 512 and encoder.blocks[0].attn.num_heads == 8
    assert encoder(torch.randn(2, 3, 128, 128)).shape == (2, 128)


def test_other_sizes_come_from_the_same_builder():
    base = ModelConfig(name="simseg_vit_base_patch16_128")
    assert (base.embed_dim, base.num_heads, base.mlp_dim) == (768, 12, 3072)
    small = build_encoder(ModelConfig(depth=3, drop_path_rate=0.1, drop_rate=0.1))
    assert len(small.blocks) == 3 and small.blocks[2].drop_path1.drop_prob == pytest.approx(0.1)
    assert small.pos_drop.p == 0.1 and small.blocks[0].mlp.drop1.p == 0.1 and small.blocks[0].attn.proj_drop.p == 0.1


def test_sincos_position_embedding_init_stays_learnable():
    from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed

    encoder = build_encoder(ModelConfig(depth=1, pos_embed_init="sincos"))
    assert torch.equal(encoder.pos_embed[0, 1:], build_sincos2d_pos_embed([8, 8], 128))
    assert torch.all(encoder.pos_embed[0, 0] == 0) and encoder.pos_embed.requires_grad
    random = build_encoder(ModelConfig(depth=1))
    assert random.pos_embed.std() < 0.05  # timm's default: trunc-normal, std 0.02
