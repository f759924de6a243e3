"""The pretraining stage's config: SimMIM on unlabelled images with the study's recipe as defaults (AdamW LR 1e-4,
weight decay 0.05, 100 epochs, LR x 0.1 at half and 85% of the epochs, 50% of 16-pixel units masked)."""

from __future__ import annotations

import dataclasses

from simseg.config.loader import check
from simseg.config.sections import AugConfig, LogConfig, ModelConfig, SourceConfig, TrainConfig
from simseg.sizes import parse_size


@dataclasses.dataclass
class PretrainDataConfig(SourceConfig):
    """Unlabelled images: ``synthetic``, an image folder (ImageFolder or flat), an image cache made by ``simseg data
    cache``, a ``save_to_disk`` dataset, parquet/arrow files or a hub name."""

    val_size: str | None = None
    """Held-out images for the validation loss and the grids; null = min(1% of the source, 500), at least 1."""
    synthetic_size: int = 2000
    """Number of images the ``synthetic`` source holds (each generated on the fly from ``seed`` and its index)."""

    def __post_init__(self):
        super().__post_init__()
        if self.val_size is not None:
            parse_size(self.val_size, "data.val_size")
        check(self.synthetic_size >= 2, "data.synthetic_size must be at least 2")


@dataclasses.dataclass
class MaskConfig:
    ratio: float = 0.5
    """Fraction of mask units replaced by the mask token (the count per image is exact)."""
    unit: int = 16
    """Side of a mask unit in pixels: a multiple of the patch size that divides the image size."""

    def __post_init__(self):
        check(0.0 < self.ratio < 1.0, f"mask.ratio must be in (0, 1), got {self.ratio}")
        check(self.unit > 0, "mask.unit must be positive")


@dataclasses.dataclass
class PretrainLogConfig(LogConfig):
    grid_every: int = 10
    """Write a reconstruction grid every N epochs (and after the last); 0 = only after the last."""
    grid_rows: int = 8
    """Held-out images (rows) in each reconstruction grid."""

    def __post_init__(self):
        super().__post_init__()
        check(self.grid_every >= 0 and self.grid_rows >= 1, "log.grid_every must be >= 0 and log.grid_rows >= 1")


@dataclasses.dataclass
class PretrainConfig:
    output_dir: str = "outputs/pretrain"
    """The run folder (config, metrics, exports, resume state); it must be empty or absent unless ``resume=true``."""
    seed: int = 0
    """Seeds the held-out split, the training subset, the initialisation, the masks and the augmentation."""
    resume: bool = False
    """Continue the run in ``output_dir`` from its last finished epoch; every key that changes what is computed must
    equal the saved config's."""
    data: PretrainDataConfig = dataclasses.field(default_factory=PretrainDataConfig)
    """The unlabelled images: where they come from, how many train and how many are held out."""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    """The encoder to pretrain (its export, ``encoder.safetensors``, records these keys for the next stage)."""
    mask: MaskConfig = dataclasses.field(default_factory=MaskConfig)
    """SimMIM's masking: the share of the image hidden from the encoder, and the size of the hidden units."""
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    """AdamW, the LR schedule, clipping and precision."""
    aug: AugConfig = dataclasses.field(default_factory=AugConfig)
    """Augmentation of the training images, and the normalisation of every image."""
    log: PretrainLogConfig = dataclasses.field(default_factory=PretrainLogConfig)
    """Progress output, trackers and reconstruction grids."""

    def __post_init__(self):
        unit, patch, size = self.mask.unit, self.model.patch_size, self.model.img_size
        check(unit % patch == 0 and size % unit == 0,
              f"mask.unit={unit} must be a multiple of model.patch_size={patch} and divide model.img_size={size}")
