"""The run's pictures (reconstruction grids, the probe curve, segmentation examples) sent to its trackers
(``log.trackers``) as images, beside the PNG files in the run folder, through each Accelerate tracker's own
``log_images``."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# How each Accelerate tracker's ``log_images`` takes one picture (H, W, 3) uint8, as its docstring says: TensorBoard
# a batch (its SummaryWriter.add_images), wandb and SwanLab a list, Aim and ClearML the image itself. The others
# (comet_ml, dvclive, trackio; mlflow logs figures as artifacts, not over steps) take no images and are skipped.
IMAGE_ARGUMENTS = {
    "tensorboard": lambda picture: (picture[None], {"dataformats": "NHWC"}),  # (1, H, W, 3)
    "wandb": lambda picture: ([picture], {}),
    "swanlab": lambda picture: ([picture], {}),
    "aim": lambda picture: (picture, {}),
    "clearml": lambda picture: (picture, {}),
}


def log_tracker_image(accelerator, tag: str, png: bytes, step: int) -> None:
    """Log the picture ``png`` (a PNG file's bytes) as ``tag`` at ``step`` to every tracker of ``accelerator`` that
    takes images; on the main process only, and nothing happens when the run has no tracker."""
    trackers = [t for t in accelerator.trackers if t.name in IMAGE_ARGUMENTS] if accelerator.is_main_process else []
    if not trackers:
        return
    picture = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))  # (H, W, 3) uint8
    for tracker in trackers:
        value, kwargs = IMAGE_ARGUMENTS[tracker.name](picture)
        tracker.log_images({tag: value}, step=step, **kwargs)
