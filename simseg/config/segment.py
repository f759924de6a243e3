"""The segmentation stage's config: the study's fine-tuning recipe as defaults (AdamW LR 2e-3, weight decay 1e-4,
100 epochs, LR x 0.5 at epochs 70, 90 and 95, dropout 0.1, crops of 50-100% of the image).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from simseg.config.loader import check
from simseg.config.sections import (
    EvalConfig,
    FineTuneAugConfig,
    FineTuneModelConfig,
    LogConfig,
    SourceConfig,
    TrainConfig,
)
from simseg.sizes import parse_size


@dataclasses.dataclass
class SegDataConfig(SourceConfig):
    """Labelled image/mask pairs: ``synthetic``, an Oxford-IIIT Pet folder (``images/`` + ``annotations/trimaps/``,
    or its parent), a ``save_to_disk`` dataset, parquet/arrow files or a hub name with an image and a mask column.
    ``subset`` is drawn from the images left after the test set, stratified by breed where known; null = all the
    rest (required for ``synthetic``). The synthetic source holds the test set plus 10k images (more if val_size +
    subset need them), each rendered only when used, so test set and nested subsets behave as on a real dataset."""

    test_size: str = "1k"
    """Seeded random test set (saved as ``test_images.txt``), the same for every subset and seed."""
    test_seed: int = 0
    """Seeds the test draw only, so runs of every ``seed`` are scored on the same images; ``seed`` draws the
    training subset (nested for one seed), the head's initialisation and the training randomness."""
    val_size: str = "0"
    """Validation images (held out of training, never from the test set) on which the best epoch is chosen;
    0 = none: the last epoch is reported."""
    mask_column: str = ""
    """Mask column (Oxford trimap values 1/2/3) of a ``datasets`` source; empty = detected."""
    skip_unpaired: bool = False
    """Skip (and count) Oxford images without a trimap and trimaps without an image instead of failing."""

    def __post_init__(self):
        super().__post_init__()
        self.sizes()

    def sizes(self) -> tuple[int, int | None, int]:
        """(test images, training subset or None = all the rest, validation images)."""
        val = 0 if str(self.val_size).strip() == "0" else parse_size(self.val_size, "data.val_size")
        subset = None if self.subset is None else parse_size(self.subset, "data.subset")
        return parse_size(self.test_size, "data.test_size"), subset, val


@dataclasses.dataclass
class SegTrainConfig(TrainConfig):
    batch_size: int = 32
    """Per-process batch size (the study does not state it; 32 gives 8 steps per epoch on the 250-image subset)."""
    lr: float = 2e-3
    weight_decay: float = 1e-4
    milestones: list[float] = dataclasses.field(default_factory=lambda: [70.0, 90.0, 95.0])
    lr_decay: float = 0.5
    ema: float = 0.0
    """Decay of an exponential moving average of the weights (e.g. 0.999), evaluated, reported and exported
    instead of the raw weights; 0 = off."""
    layer_decay: float = 1.0
    """Layer-wise LR decay (BEiT/MAE, timm's grouping): the head gets the full LR, block i of L (0-based, the last
    with the final norm) LR x layer_decay^(L - i), the embeddings LR x layer_decay^(L + 1); 1 = off."""
    freeze_encoder_epochs: int = 0
    """Train only the head for the first N epochs (the encoder runs without gradients); 0 = off."""

    def __post_init__(self):
        super().__post_init__()
        check(self.ema == 0 or 0 < self.ema < 1, "train.ema must be 0 (off) or a decay in (0, 1), e.g. 0.999")
        check(0 < self.layer_decay <= 1, "train.layer_decay must be in (0, 1]; 1 = off")
        check(0 <= self.freeze_encoder_epochs < self.epochs,
               "train.freeze_encoder_epochs must be in [0, train.epochs): the encoder must train for some epochs")


@dataclasses.dataclass
class SegLogConfig(LogConfig):
    examples: int = 6
    """Rows (fixed test images) of ``examples.png``: image | ground truth | prediction."""

    def __post_init__(self):
        super().__post_init__()
        check(self.examples >= 1, "log.examples must be >= 1")


@dataclasses.dataclass
class SegmentConfig:
    output_dir: str = "outputs/segment"
    seed: int = 0
    """Seeds the splits, the head's initialisation, augmentation and dropout."""
    resume: bool = False
    init: str = "scratch"
    """``scratch`` (random encoder, the baseline) or a run folder / ``encoder.safetensors`` of another stage."""
    head: Literal["linear", "linear_upsample"] = "linear"
    """``linear``: each patch token -> patch x patch x classes logits, pixel-shuffled to full resolution (the study);
    ``linear_upsample``: each token -> classes logits, upsampled bilinearly."""
    loss: Literal["ce", "ce+dice"] = "ce"
    """Per-pixel cross-entropy, or its mean with a soft Dice loss over the classes."""
    data: SegDataConfig = dataclasses.field(default_factory=SegDataConfig)
    model: FineTuneModelConfig = dataclasses.field(default_factory=FineTuneModelConfig)
    train: SegTrainConfig = dataclasses.field(default_factory=SegTrainConfig)
    aug: FineTuneAugConfig = dataclasses.field(default_factory=FineTuneAugConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    log: SegLogConfig = dataclasses.field(default_factory=SegLogConfig)

    def __post_init__(self):
        check(bool(self.init.strip()), "init must be 'scratch' or the path of a run folder or encoder.safetensors")
