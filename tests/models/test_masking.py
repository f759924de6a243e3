import pytest
import torch

from simseg.models.masking import flatten_mask, mask_to_pixels, masked_unit_count, random_unit_mask


@pytest.mark.parametrize("unit,ratio", [(16, 0.5), (32, 0.5), (16, 0.6), (32, 0.75), (64, 0.3)])
def test_exact_masked_count_per_image(unit, ratio):
    mask = random_unit_mask(32, 128, 16, unit, ratio, torch.Generator().manual_seed(0))
    assert mask.shape == (32, 8, 8) and mask.dtype == torch.bool
    units_masked = mask.flatten(1).sum(1) / (unit // 16) ** 2
    assert torch.all(units_masked == masked_unit_count(128, unit, ratio))


def test_masked_count_is_ceil_of_ratio():
    assert masked_unit_count(128, 16, 0.5) == 32
    assert masked_unit_count(128, 32, 0.6) == 10  # ceil(0.6 * 16) = ceil(9.6)
    assert masked_unit_count(128, 16, 0.75) == 48  # exact products are not pushed up by float error


def test_unit_32_masks_whole_2x2_patch_blocks():
    mask = random_unit_mask(8, 128, 16, 32, 0.5, torch.Generator().manual_seed(1))
    blocks = mask.view(8, 4, 2, 4, 2)  # (B, unit row, patch in unit, unit col, patch in unit)
    assert torch.all(blocks.all(dim=(2, 4)) == blocks.any(dim=(2, 4)))  # each unit is all-masked or all-visible


def test_masks_differ_between_images_and_repeat_with_seed():
    first = random_unit_mask(4, 128, 16, 16, 0.5, torch.Generator().manual_seed(3))
    again = random_unit_mask(4, 128, 16, 16, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    assert not torch.equal(first[0], first[1])


def test_invalid_unit_rejected():
    with pytest.raises(ValueError):
        random_unit_mask(1, 128, 16, 24, 0.5)


def test_pixel_mask_and_flatten_follow_patch_layout():
    mask = torch.zeros(1, 2, 2, dtype=torch.bool)
    mask[0, 0, 1] = True  # top-right patch
    pixels = mask_to_pixels(mask, 4)
    assert pixels.shape == (1, 1, 8, 8)
    assert pixels[0, 0, :4, 4:].all() and pixels.sum() == 16
    assert flatten_mask(mask).tolist() == [[False, True, False, False]]  # row-major token order
