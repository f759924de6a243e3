"""Segmentation MixUp/CutMix: soft targets sum to one per labelled pixel, CutMix pastes the mask with the image."""

import torch

from simseg.models.segmentation import IGNORE_INDEX, segmentation_loss
from simseg.models.segmentation_mixing import cutmix, mix_segmentation_batch, mixup, random_box, soft_targets


def batch(seed=0):
    torch.manual_seed(seed)
    images = torch.randn(4, 3, 16, 16)
    mask = torch.randint(0, 3, (4, 16, 16))
    mask[0, :2, :2] = IGNORE_INDEX
    return images, mask


def test_mixed_targets_sum_to_one_per_pixel_with_the_images_weights():
    images, mask = batch()
    targets = soft_targets(mask, 3)
    mixed_images, mixed = mixup(images, targets, 0.7)
    assert torch.allclose(mixed_images, 0.7 * images + 0.3 * images.flip(0))
    sums = mixed.sum(1)
    both = (mask != IGNORE_INDEX) & (mask.flip(0) != IGNORE_INDEX)
    assert torch.allclose(sums[both], torch.ones(int(both.sum())))
    assert torch.allclose(mixed[1], 0.7 * targets[1] + 0.3 * targets[2])


def test_cutmix_pastes_the_same_box_of_image_and_mask():
    images, mask = batch(1)
    targets = soft_targets(mask, 3)
    box = (4, 10, 2, 9)
    mixed_images, mixed = cutmix(images, targets, box)
    inside = torch.zeros(16, 16, dtype=torch.bool)
    inside[4:10, 2:9] = True
    for i, j in ((0, 3), (1, 2)):
        assert torch.equal(mixed_images[i][:, inside], images[j][:, inside])
        assert torch.equal(mixed_images[i][:, ~inside], images[i][:, ~inside])
        assert torch.equal(mixed[i].argmax(0)[inside], mask[j][inside])  # the pasted pixels carry j's classes
        assert torch.equal(mixed[i][:, ~inside], targets[i][:, ~inside])
    labelled = mixed.sum(1) > 0
    assert torch.allclose(mixed.sum(1)[labelled], torch.ones(int(labelled.sum())))  # still one-hot


def test_random_boxes_cover_the_asked_area_inside_the_image():
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        top, bottom, left, right = random_box(32, 32, 0.75, generator)
        assert 0 <= top < bottom <= 32 and 0 <= left < right <= 32
        assert (bottom - top) * (right - left) <= 16 * 16


def test_the_batch_mixer_is_off_without_alphas_and_seeded():
    images, mask = batch()
    plain_images, plain = mix_segmentation_batch(images, mask, 3, 0.0, 0.0, 1.0, 0.5)
    assert plain_images is images and torch.equal(plain, soft_targets(mask, 3))
    torch.manual_seed(5)
    a = mix_segmentation_batch(images, mask, 3, 0.4, 1.0, 1.0, 0.5)
    torch.manual_seed(5)
    b = mix_segmentation_batch(images, mask, 3, 0.4, 1.0, 1.0, 0.5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_the_soft_loss_equals_cross_entropy_on_one_hot_targets_and_skips_unlabelled_pixels():
    images, mask = batch()
    logits = torch.randn(4, 3, 16, 16)
    for loss in ("ce", "ce+dice"):
        hard = segmentation_loss(logits, mask, loss)
        soft = segmentation_loss(logits, soft_targets(mask, 3), loss)
        assert torch.isclose(hard, soft, atol=1e-5)
