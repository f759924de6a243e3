"""Test-time augmentation: identity views equal plain evaluation, flips are undone, scales reach every model."""

import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, TensorDataset

from simseg.config.sections import ModelConfig
from simseg.models.registry import ARCHS, build_segmentation_model
from simseg.models.vit import build_encoder
from simseg.training.engine import evaluate_confusion, reset_accelerate_state
from simseg.training.tta import tta_probabilities, view_size


class LeftHalfIsPet(torch.nn.Module):
    """Predicts class 1 on the image's left half and 0 on the right, whatever the image: a flipped view predicts
    the mirror, so only a correct un-flip gives back the left half."""

    def forward(self, images):
        b, _, h, w = images.shape
        logits = torch.zeros(b, 3, h, w)
        logits[:, 1, :, : w // 2] = 5.0
        logits[:, 0, :, w // 2:] = 5.0
        return {"logits": logits}


def test_a_flip_view_is_unflipped_before_averaging():
    probs = tta_probabilities(LeftHalfIsPet(), torch.zeros(1, 3, 8, 8), [1.0], flip=True)
    # plain view: left pet, right background; flipped view un-flipped: right pet, left background -> an even mix
    assert torch.allclose(probs[0, 1], probs[0, 0]) and probs[0, 1].max() < 0.5
    plain = tta_probabilities(LeftHalfIsPet(), torch.zeros(1, 3, 8, 8), [1.0], flip=False)
    assert (plain[0, 1, :, :4] > 0.9).all() and (plain[0, 0, :, 4:] > 0.9).all()


def test_a_symmetric_model_gives_the_same_answer_through_a_flip():
    class Mirror(torch.nn.Module):  # logits = the image's channels: a flip of the input flips the output
        def forward(self, images):
            return {"logits": images * 3}

    images = torch.randn(2, 3, 8, 8)
    assert torch.allclose(tta_probabilities(Mirror(), images, [1.0], flip=True), (images * 3).softmax(1), atol=1e-6)


def test_identity_views_equal_plain_evaluation():
    reset_accelerate_state()
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    model = build_segmentation_model("vit_linear", 3, "ce", build_encoder(ModelConfig(img_size=64, depth=1)))
    data = TensorDataset(torch.randn(6, 3, 64, 64), torch.randint(0, 3, (6, 64, 64)))
    loader = accelerator.prepare(DataLoader(data, batch_size=4))
    plain = evaluate_confusion(model, loader, accelerator, 3)
    assert torch.equal(evaluate_confusion(model, loader, accelerator, 3, ([1.0], False)), plain)
    assert not torch.equal(evaluate_confusion(model, loader, accelerator, 3, ([0.75, 1.0, 1.25], True)), plain)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_model_takes_the_scaled_views(arch):
    torch.manual_seed(0)
    encoder = build_encoder(ModelConfig(depth=1), dynamic_img_size=True) if ARCHS[arch].family == "vit" else None
    model = build_segmentation_model(arch, 3, "ce", encoder).eval()
    with torch.no_grad():
        probs = tta_probabilities(model, torch.randn(1, 3, 128, 128), [0.75, 1.0, 1.25], flip=True)
    assert probs.shape == (1, 3, 128, 128) and torch.allclose(probs.sum(1), torch.ones(1, 128, 128), atol=1e-5)
    assert [view_size(128, s) for s in (0.75, 1.0, 1.25)] == [96, 128, 160]
