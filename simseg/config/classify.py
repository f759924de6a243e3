"""The classification stage's config: the study's intermediate recipe as defaults (AdamW LR 8e-4, 200 epochs, LR x 0.1
at epochs 180 and 190, dropout 0.1, the segmentation stage's crops of 50-100% of the image, MixUp, label smoothing)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

from simseg.config.loader import RenamedKeys, check
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
class ClsDataConfig(SourceConfig):
    """Labelled scenes: ``synthetic`` (6 shape classes), an ImageFolder root with a train and a test folder of class
    folders (Intel Image Classification's ``seg_train/`` + ``seg_test/``, or ``train/`` + ``test/``), or a
    ``datasets`` dataset (``save_to_disk`` folder or hub name) with a train and a test split, an image and a label
    column. ``subset`` null = all (required for ``synthetic``)."""

    test_size: str | None = None
    """Test images: null = the whole test folder or split (``synthetic``: 1k); a size draws a seeded,
    class-stratified subset of the test set (quicker evaluation, same for every run of a seed)."""
    test_split: str = "test"
    """Test split of a ``datasets`` source."""
    label_column: str = ""
    """Label column of a ``datasets`` source; empty = the first ClassLabel column, else ``label``/``labels``."""

    def __post_init__(self):
        super().__post_init__()
        self.sizes()

    def sizes(self) -> tuple[int | None, int | None]:
        """(test images or None = all, training subset or None = all)."""
        test = None if self.test_size is None else parse_size(self.test_size, "data.test_size")
        return test, None if self.subset is None else parse_size(self.subset, "data.subset")


@dataclasses.dataclass
class ClsTrainConfig(TrainConfig):
    epochs: int = 200
    lr: float = 8e-4
    milestones: list[float] = dataclasses.field(default_factory=lambda: [180.0, 190.0])
    label_smoothing: float = 0.1
    """Smoothing of the one-hot targets (before mixing); 0 = off."""

    def __post_init__(self):
        super().__post_init__()
        check(0 <= self.label_smoothing < 1, "train.label_smoothing must be in [0, 1)")


@dataclasses.dataclass
class MixupConfig:
    """timm's ``Mixup`` on each training batch (one mixing factor per batch)."""

    alpha: float = 0.8
    """Beta(alpha, alpha) of MixUp's mixing factor; 0 = no MixUp."""
    cutmix_alpha: float = 0.0
    """Beta(a, a) of CutMix's box area; 0 = no CutMix. With both on, each batch is CutMix with ``switch_prob``."""
    prob: float = 1.0
    """Probability that a batch is mixed at all; 0 = off (targets stay one-hot, smoothed)."""
    switch_prob: float = 0.5
    """With both MixUp and CutMix on: the probability that a mixed batch gets CutMix rather than MixUp."""

    def __post_init__(self):
        check(self.alpha >= 0 and self.cutmix_alpha >= 0, "mixup.alpha and mixup.cutmix_alpha must be >= 0")
        check(0 <= self.prob <= 1 and 0 <= self.switch_prob <= 1, "mixup.prob and mixup.switch_prob are "
                                                                   "probabilities")

    @property
    def enabled(self) -> bool:
        return (self.alpha > 0 or self.cutmix_alpha > 0) and self.prob > 0


@dataclasses.dataclass
class ClassifyConfig:
    RENAMED: ClassVar[RenamedKeys] = {"head": ("pool", None)}
    """Keys the loader moves in configs written before a rename: ``head`` was ``pool``'s name."""

    output_dir: str = "outputs/classify"
    """The run folder (config, metrics, exports, resume state); it must be empty or absent unless ``resume=true``."""
    seed: int = 0
    """Seeds the splits, the head's initialisation, augmentation, MixUp and dropout."""
    resume: bool = False
    """Continue the run in ``output_dir`` from its last finished epoch; every key that changes what is computed must
    equal the saved config's."""
    init: str = "scratch"
    """``scratch`` (random encoder) or a run folder / ``encoder.safetensors`` of another stage (pretraining), or a
    pretraining's intermediate export ``RUN/exports/epoch_NNN``."""
    pool: Literal["token", "mean"] = "token"
    """Classifier input: the cls token (the study), or the mean of the patch tokens."""
    data: ClsDataConfig = dataclasses.field(default_factory=ClsDataConfig)
    """The labelled scenes: where they come from, the training subset and the test set."""
    model: FineTuneModelConfig = dataclasses.field(default_factory=FineTuneModelConfig)
    """The encoder (an ``init`` export must have the same architecture keys; at another ``img_size`` its position
    embedding is resampled) and its dropout."""
    train: ClsTrainConfig = dataclasses.field(default_factory=ClsTrainConfig)
    """AdamW, the LR schedule, clipping, precision and label smoothing."""
    aug: FineTuneAugConfig = dataclasses.field(default_factory=FineTuneAugConfig)
    """Augmentation of the training images, and the normalisation of every image."""
    mixup: MixupConfig = dataclasses.field(default_factory=MixupConfig)
    """MixUp / CutMix of the training batches."""
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    """When the test set is scored."""
    log: LogConfig = dataclasses.field(default_factory=LogConfig)
    """Progress output and trackers."""

    def __post_init__(self):
        check(bool(self.init.strip()), "init must be 'scratch' or the path of a run folder or encoder.safetensors")
        check(not self.mixup.enabled or self.train.batch_size % 2 == 0,
               f"train.batch_size={self.train.batch_size} must be even with MixUp/CutMix on (it mixes each batch "
               f"with its reverse): choose an even size or set mixup.prob=0")
