import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from simseg.config.sections import AugConfig
from simseg.config.segment import SegAugConfig
from simseg.data.batch_augment import BatchAugment, apply, sample_params
from simseg.models.segmentation import IGNORE_INDEX
from tests.data.reference_augment import reference_apply

MEAN, STD = AugConfig().mean, AugConfig().std
RAW = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # "normalised" image = colours in [0, 1], easy to decode
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
COLOURS = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=torch.uint8)  # class c's colour


def pairs(batch, size, seed=0):
    """Random uint8 images (B, 3, S, S) and masks of classes 0..9 (B, S, S), stored at their original size."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)
    masks = torch.randint(0, 10, (batch, size, size), dtype=torch.uint8, generator=generator)
    return images, masks, torch.full((batch,), size), torch.full((batch,), size)


SETTINGS = {  # the training transform's knobs: one feature at a time, then all at once
    "crop": dict(hflip_prob=0.0, jitter_prob=0.0, rotation=0.0, blur_prob=0.0),
    "flip": dict(hflip_prob=0.5, jitter_prob=0.0, rotation=0.0, blur_prob=0.0),
    "rotation": dict(hflip_prob=0.0, jitter_prob=0.0, rotation=45.0, blur_prob=0.0),
    "blur": dict(hflip_prob=0.0, jitter_prob=0.0, rotation=0.0, blur_prob=1.0),
    "all": dict(hflip_prob=0.5, jitter_prob=0.8, rotation=180.0, blur_prob=0.5),
}


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_path_matches_torchvision(setting, seed):
    images, masks, heights, widths = pairs(8, 40, seed)
    p = sample_params(8, heights, widths, (0.05, 1.0), (0.5, 2.0), jitter=(0.4, 0.4, 0.4, 0.1), blur_sigma=(0.1, 2.0),
                      generator=torch.Generator().manual_seed(seed), **SETTINGS[setting])
    for out_size in (32, 56):  # downsampling and upsampling
        got_images, got_masks = apply(images.to(DEVICE), p, out_size, MEAN, STD, masks.to(DEVICE))
        want_images, want_masks = reference_apply(images, p, out_size, MEAN, STD, masks)
        assert got_images.shape == (8, 3, out_size, out_size) and got_images.dtype == torch.float32
        assert got_masks.shape == (8, out_size, out_size) and got_masks.dtype == torch.int64
        assert (got_images.cpu() - want_images).abs().max() < 1e-4
        assert torch.equal(got_masks.cpu(), want_masks)
        alone, none = apply(images.to(DEVICE), p, out_size, MEAN, STD)
        assert none is None and torch.equal(alone, got_images)  # the image path does not depend on the mask


def squashed_blocks(height, width, size, seed):
    """Originals (H, W) of 12-pixel squares of classes 0..2 painted in COLOURS, squashed to (size, size) as the cache
    stores them: uint8 images (B, 3, S, S) (bilinear, antialiased) and masks (B, S, S) (nearest)."""
    generator = torch.Generator().manual_seed(seed)
    grid = torch.randint(0, 3, (4, height // 12, width // 12), generator=generator)
    masks = grid.repeat_interleave(12, 1).repeat_interleave(12, 2).to(torch.uint8)  # (B, H, W)
    images = COLOURS[masks.long()].permute(0, 3, 1, 2)  # (B, 3, H, W)
    images = TF.resize(images, [size, size], antialias=True)
    masks = TF.resize(tv_tensors.Mask(masks), [size, size]).as_subclass(torch.Tensor)
    return images, masks, torch.full((4,), height), torch.full((4,), width)


def agreement(images, masks):
    """Share of labelled pixels away from region boundaries whose image colour decodes to the mask's class.

    images (B, 3, h, w) colours in [0, 1], masks (B, h, w): pixels whose 5x5 neighbourhood in the mask holds one
    class are scored (bilinear resampling blends colours within a pixel or two of a boundary)."""
    labelled = masks != IGNORE_INDEX
    one_hot = F.one_hot(torch.where(labelled, masks, 3), 4).permute(0, 3, 1, 2).float()  # (B, 4, h, w)
    kinds = (F.max_pool2d(one_hot, 5, stride=1, padding=2) > 0).sum(1)  # classes (or ignore) seen nearby
    scored = labelled & (kinds == 1)
    return (images.argmax(1) == masks)[scored].float().mean().item(), scored.float().mean().item()


@pytest.mark.parametrize("seed", [0, 1])
def test_masks_stay_aligned_with_images_through_crop_flip_and_rotation(seed):
    # 60 x 96 originals squashed to 48 x 48: boxes drawn in original pixels must land on the same place of both
    images, masks, heights, widths = squashed_blocks(60, 96, 48, seed)
    p = sample_params(4, heights, widths, (0.3, 1.0), (0.5, 2.0), 0.5, (0.4, 0.4, 0.4, 0.1), 0.0, rotation=30.0,
                      generator=torch.Generator().manual_seed(seed))
    p.flip[:] = torch.tensor([True, False, True, False])  # both kinds, whatever the draw
    p.angle[:] = torch.tensor([25.0, -30.0, 0.0, 15.0])

    def augment(params):
        return apply(images, params, 40, masks=masks, **RAW)

    out_images, out_masks = augment(p)
    score, scored = agreement(out_images, out_masks)
    assert score >= 0.99 and scored > 0.2

    # The test has teeth: moving the mask alone (flip, rotation or box mapping) leaves image and mask disagreeing.
    flipped = dataclasses.replace(p, flip=~p.flip)
    rotated = dataclasses.replace(p, angle=p.angle + 30.0)
    stored = torch.full((4,), 48)  # boxes read as stored pixels: the original-to-stored mapping skipped
    unmapped = dataclasses.replace(p, heights=stored, widths=stored)
    for wrong_masks in (augment(flipped)[1], augment(rotated)[1], augment(unmapped)[1]):
        assert agreement(out_images, wrong_masks)[0] < 0.9


def test_a_seed_reproduces_the_batch_and_rotated_corners_are_filled():
    augment = BatchAugment(32, (1.0, 1.0), (1.0, 1.0), 0.5, (0.4, 0.4, 0.4, 0.1), 0.0, MEAN, STD, rotation=45.0,
                           blur_prob=0.5)
    images, masks, heights, widths = pairs(16, 40)
    images, masks = images.to(DEVICE), masks.to(DEVICE)
    first, again, other = (augment(images, heights, widths, masks, torch.Generator().manual_seed(seed))
                           for seed in (5, 5, 6))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1])

    params = augment.sample(heights, widths, torch.Generator().manual_seed(5))
    # tilted by > 10 degrees, the corner pixel maps > 2 px outside the 32 px image; a blur would mix in its neighbours
    tilted = (params.angle.abs() > 10) & ~params.blur
    assert tilted.sum() >= 3
    out_images, out_masks = first[0].cpu(), first[1].cpu()
    assert (out_masks[tilted][:, [0, 0, -1, -1], [0, -1, 0, -1]] == IGNORE_INDEX).all()
    fill = (torch.tensor([round(255 * m) / 255 for m in MEAN]) - torch.tensor(MEAN)) / torch.tensor(STD)
    corners = out_images[tilted][:, :, [0, 0, -1, -1], [0, -1, 0, -1]]  # (n, 3, 4)
    assert torch.allclose(corners, fill.view(1, 3, 1).expand_as(corners), atol=1e-5)


def test_boxes_follow_torchvision_per_sample_geometry():
    sizes = [(60, 90), (200, 50), (10, 100)]  # wide, tall, and a strip that forces the central-crop fallback
    heights = torch.tensor([h for h, _ in sizes]).repeat(2000)
    widths = torch.tensor([w for _, w in sizes]).repeat(2000)
    scale, ratio = (0.2, 0.9), (0.75, 4 / 3)
    p = sample_params(len(heights), heights, widths, scale, ratio, generator=torch.Generator().manual_seed(0))
    assert (p.top >= 0).all() and (p.left >= 0).all() and (p.height >= 1).all() and (p.width >= 1).all()
    assert (p.top + p.height <= heights).all() and (p.left + p.width <= widths).all()
    torch.manual_seed(0)  # torchvision draws from the global generator
    for i, (h, w) in enumerate(sizes):
        ours = torch.stack([p.top[i::3], p.left[i::3], p.height[i::3], p.width[i::3]], 1)  # (2000, 4)
        theirs = torch.tensor([v2.RandomResizedCrop.get_params(torch.empty(1, h, w), list(scale), list(ratio))
                               for _ in range(2000)], dtype=torch.float32)
        if i == 2:  # no proposal fits a 10 x 100 strip: both take the same central box
            assert (ours == theirs).all() and (ours == torch.tensor([0, 43, 10, 13])).all()
            continue
        area, log_ratio = ours[:, 2] * ours[:, 3] / (h * w), (ours[:, 3] / ours[:, 2]).log()
        assert area.min() > scale[0] - 0.02 and area.max() < scale[1] + 0.02  # sides are rounded
        assert log_ratio.min() > math.log(ratio[0]) - 0.05 and log_ratio.max() < math.log(ratio[1]) + 0.05
        # the same distribution: every coordinate's mean and spread within a few standard errors of torchvision's
        error = theirs.std(0) / math.sqrt(2000)
        assert ((ours.mean(0) - theirs.mean(0)).abs() < 5 * error * math.sqrt(2)).all()
        assert ((ours.std(0) - theirs.std(0)).abs() < 0.1 * theirs.std(0)).all()


def test_per_sample_sizes_draw_what_one_size_draws():
    # pretraining's seeds stay valid: equal per-sample sizes give bit for bit the boxes of the int call
    one = sample_params(64, 40, 48, (0.05, 1.0), (0.5, 2.0), 0.5, (0.4, 0.4, 0.4, 0.1), 0.8,
                        generator=torch.Generator().manual_seed(1))
    each = sample_params(64, torch.full((64,), 40), torch.full((64,), 48), (0.05, 1.0), (0.5, 2.0), 0.5,
                         (0.4, 0.4, 0.4, 0.1), 0.8, generator=torch.Generator().manual_seed(1))
    for field in dataclasses.fields(one):
        mine, theirs = getattr(one, field.name), getattr(each, field.name)
        assert torch.equal(mine, theirs) if isinstance(mine, torch.Tensor) else mine == theirs, field.name


def test_from_aug_config_for_every_stage():
    images, masks, heights, widths = pairs(4, 40)
    heavy = BatchAugment.from_aug_config(SegAugConfig(preset="heavy"), img_size=32)
    assert (heavy.draws["rotation"], heavy.draws["blur_prob"]) == (20.0, 0.2)
    out_images, out_masks = heavy(images, heights, widths, masks, torch.Generator().manual_seed(0))
    assert out_images.shape == (4, 3, 32, 32) and out_masks.shape == (4, 32, 32) and torch.isfinite(out_images).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the pixel work stays float32 inside a training step
        in_autocast = heavy(images, heights, widths, masks, torch.Generator().manual_seed(0))
    assert torch.equal(in_autocast[0], out_images) and torch.equal(in_autocast[1], out_masks)
    plain = BatchAugment.from_aug_config(AugConfig(), img_size=32)  # pretraining's and classification's defaults
    assert (plain.draws["rotation"], plain.draws["blur_prob"]) == (0.0, 0.0)
    out_images, none = plain(images, heights, widths, None, torch.Generator().manual_seed(0))
    assert none is None and out_images.shape == (4, 3, 32, 32)
