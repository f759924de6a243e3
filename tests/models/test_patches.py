import torch

from simseg.models.patches import patchify, unpatchify


def test_round_trip():
    images = torch.randn(2, 3, 64, 48)
    patches = patchify(images, 16)
    assert patches.shape == (2, 12, 16 * 16 * 3)
    assert torch.equal(unpatchify(patches, 16, (4, 3)), images)
    square = torch.randn(2, 3, 32, 32)
    assert torch.equal(unpatchify(patchify(square, 8), 8), square)


def test_token_order_matches_the_vit_patch_embedding():
    """Patch i of patchify is what a stride-p convolution (timm's PatchEmbed) sees at token i."""
    images = torch.randn(1, 3, 32, 32)
    patches = patchify(images, 16)  # (1, 4, 768)
    unfolded = torch.nn.functional.unfold(images, kernel_size=16, stride=16)  # (1, 3*16*16, 4), channel-major
    for token in range(4):
        as_chw = patches[0, token].view(16, 16, 3).permute(2, 0, 1).flatten()
        assert torch.equal(as_chw, unfolded[0, :, token])
