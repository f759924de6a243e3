"""The cost figures of metrics.json, checked against hand counts for the study's ViT."""

import timm
import torch

import simseg.models.vit  # noqa: F401  (registers the study's encoder with timm)
from simseg.config.sections import ModelConfig
from simseg.models.cost import forward_flops, inference_images_per_s, model_cost, parameter_counts
from simseg.models.registry import build_segmentation_model
from simseg.models.vit import build_encoder


def study_vit_linear():
    return build_segmentation_model("vit_linear", 3, "ce", build_encoder(ModelConfig()))


def test_study_vit_flops_equal_a_hand_count_with_attention_included():
    # 128 px, patch 16: N = 64 patches + 1 cls = 65 tokens, D = 128, MLP 512, 12 blocks; 2 FLOPs per multiply-add.
    n, d, mlp, depth = 65, 128, 512, 12
    patch_embed = 64 * (16 * 16 * 3) * d  # a 16x16x3 -> 128 convolution per patch
    linears = n * (d * 3 * d + d * d + 2 * d * mlp)  # qkv, output projection, MLP in and out
    attention = 2 * n * n * d  # q.k^T and attention.v over all heads
    head = 64 * d * (16 * 16 * 3)  # each patch token -> 16 x 16 pixels x 3 classes
    hand = 2 * (patch_embed + depth * (linears + attention) + head)
    assert hand == 357_832_704
    assert forward_flops(study_vit_linear(), 128) == hand


def test_cpu_attention_is_counted():
    encoder = timm.create_model("simseg_vit_tiny_patch16_128", depth=1).eval()
    without_attention = 2 * (64 * 768 * 128 + 65 * (128 * 384 + 128 * 128 + 2 * 128 * 512))

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, images):
            return self.encoder.forward_features(images)

    assert forward_flops(Wrapped(), 128) == without_attention + 2 * 2 * 65 * 65 * 128


def test_parameter_counts_split_the_encoder_from_the_head():
    counts = parameter_counts(study_vit_linear())
    # encoder: patch embedding, cls and position embeddings, 12 blocks, final norm; head: 128 -> 768 linear
    embed = 768 * 128 + 128 + 128 + 65 * 128
    block = 2 * 2 * 128 + (128 * 384 + 384) + (128 * 128 + 128) + (128 * 512 + 512) + (512 * 128 + 128)
    encoder = embed + 12 * block + 2 * 128
    assert counts == {"parameters": encoder + 128 * 768 + 768, "encoder_parameters": encoder}
    assert encoder == 2_486_400


def test_model_cost_has_the_metrics_keys_and_leaves_the_model_training():
    model = build_segmentation_model("vit_pup", 3, "ce", build_encoder(ModelConfig(img_size=32, depth=1)))
    cost = model_cost(model, 32)
    assert set(cost) == {"parameters", "encoder_parameters", "gflops", "inference_images_per_s"}
    assert cost["gflops"] > 0 and cost["inference_images_per_s"] > 0 and model.training
    assert inference_images_per_s(model, 32, batch_size=2, repeats=1) > 0
