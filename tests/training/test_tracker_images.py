"""The run's pictures reach its trackers: one picture through a real TensorBoard tracker (fast), and the pictures of
tiny pretraining and segmentation runs read back from their event files (slow)."""

from __future__ import annotations

import inspect
import io

import accelerate.tracking
import numpy as np
import pytest
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

import stages.pretrain as pretrain_stage
import stages.segment as segment_stage
from simseg.config.loader import load_config
from simseg.config.segment import SegmentConfig
from simseg.training.tracker_images import IMAGE_ARGUMENTS, log_tracker_image
from tests.stages.test_segment import SEG_TINY


def png_of(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def logged_images(log_dir) -> dict[str, list]:
    """{tag: [ImageEvent(step, encoded_image_string, width, height, ...), ...]} of the event files in ``log_dir``."""
    events = EventAccumulator(str(log_dir), size_guidance={IMAGES: 0})  # 0: keep every image, not a sample
    events.Reload()
    return {tag: events.Images(tag) for tag in events.Tags()["images"]}


def test_a_picture_reaches_tensorboard_at_its_step_pixel_for_pixel(tmp_path):
    accelerator = Accelerator(log_with="tensorboard", project_config=ProjectConfiguration(
        project_dir=str(tmp_path), logging_dir=str(tmp_path / "logs")))
    accelerator.init_trackers("unit")
    pictures = [np.random.default_rng(seed).integers(0, 256, (12, 20, 3), dtype=np.uint8) for seed in (0, 1)]
    for epoch, pixels in enumerate(pictures):
        log_tracker_image(accelerator, "grid", png_of(pixels), step=epoch)
    accelerator.end_training()
    images = logged_images(tmp_path / "logs" / "unit")["grid"]
    assert [image.step for image in images] == [0, 1]
    for image, pixels in zip(images, pictures):
        assert (image.height, image.width) == (12, 20)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(image.encoded_image_string)).convert("RGB")), pixels)


def test_without_trackers_nothing_is_logged_or_even_decoded(tmp_path):
    accelerator = Accelerator(project_config=ProjectConfiguration(project_dir=str(tmp_path),
                                                                  logging_dir=str(tmp_path / "logs")))
    log_tracker_image(accelerator, "grid", b"not a png", step=0)
    assert not (tmp_path / "logs").exists()


def test_every_accelerate_tracker_that_takes_images_is_served():
    """A tracker Accelerate gains image support for must get a line in IMAGE_ARGUMENTS (its argument shape)."""
    takes_images = {cls.name for cls in vars(accelerate.tracking).values()
                    if inspect.isclass(cls) and issubclass(cls, accelerate.tracking.GeneralTracker)
                    and cls is not accelerate.tracking.GeneralTracker and hasattr(cls, "log_images")}
    assert takes_images == set(IMAGE_ARGUMENTS)


@pytest.mark.slow
def test_pretraining_logs_its_grids_and_probe_curve_every_epoch(tiny_config):
    run_dir = pretrain_stage.main(tiny_config(
        "model.depth=1", "model.img_size=64", "data.synthetic_size=24", "log.trackers=[tensorboard]", "probe.every=1",
        "probe.data=synthetic", "probe.subset=8", "probe.score_images=4", "probe.steps=5"))
    images = logged_images(run_dir / "logs" / "pretrain")
    assert {tag: [image.step for image in images[tag]] for tag in ("reconstructions", "probe")} == {
        "reconstructions": [0, 1], "probe": [0, 1]}
    grid = Image.open(run_dir / "grids" / "epoch_001.png")
    assert (images["reconstructions"][-1].width, images["reconstructions"][-1].height) == grid.size


@pytest.mark.slow
def test_segmentation_logs_its_examples_at_the_reported_epoch(tmp_path):
    cfg = load_config(SegmentConfig, None, [*SEG_TINY, "model.depth=1", "model.img_size=64", "eval.every=0",
                                            "log.trackers=[tensorboard]", f"output_dir={tmp_path / 'seg'}"])
    run_dir = segment_stage.main(cfg)
    images = logged_images(run_dir / "logs" / "segment")
    assert [image.step for image in images["examples"]] == [1]  # train.epochs=2, no validation: the last epoch's
