import math

import pytest
import torch

from simseg.config.sections import AugConfig, ModelConfig
from simseg.data.batch_augment import AugmentParams, BatchAugment, apply, sample_params
from simseg.errors import SimsegError
from simseg.models.masking import random_unit_mask
from simseg.models.simmim import SimMIM
from simseg.models.vit import build_encoder
from tests.data.reference_augment import reference_apply

MEAN, STD = AugConfig().mean, AugConfig().std
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def images(batch, height, width, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8, generator=generator).to(DEVICE)


def params(**fields):
    """Hand-made parameters: boxes (top, left, height, width) at the borders, tiny and whole, with and without flip."""
    boxes = torch.tensor([[0, 0, 40, 48], [0, 0, 5, 7], [35, 41, 5, 7], [0, 47, 40, 1], [39, 0, 1, 48],
                          [10, 3, 21, 30], [2, 9, 38, 39], [0, 0, 2, 2]], dtype=torch.float32)
    batch = len(boxes)
    ones = torch.ones(batch)
    values = dict(heights=torch.full((batch,), 40), widths=torch.full((batch,), 48), top=boxes[:, 0],
                  left=boxes[:, 1], height=boxes[:, 2], width=boxes[:, 3], flip=torch.arange(batch) % 2 == 1,
                  jitter=torch.zeros(batch, dtype=torch.bool), brightness=ones, contrast=ones, saturation=ones,
                  hue=torch.zeros(batch), angle=torch.zeros(batch, dtype=torch.float64),
                  blur=torch.zeros(batch, dtype=torch.bool), sigma=ones, kernel_size=3)
    return AugmentParams(**{**values, **fields})


def test_sample_params_are_reproducible_and_within_bounds():
    def draw(seed):
        return sample_params(1000, 60, 90, (0.2, 0.9), (0.5, 2.0), 0.3, (0.4, 0.3, 0.2, 0.1), 0.8,
                             generator=torch.Generator().manual_seed(seed))

    first, again, other = draw(1), draw(1), draw(2)
    for name in ("top", "left", "height", "width", "flip", "brightness", "hue", "angle", "blur", "sigma"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    assert not torch.equal(first.left, other.left)
    p = first
    assert (p.top >= 0).all() and (p.left >= 0).all() and (p.height >= 1).all() and (p.width >= 1).all()
    assert (p.top + p.height <= 60).all() and (p.left + p.width <= 90).all()
    assert torch.equal(p.top, p.top.round()) and torch.equal(p.width, p.width.round())  # whole pixels
    # rounding the sides moves area and ratio slightly off the drawn values
    area, ratio = p.height * p.width / (60 * 90), p.width / p.height
    assert area.min() > 0.2 - 0.03 and area.max() < 0.9 + 0.03
    assert ratio.min() > 0.5 * 0.9 and ratio.max() < 2.0 * 1.1
    assert abs(p.flip.float().mean() - 0.3) < 0.05 and abs(p.jitter.float().mean() - 0.8) < 0.05
    jittered = p.brightness[p.jitter]
    assert jittered.min() >= 0.6 and jittered.max() <= 1.4 and (p.brightness[~p.jitter] == 1).all()
    assert p.hue[p.jitter].abs().max() <= 0.1 and (p.hue[~p.jitter] == 0).all()


def test_sample_params_falls_back_to_a_central_crop_as_torchvision():
    # a 100x10 strip admits no crop of aspect ratio near 1: every sample takes the fallback
    p = sample_params(50, 10, 100, (0.9, 1.0), (0.9, 1.1), generator=torch.Generator().manual_seed(0))
    assert (p.height == 10).all() and (p.width == 11).all() and (p.left == 44).all() and (p.top == 0).all()


def test_apply_matches_torchvision_on_hand_made_boxes():
    batch = images(8, 40, 48)
    for out_size in (16, 64):  # downsampling and upsampling
        got = apply(batch, params(), out_size, MEAN, STD)[0]
        want = reference_apply(batch.cpu(), params(), out_size, MEAN, STD)[0]
        assert got.shape == (8, 3, out_size, out_size) and got.dtype == torch.float32
        assert (got.cpu() - want).abs().max() < 1e-4


@pytest.mark.parametrize("jitter", [(0.0, 0.0, 0.0, 0.0), (0.4, 0.4, 0.4, 0.0), (0.8, 0.8, 0.8, 0.3)])
def test_apply_matches_torchvision_on_random_params(jitter):
    batch = images(32, 40, 48, seed=1)
    p = sample_params(32, 40, 48, (0.02, 1.0), (0.5, 2.0), 0.5, jitter, 0.7, generator=torch.Generator().manual_seed(3))
    difference = (apply(batch, p, 32, MEAN, STD)[0].cpu() - reference_apply(batch.cpu(), p, 32, MEAN, STD)[0]).abs()
    assert difference.max() < (1e-4 if max(jitter) == 0 else 1e-3)


def test_channels_last_input_gives_the_same_result():
    batch = images(8, 40, 48)
    channels_last = batch.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # what a cache's gather gives
    assert torch.equal(apply(batch, params(), 24, MEAN, STD)[0], apply(channels_last, params(), 24, MEAN, STD)[0])


def test_simmim_loss_is_the_same_on_both_paths():
    torch.manual_seed(0)
    model = SimMIM(build_encoder(ModelConfig(depth=1))).to(DEVICE)
    batch = images(4, 144, 144, seed=2)
    p = sample_params(4, 144, 144, (0.67, 1.0), (3 / 4, 4 / 3), 0.5, (0.4, 0.4, 0.4, 0.1), 1.0,
                      generator=torch.Generator().manual_seed(0))
    mask = random_unit_mask(4, 128, 16, 32, 0.5, torch.Generator().manual_seed(0)).to(DEVICE)
    with torch.no_grad():
        fast = model(apply(batch, p, 128, MEAN, STD)[0], mask)["loss"].item()
        slow = model(reference_apply(batch.cpu(), p, 128, MEAN, STD)[0].to(DEVICE), mask)["loss"].item()
    assert math.isclose(fast, slow, rel_tol=1e-4)


def test_batch_augment_from_config_is_seeded():
    augment = BatchAugment.from_aug_config(AugConfig(), img_size=32)
    batch, heights, widths = images(6, 40, 48), torch.full((6,), 40), torch.full((6,), 48)
    first, none = augment(batch, heights, widths, generator=torch.Generator().manual_seed(5))
    assert first.shape == (6, 3, 32, 32) and torch.isfinite(first).all() and none is None
    assert torch.equal(first, augment(batch, heights, widths, generator=torch.Generator().manual_seed(5))[0])
    with pytest.raises(SimsegError, match=r"aug.color_jitter=.*hue in \[0, 0.5\]"):
        AugConfig(color_jitter=(0.4, 0.4, 0.4, 0.7))


@pytest.mark.slow  # a torch.compile build: seconds, left to the full suite
def test_compiled_jitter_matches_eager():
    torch._dynamo.reset()
    eager = BatchAugment.from_aug_config(AugConfig(), img_size=32)
    compiled = BatchAugment.from_aug_config(AugConfig(), img_size=32, compile=True)
    batch, heights, widths = images(8, 40, 48), torch.full((8,), 40), torch.full((8,), 48)
    expected = eager(batch, heights, widths, generator=torch.Generator().manual_seed(3))[0]
    got = compiled(batch, heights, widths, generator=torch.Generator().manual_seed(3))[0]
    assert torch.allclose(got, expected, atol=1e-5)
    torch._dynamo.reset()
