"""The pretraining stage's config: a masked-image method (SimMIM by default, or MAE) on unlabelled images, with the
study's recipe as defaults (AdamW LR 1e-4, weight decay 0.05, 100 epochs, LR x 0.1 at half and 85% of the epochs,
50% of 16-pixel units masked)."""

from __future__ import annotations

import dataclasses

from simseg.config.loader import check
from simseg.config.presets import choices
from simseg.config.sections import AugConfig, LogConfig, ModelConfig, SourceConfig, TrainConfig
from simseg.models.pretraining import METHODS
from simseg.sizes import parse_size


@dataclasses.dataclass
class PretrainDataConfig(SourceConfig):
    """Unlabelled images: ``synthetic``, an image folder (ImageFolder or flat), an image cache made by ``simseg data
    cache``, a ``save_to_disk`` dataset, parquet/arrow files or a hub name; or a list of them, pretrained on as
    one (their union)."""

    source: str | list[str] = "synthetic"
    """Where the unlabelled images come from: one source, or a list whose union is used (``[DIR_A, DIR_B]`` in
    YAML, ``data.source=DIR_A,DIR_B`` on the command line)."""
    exclude: str = ""
    """A text file naming images never to train on (one name per line, a file name or its stem, e.g. a segmentation
    run's ``test_images.txt``): dropped from every source before the split; ``probe.*`` honours it too."""
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
    ratio: float | None = None
    """Fraction of mask units hidden from the encoder (the count per image is exact); null = the method's own
    (SimMIM 0.5, MAE 0.75)."""
    unit: int = 16
    """Side of a mask unit in pixels: a multiple of the patch size that divides the image size."""

    def __post_init__(self):
        check(self.ratio is None or 0.0 < self.ratio < 1.0, f"mask.ratio must be in (0, 1), got {self.ratio}")
        check(self.unit > 0, "mask.unit must be positive")


@dataclasses.dataclass
class DecoderConfig:
    """MAE's transformer decoder (SimMIM's is one linear layer and has no keys)."""

    dim: int = 128
    """Width of the decoder's tokens."""
    depth: int = 1
    """Number of decoder blocks (MAE's Table 1a: one block already fine-tunes within 0.1 points of eight)."""
    num_heads: int = 4
    """Attention heads per decoder block; ``dim`` must be a multiple of it."""

    def __post_init__(self):
        check(self.dim > 0 and self.depth > 0, "decoder.dim and decoder.depth must be positive")
        check(self.num_heads > 0 and self.dim % self.num_heads == 0,
              f"decoder.dim={self.dim} must be a multiple of decoder.num_heads={self.num_heads}")


@dataclasses.dataclass
class ProbeConfig:
    """A linear probe of the frozen encoder during pretraining: its patch tokens -> a per-patch linear head trained
    briefly on ``subset`` labelled images, scored (mIoU) on other labelled training images, never a test set."""

    every: int = 0
    """Probe every N epochs (and after the last); 0 = never."""
    data: str = ""
    """The labelled segmentation source (an Oxford-IIIT Pet folder, or ``synthetic``); required when ``every`` > 0."""
    subset: str = "250"
    """Labelled images the probe's head trains on."""
    score_images: int = 100
    """Further labelled images it is scored on (a fixed, seeded draw, apart from ``subset``)."""
    steps: int = 300
    """Full-batch AdamW steps of the linear head on the frozen features."""
    lr: float = 0.1
    """The head's learning rate (AdamW from a zero head on standardised tokens: ``steps`` must reach convergence,
    or the probe measures how fast the head fits rather than what the tokens hold)."""

    def __post_init__(self):
        check(self.every >= 0, "probe.every must be >= 0")
        check(self.every == 0 or bool(self.data), "probe.every > 0 needs probe.data (a labelled segmentation source)")
        parse_size(self.subset, "probe.subset")
        check(self.score_images >= 1 and self.steps >= 1 and self.lr > 0,
              "probe.score_images and probe.steps must be >= 1 and probe.lr positive")


@dataclasses.dataclass
class PretrainLogConfig(LogConfig):
    grid_every: int = 10
    """Write a reconstruction grid every N epochs (and after the last); 0 = only after the last."""
    grid_rows: int = 8
    """Held-out images (rows) in each reconstruction grid."""
    export_every: int = 0
    """Also keep the encoder of every N-th epoch as ``exports/epoch_NNN/encoder.safetensors`` (each one a valid
    ``init`` for the later stages: the pretraining-budget curve from one run); 0 = only the final export."""

    def __post_init__(self):
        super().__post_init__()
        check(self.grid_every >= 0 and self.grid_rows >= 1, "log.grid_every must be >= 0 and log.grid_rows >= 1")
        check(self.export_every >= 0, "log.export_every must be >= 0")


@dataclasses.dataclass
class PretrainConfig:
    output_dir: str = "outputs/pretrain"
    """The run folder (config, metrics, exports, resume state); it must be empty or absent unless ``resume=true``."""
    seed: int = 0
    """Seeds the held-out split, the training subset, the initialisation, the masks and the augmentation."""
    method: str = dataclasses.field(default="simmim", metadata=choices(METHODS))
    """The masked-image method (each one exports the same ``encoder.safetensors``)."""
    norm_pix: bool = False
    """Predict each patch's pixels normalised to zero mean and unit variance (MAE's ``norm_pix_loss``) instead of
    the raw normalised image; grids put the predictions back at each patch's own statistics."""
    resume: bool = False
    """Continue the run in ``output_dir`` from its last finished epoch; every key that changes what is computed must
    equal the saved config's."""
    data: PretrainDataConfig = dataclasses.field(default_factory=PretrainDataConfig)
    """The unlabelled images: where they come from, how many train and how many are held out."""
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    """The encoder to pretrain (its export, ``encoder.safetensors``, records these keys for the next stage)."""
    mask: MaskConfig = dataclasses.field(default_factory=MaskConfig)
    """The masking: the share of the image hidden from the encoder, and the size of the hidden units."""
    decoder: DecoderConfig = dataclasses.field(default_factory=DecoderConfig)
    """MAE's decoder (SimMIM's is a linear layer)."""
    probe: ProbeConfig = dataclasses.field(default_factory=ProbeConfig)
    """The linear probe that shows, while pretraining runs, what the encoder has learned for segmentation."""
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    """AdamW, the LR schedule, clipping and precision."""
    aug: AugConfig = dataclasses.field(default_factory=AugConfig)
    """Augmentation of the training images, and the normalisation of every image."""
    log: PretrainLogConfig = dataclasses.field(default_factory=PretrainLogConfig)
    """Progress output, trackers and reconstruction grids."""

    def __post_init__(self):
        check(self.method in METHODS, f"method '{self.method}' is unknown; choose one of {', '.join(METHODS)}")
        if self.mask.ratio is None:
            self.mask.ratio = METHODS[self.method].mask_ratio
        unit, patch, size = self.mask.unit, self.model.patch_size, self.model.img_size
        check(unit % patch == 0 and size % unit == 0,
              f"mask.unit={unit} must be a multiple of model.patch_size={patch} and divide model.img_size={size}")
