"""The classification stage's config: the study's intermediate recipe as defaults (AdamW LR 8e-4, 200 epochs, LR x 0.1
at epochs 180 and 190, dropout 0.1, the segmentation stage's crops of 50-100% of the image, MixUp, label smoothing).

As in :mod:`simseg.config.segment`, a section whose single default differs is a subclass redeclaring that field:
``build`` makes each section from its class, so a ``default_factory`` default would be lost as soon as the user set
any other key of the section.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from simseg.config.loader import AugConfig, ModelConfig, TrainConfig, _check, check_trackers
from simseg.config.segment import EvalConfig
from simseg.sizes import parse_size


@dataclasses.dataclass
class ClsDataConfig:
    source: str = "synthetic"
    """``synthetic`` (6 shape classes), an ImageFolder root with a train and a test folder of class folders
    (Intel Image Classification's ``seg_train/`` + ``seg_test/``, or ``train/`` + ``test/``), or a ``datasets``
    dataset (``save_to_disk`` folder or hub name) with a train and a test split, an image and a label column."""
    subset: str | None = None
    """Training images: a seeded draw, stratified by class and nested for one seed (``2k``, ...); null = all
    (required for ``synthetic``)."""
    test_size: str | None = None
    """Test images: null = the whole test folder or split (``synthetic``: 1k); a size draws a seeded,
    class-stratified subset of the test set (quicker evaluation, same for every run of a seed)."""
    split: str = "train"
    """Training split of a ``datasets`` source."""
    test_split: str = "test"
    """Test split of a ``datasets`` source."""
    image_column: str = ""
    """Image column of a ``datasets`` source; empty = the first column of Image type."""
    label_column: str = ""
    """Label column of a ``datasets`` source; empty = the first ClassLabel column, else ``label``/``labels``."""
    synthetic_image_size: int = 160
    synthetic_seed: int = 0
    num_workers: int = 4
    """DataLoader worker processes; 0 loads in the main process."""

    def __post_init__(self):
        self.sizes()
        _check(self.synthetic_image_size >= 32, "data.synthetic_image_size must be at least 32")
        _check(self.num_workers >= 0, "data.num_workers must be >= 0")

    def sizes(self) -> tuple[int | None, int | None]:
        """(test images or None = all, training subset or None = all)."""
        test = None if self.test_size is None else parse_size(self.test_size, "data.test_size")
        return test, None if self.subset is None else parse_size(self.subset, "data.subset")


@dataclasses.dataclass
class ClsModelConfig(ModelConfig):
    drop_rate: float = 0.1
    """Dropout after the embedding, in attention output, MLPs and before the classifier (the study's 0.1)."""


@dataclasses.dataclass
class ClsTrainConfig(TrainConfig):
    epochs: int = 200
    lr: float = 8e-4
    milestones: list[float] = dataclasses.field(default_factory=lambda: [180.0, 190.0])
    label_smoothing: float = 0.1
    """Smoothing of the one-hot targets (before mixing); 0 = off."""

    def __post_init__(self):
        super().__post_init__()
        _check(0 <= self.label_smoothing < 1, "train.label_smoothing must be in [0, 1)")


@dataclasses.dataclass
class ClsAugConfig(AugConfig):
    crop_scale: tuple[float, float] = (0.5, 1.0)


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

    def __post_init__(self):
        _check(self.alpha >= 0 and self.cutmix_alpha >= 0, "mixup.alpha and mixup.cutmix_alpha must be >= 0")
        _check(0 <= self.prob <= 1 and 0 <= self.switch_prob <= 1, "mixup.prob and mixup.switch_prob are "
                                                                   "probabilities")

    @property
    def enabled(self) -> bool:
        return (self.alpha > 0 or self.cutmix_alpha > 0) and self.prob > 0


@dataclasses.dataclass
class ClsLogConfig:
    progress: bool = True
    trackers: list[str] = dataclasses.field(default_factory=list)
    """Accelerate trackers, e.g. [tensorboard]; logs go to ``output_dir/logs``."""

    def __post_init__(self):
        check_trackers(self.trackers)


@dataclasses.dataclass
class ClassifyConfig:
    output_dir: str = "outputs/classify"
    seed: int = 0
    """Seeds the splits, the head's initialisation, augmentation, MixUp and dropout."""
    resume: bool = False
    init: str = "scratch"
    """``scratch`` (random encoder) or a run folder / ``encoder.safetensors`` of another stage (pretraining)."""
    head: Literal["token", "mean"] = "token"
    """Classifier input: the cls token (the study), or the mean of the patch tokens."""
    data: ClsDataConfig = dataclasses.field(default_factory=ClsDataConfig)
    model: ClsModelConfig = dataclasses.field(default_factory=ClsModelConfig)
    train: ClsTrainConfig = dataclasses.field(default_factory=ClsTrainConfig)
    aug: ClsAugConfig = dataclasses.field(default_factory=ClsAugConfig)
    mixup: MixupConfig = dataclasses.field(default_factory=MixupConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    log: ClsLogConfig = dataclasses.field(default_factory=ClsLogConfig)

    def __post_init__(self):
        _check(bool(self.init.strip()), "init must be 'scratch' or the path of a run folder or encoder.safetensors")
        _check(not self.mixup.enabled or self.train.batch_size % 2 == 0,
               f"train.batch_size={self.train.batch_size} must be even with MixUp/CutMix on (it mixes each batch "
               f"with its reverse): choose an even size or set mixup.prob=0")
