"""Pictures people look at: the reconstruction grid (original | masked | reconstruction | visible pasted back) and
segmentation examples (image | ground truth | prediction, classes in their label set's colours)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from simseg.data.label_set import PETS  # noqa: E402
from simseg.data.transforms import denormalize  # noqa: E402
from simseg.files import atomic_write  # noqa: E402
from simseg.models.masking import mask_to_pixels  # noqa: E402

GRID_COLUMNS = ("original", "masked", "reconstruction", "reconstruction + visible")
MASK_GREY = 0.5


@torch.no_grad()
def reconstruction_columns(model, images: torch.Tensor, masks: torch.Tensor, mean, std) -> list[torch.Tensor]:
    """The four grid columns, each (N, 3, H, W) in real colours [0, 1].

    images: normalised (N, 3, H, W); masks: patch masks (N, h, w), True = masked.
    """
    was_training = model.training
    model.eval()
    reconstruction = model(images=images, mask=masks, reconstruct=True)["reconstruction"].float()
    model.train(was_training)
    hidden = mask_to_pixels(masks, model.patch_size).to(images.dtype)  # (N, 1, H, W)
    original = denormalize(images.float(), mean, std)
    recon = denormalize(reconstruction, mean, std)
    masked = original * (1 - hidden) + MASK_GREY * hidden
    pasted = original * (1 - hidden) + recon * hidden
    return [original, masked, recon, pasted]


def save_image_grid(path: str | Path, columns: list[torch.Tensor], titles: tuple[str, ...],
                    suptitle: str = "") -> bytes:
    """A rows x columns figure of images (each column (N, 3, H, W) in [0, 1]), written atomically as PNG; returns
    the PNG's bytes (for the run's trackers)."""
    rows = columns[0].shape[0]
    fig, axes = plt.subplots(rows, len(columns), figsize=(1.6 * len(columns), 1.6 * rows + 0.4), squeeze=False)
    for c, (column, title) in enumerate(zip(columns, titles)):
        axes[0, c].set_title(title, fontsize=8)
        for r in range(rows):
            axes[r, c].imshow(column[r].permute(1, 2, 0).cpu().numpy())
            axes[r, c].axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    return save_figure(fig, path)


def save_reconstruction_grid(path: str | Path, model, images, masks, mean, std, title: str = "") -> bytes:
    return save_image_grid(path, reconstruction_columns(model, images, masks, mean, std), GRID_COLUMNS, title)


def colour_masks(masks: torch.Tensor, colours=PETS.colours) -> torch.Tensor:
    """(N, H, W) class ids -> (N, 3, H, W) colours in [0, 1]; ``colours`` are RGB 0-255 per class id (a
    :class:`~simseg.data.label_set.LabelSet`'s), and ignored pixels (:data:`IGNORE_INDEX`) are grey."""
    palette = torch.full((256, 3), 0.5, dtype=torch.float32, device=masks.device)  # (256, 3): unknown ids grey
    palette[:len(colours)] = torch.tensor(colours, dtype=torch.float32, device=masks.device) / 255
    return palette[masks.long()].permute(0, 3, 1, 2)


def save_confusion_png(path: str | Path, matrix: list[list[int]], classes: list[str], title: str = "") -> None:
    """A heat map of a confusion matrix (rows target, columns prediction) coloured by each row's share, with the
    counts written in the cells; written atomically as PNG."""
    counts = torch.tensor(matrix, dtype=torch.float64)  # (K, K)
    shares = counts / counts.sum(1, keepdim=True).clamp(min=1)
    size = 1.0 + 0.55 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(shares.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("target")
    for (row, column), count in zip(((r, c) for r in range(len(classes)) for c in range(len(classes))),
                                    counts.flatten().long().tolist()):
        ax.text(column, row, str(count), ha="center", va="center", fontsize=7,
                color="white" if shares[row, column] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the target class")
    if title:
        ax.set_title(title, fontsize=9)
    save_figure(fig, path)


def save_figure(fig, path: str | Path) -> bytes:
    """Lay out, render to PNG in memory, close, and write atomically (a reader never sees half a picture); returns
    the PNG's bytes."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    png = buffer.getvalue()
    atomic_write(path, lambda f: f.write(png))
    return png
