import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from simseg.config.sections import FineTuneAugConfig
from simseg.data.transforms import eval_transform, train_transform
from simseg.errors import SimsegError

# The image's colour encodes its class: class c is pure red / green / blue, so mask == decode(image) pixel for pixel.
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
RAW = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # "normalised" image = colours in [0, 1], easy to decode
NO_JITTER = {"color_jitter_prob": 0.0, **RAW}


def seg_train_transform(img_size: int, **fields):
    """The training transform of the labelled stages' augmentation config with ``fields`` changed."""
    return train_transform(FineTuneAugConfig(**fields), img_size)


def seg_eval_transform(img_size: int, mean=FineTuneAugConfig.mean, std=FineTuneAugConfig.std):
    return eval_transform(img_size, mean, std, "resize")


def blocks(height: int, width: int, block: int, seed: int) -> tuple[Image.Image, np.ndarray]:
    """A random grid of ``block``-pixel squares of classes 0..2: (RGB image, uint8 mask (H, W)) with mask = f(image)."""
    grid = np.random.default_rng(seed).integers(0, 3, (height // block, width // block))
    mask = np.kron(grid, np.ones((block, block), dtype=np.int64)).astype(np.uint8)
    return Image.fromarray(COLOURS[mask]), mask


def halves(height: int, width: int, left: int, right: int) -> tuple[Image.Image, np.ndarray]:
    mask = np.full((height, width), right, dtype=np.uint8)
    mask[:, : width // 2] = left
    return Image.fromarray(COLOURS[mask]), mask


def decode(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) colours in [0, 1] -> (H, W) class of the strongest channel."""
    return image.argmax(0)


def interior(mask: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """(H, W) bool: pixels whose (2r+1)^2 neighbourhood holds one class, i.e. away from the band at region boundaries
    where bilinear resampling of the image blends two colours (the nearest-resampled mask never blends).

    The outer ``radius`` pixels are left out too: the crop's last source row or column can hold a sliver of the next
    region that the image's filter blends in but nearest sampling skips, a boundary the mask does not show."""
    one_hot = F.one_hot(mask, 3).permute(2, 0, 1).float()[None]  # (1, 3, H, W)
    present = F.max_pool2d(one_hot, 2 * radius + 1, stride=1, padding=radius)  # class seen in the neighbourhood
    inside = present.sum(1)[0] == 1
    edge = torch.ones_like(inside)
    edge[radius:-radius, radius:-radius] = False
    return inside & ~edge


def agrees(image: torch.Tensor, mask: torch.Tensor) -> bool:
    inside = interior(mask)
    assert inside.float().mean() > 0.2, "too few pixels away from boundaries for the check to mean anything"
    return bool(torch.equal(decode(image)[inside], mask[inside]))


def test_train_geometry_is_the_same_for_image_and_mask():
    image, mask = blocks(72, 96, 12, seed=0)
    transform = seg_train_transform(48, **NO_JITTER)
    outputs = set()
    for seed in range(20):
        torch.manual_seed(seed)
        out_image, out_mask = transform(image, mask)
        assert agrees(out_image, out_mask), f"seed {seed}: image and mask were transformed differently"
        assert not agrees(out_image, out_mask.flip(-1)), "the check must catch a flip applied to one of the two"
        outputs.add(out_mask.numpy().tobytes())
    assert len(outputs) == 20  # every seed drew a different crop (and flip), so the geometry really was random


def test_flip_moves_left_to_right_in_both():
    image, mask = halves(32, 32, left=1, right=2)
    whole = {"crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0)}  # the crop is the whole (square) image
    for hflip, left_class in ((1.0, 2), (0.0, 1)):
        torch.manual_seed(0)
        out_image, out_mask = seg_train_transform(16, hflip=hflip, **whole, **NO_JITTER)(image, mask)
        assert torch.all(out_mask[:, :8] == left_class) and torch.all(out_mask[:, 8:] == 3 - left_class)
        colour_class = decode(out_image)  # away from the middle columns, where the two colours are blended
        assert torch.all(colour_class[:, :7] == left_class) and torch.all(colour_class[:, 9:] == 3 - left_class)


def test_colour_jitter_changes_the_image_only():
    image, mask = blocks(72, 96, 12, seed=1)
    jitter = seg_train_transform(48, color_jitter=(0.8, 0.8, 0.8, 0.2), color_jitter_prob=1.0, **RAW)
    plain = seg_train_transform(48, **NO_JITTER)
    for seed in range(5):
        torch.manual_seed(seed)
        jittered_image, jittered_mask = jitter(image, mask)
        torch.manual_seed(seed)  # crop and flip draw before the jitter, so the same seed gives the same geometry
        plain_image, plain_mask = plain(image, mask)
        assert torch.equal(jittered_mask, plain_mask)
        assert not torch.allclose(jittered_image, plain_image)


@pytest.mark.parametrize("make", [lambda: seg_train_transform(24), lambda: seg_eval_transform(24)])
def test_mask_values_are_never_interpolated(make):
    values = np.array([0, 1, 2, 255], dtype=np.uint8)  # 255: e.g. an ignore label next to class ids
    rng = np.random.default_rng(0)
    mask = values[rng.integers(0, 4, (37, 53))]  # pixel noise: any blending would create new values
    image = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    transform = make()
    for seed in range(5):
        torch.manual_seed(seed)
        _, out_mask = transform(image, mask)
        assert set(out_mask.unique().tolist()) <= set(values.tolist())


@pytest.mark.parametrize("make", [lambda: seg_train_transform(32), lambda: seg_eval_transform(32)])
def test_output_types_and_shapes(make):
    image, mask = blocks(40, 60, 10, seed=2)
    for mask_input in (mask, Image.fromarray(mask, mode="L")):
        out_image, out_mask = make()(image, mask_input)
        assert type(out_image) is torch.Tensor and type(out_mask) is torch.Tensor  # plain tensors, not tv_tensors
        assert out_image.shape == (3, 32, 32) and out_image.dtype == torch.float32
        assert out_mask.shape == (32, 32) and out_mask.dtype == torch.int64


def test_eval_normalises_with_mean_and_std():
    white = Image.fromarray(np.full((20, 30, 3), 255, dtype=np.uint8))
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.2, 0.1)
    out_image, _ = seg_eval_transform(8, mean, std)(white, np.zeros((20, 30), dtype=np.uint8))
    expected = (1 - torch.tensor(mean)) / torch.tensor(std)  # 2, 3, 7
    assert torch.allclose(out_image, expected.view(3, 1, 1).expand(3, 8, 8))


@pytest.mark.parametrize("height,width", [(80, 40), (17, 100), (10, 12), (64, 64)])
def test_eval_resizes_the_whole_image_exactly_and_deterministically(height, width):
    mask = np.ones((height, width), dtype=np.uint8)
    mask[: height // 4] = 0  # a top band: a centre crop of a tall image would cut it off
    mask[:, width // 2:] = 2
    image = Image.fromarray(COLOURS[mask])
    transform = seg_eval_transform(16, **RAW)
    first, again = transform(image, mask), transform(image, mask)
    assert first[0].shape == (3, 16, 16) and first[1].shape == (16, 16)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert set(first[1].unique().tolist()) == {0, 1, 2}  # nothing cropped away
    assert torch.all(first[1][:3, :8] == 0) and torch.all(first[1][-1, :8] == 1) and torch.all(first[1][:, -8:] == 2)
    assert agrees(first[0], first[1])


def test_mask_that_does_not_fit_its_image_is_refused():
    image, mask = blocks(40, 60, 10, seed=3)
    with pytest.raises(SimsegError, match="mask"):
        seg_eval_transform(16)(image, mask[:, :50])
    with pytest.raises(SimsegError, match="mask"):
        seg_eval_transform(16)(image, np.stack([mask] * 3, -1))  # an RGB mask
    with pytest.raises(SimsegError, match="mask"):
        seg_eval_transform(16)(image, mask.astype(np.int64))


def test_rotation_turns_image_and_mask_together_and_leaves_the_corners_unlabelled():
    from simseg.models.segmentation import IGNORE_INDEX

    image, mask = blocks(96, 96, 12, seed=1)
    transform = seg_train_transform(64, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=0.0, rotation=20.0,
                                    **NO_JITTER)
    rotated = deep_corners = one_sided = 0
    for seed in range(10):
        torch.manual_seed(seed)
        out_image, out_mask = transform(image, mask)
        labelled = out_mask != IGNORE_INDEX
        corners = ~labelled
        rotated += bool(corners.any())
        # the uncovered corners: unlabelled in the mask, the (here zero) mean colour in the image (away from the
        # corner's edge, where the bilinear image blends fill and photo but the nearest mask does not)
        deep = F.max_pool2d(labelled[None, None].float(), 5, stride=1, padding=2)[0, 0] == 0
        assert torch.all(out_image[:, deep] == 0)
        deep_corners += bool(deep.any())
        # everywhere else the mask is the image's own class, away from blended edges
        inside = interior(out_mask.masked_fill(corners, 0)) & labelled & (interior(out_mask.clamp(max=2)))
        assert torch.equal(decode(out_image)[inside], out_mask[inside]), f"seed {seed}: misaligned rotation"
        # rotating the mask alone (back to upright) must break the agreement: the check sees one-sided geometry
        upright = torch.from_numpy(np.array(Image.fromarray(mask).resize((64, 64), Image.NEAREST))).long()
        if corners.sum() > 300:  # an angle of more than a few degrees
            assert (decode(out_image)[inside] != upright[inside]).float().mean() > 0.02
            one_sided += 1
    assert rotated >= 8 and deep_corners >= 5 and one_sided >= 3  # most draws turned the image by a visible angle


def test_blur_touches_the_image_only():
    image, mask = blocks(64, 64, 8, seed=2)
    whole = {"crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0), "hflip": 0.0}
    torch.manual_seed(0)
    sharp_image, sharp_mask = seg_train_transform(64, **whole, **NO_JITTER)(image, mask)
    torch.manual_seed(0)
    blurred_image, blurred_mask = seg_train_transform(64, **whole, blur_prob=1.0, blur_sigma=(1.0, 1.0),
                                                      **NO_JITTER)(image, mask)
    assert torch.equal(sharp_mask, blurred_mask) and not torch.allclose(sharp_image, blurred_image, atol=0.05)
