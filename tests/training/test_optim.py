import math

import pytest
import torch

from simseg.config.sections import ModelConfig, TrainConfig
from simseg.models.simmim import SimMIM
from simseg.models.vit import build_encoder
from simseg.training.optim import build_adamw, milestone_epochs, schedule_for, step_lr


def test_milestones_as_fractions_or_epochs():
    assert milestone_epochs([0.5, 0.85], 100) == [50, 85]
    assert milestone_epochs([85, 50], 100) == [50, 85]
    assert milestone_epochs([0.5, 90], 200) == [90, 100]


def test_study_schedule_steps_down_after_epochs_50_and_85():
    lr_at = schedule_for(TrainConfig(), steps_per_epoch=10)
    assert lr_at(0) == pytest.approx(1e-4) and lr_at(499) == pytest.approx(1e-4)
    assert lr_at(500) == pytest.approx(1e-5) and lr_at(849) == pytest.approx(1e-5)
    assert lr_at(850) == pytest.approx(1e-6) and lr_at(999) == pytest.approx(1e-6)


def test_linear_warmup():
    assert [step_lr(s, 1.0, 4, [], 0.1) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    lr_at = schedule_for(TrainConfig(warmup_epochs=0.5, epochs=4, milestones=[2]), steps_per_epoch=4)
    assert lr_at(0) == pytest.approx(0.5e-4) and lr_at(2) == pytest.approx(1e-4) and lr_at(8) == pytest.approx(1e-5)


def test_no_weight_decay_on_norms_biases_embeddings_and_mask_token():
    model = SimMIM(build_encoder(ModelConfig(depth=1)))
    optimizer = build_adamw(model, 1e-4, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    plain = {names[id(p)] for g in optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert {"mask_token", "encoder.pos_embed", "encoder.cls_token", "encoder.norm.weight", "decoder.bias",
            "encoder.blocks.0.attn.qkv.bias"} <= plain
    assert {"decoder.weight", "encoder.blocks.0.attn.qkv.weight", "encoder.patch_embed.proj.weight"} <= decayed
    assert all(g["weight_decay"] == 0.05 for g in optimizer.param_groups if g["weight_decay"] > 0)
    assert len(decayed | plain) == len(list(model.parameters()))
    assert isinstance(optimizer, torch.optim.AdamW)


def test_cosine_schedule_warms_up_then_falls_to_its_floor():
    lr_at = schedule_for(TrainConfig(epochs=10, lr=1.0, warmup_epochs=1, schedule="cosine", min_lr=0.1),
                         steps_per_epoch=10)
    assert [lr_at(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])  # warmup over the first 10 steps
    assert lr_at(10) == pytest.approx(1.0)  # the cosine starts at the peak
    assert lr_at(55) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the 90 cosine steps: the middle
    assert lr_at(99) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert lr_at(100) == pytest.approx(0.1) and lr_at(500) == pytest.approx(0.1)
    values = [lr_at(s) for s in range(10, 100)]
    assert values == sorted(values, reverse=True)


def test_constant_schedule_ignores_the_milestones():
    lr_at = schedule_for(TrainConfig(epochs=4, lr=2.0, warmup_epochs=0.5, schedule="constant", milestones=[1, 2]),
                         steps_per_epoch=4)
    assert [lr_at(s) for s in range(16)] == pytest.approx([1.0, 2.0] + [2.0] * 14)


def test_a_module_without_no_weight_decay_gets_decay_on_its_matrices_only():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8))  # the GPU test's kind of model
    groups = build_adamw(model, 1e-3, 0.05).param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model[0].weight)}
