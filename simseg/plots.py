"""Pictures people look at: the reconstruction grid (original | masked | reconstruction | visible pasted back) and
segmentation examples (image | ground truth | prediction, classes in :data:`CLASS_COLOURS`)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from simseg.checkpoint import atomic_write  # noqa: E402
from simseg.masking import mask_to_pixels  # noqa: E402
from simseg.transforms import denormalize  # noqa: E402

GRID_COLUMNS = ("original", "masked", "reconstruction", "reconstruction + visible")
MASK_GREY = 0.5
# Segmentation classes (simseg.pets order) as RGB in [0, 1]: background black, pet orange, boundary white.
CLASS_COLOURS = ((0.0, 0.0, 0.0), (1.0, 0.6, 0.0), (1.0, 1.0, 1.0))


@torch.no_grad()
def reconstruction_columns(model, images: torch.Tensor, masks: torch.Tensor, mean, std) -> list[torch.Tensor]:
    """The four grid columns, each (N, 3, H, W) in real colours [0, 1].

    images: normalised (N, 3, H, W); masks: patch masks (N, h, w), True = masked.
    """
    was_training = model.training
    model.eval()
    reconstruction = model(images=images, mask=masks)["reconstruction"].float()
    model.train(was_training)
    hidden = mask_to_pixels(masks, model.patch_size).to(images.dtype)  # (N, 1, H, W)
    original = denormalize(images.float(), mean, std)
    recon = denormalize(reconstruction, mean, std)
    masked = original * (1 - hidden) + MASK_GREY * hidden
    pasted = original * (1 - hidden) + recon * hidden
    return [original, masked, recon, pasted]


def save_image_grid(path: str | Path, columns: list[torch.Tensor], titles: tuple[str, ...], suptitle: str = "") -> None:
    """A rows x columns figure of images (each column (N, 3, H, W) in [0, 1]), written atomically as PNG."""
    rows = columns[0].shape[0]
    fig, axes = plt.subplots(rows, len(columns), figsize=(1.6 * len(columns), 1.6 * rows + 0.4), squeeze=False)
    for c, (column, title) in enumerate(zip(columns, titles)):
        axes[0, c].set_title(title, fontsize=8)
        for r in range(rows):
            axes[r, c].imshow(column[r].permute(1, 2, 0).cpu().numpy())
            axes[r, c].axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, lambda f: f.write(buffer.getvalue()))


def save_reconstruction_grid(path: str | Path, model, images, masks, mean, std, title: str = "") -> None:
    save_image_grid(path, reconstruction_columns(model, images, masks, mean, std), GRID_COLUMNS, title)


def colour_masks(masks: torch.Tensor, colours=CLASS_COLOURS) -> torch.Tensor:
    """(N, H, W) class ids -> (N, 3, H, W) colours in [0, 1]."""
    palette = torch.tensor(colours, dtype=torch.float32, device=masks.device)  # (C, 3)
    return palette[masks.long()].permute(0, 3, 1, 2)
