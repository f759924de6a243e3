"""The segmentation stage's config: the study's fine-tuning recipe as defaults (AdamW LR 2e-3, weight decay 1e-4,
100 epochs, LR x 0.5 at epochs 70, 90 and 95, dropout 0.1, crops of 50-100% of the image).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

from simseg.config.classify import MixupConfig
from simseg.config.loader import RenamedKeys, check
from simseg.config.presets import Preset, choices
from simseg.config.sections import EvalConfig, FineTuneAugConfig, FineTuneModelConfig, LogConfig, TrainConfig
from simseg.config.segment_data import SegDataConfig
from simseg.models.cnn_segmentation import ENCODER_STRIDE
from simseg.models.registry import ARCHS, DEFAULT_ARCH, HEAD_SYNONYMS


@dataclasses.dataclass
class SegModelConfig(FineTuneModelConfig):
    arch: str = dataclasses.field(default=DEFAULT_ARCH, metadata=choices(ARCHS))
    """The segmentation model (:data:`simseg.models.registry.ARCHS`). The other ``model.*`` keys describe the ViT's
    encoder; a CNN uses only ``img_size`` (a multiple of 32) and ignores the ViT's dropout keys."""

    def __post_init__(self):
        super().__post_init__()
        check(self.arch in ARCHS, f"model.arch '{self.arch}' is unknown; choose one of {', '.join(ARCHS)}")
        check(self.family == "vit" or self.img_size % ENCODER_STRIDE == 0,
              f"model.img_size={self.img_size}: {self.arch} needs a multiple of {ENCODER_STRIDE}")

    @property
    def family(self) -> str:
        """``vit`` or ``cnn``."""
        return ARCHS[self.arch].family


# Named augmentations (``aug.preset=``), each setting every key of :class:`SegAugConfig` that defaults to null.
AUG_PRESETS: dict[str, Preset] = {
    "study": Preset("The study's fine-tuning augmentation (the classify stage's too): crops, flips and colour "
                    "jitter.",
                    dict(crop_scale=(0.5, 1.0), hflip=0.5, color_jitter=(0.4, 0.4, 0.4, 0.1), color_jitter_prob=0.8,
                         rotation=0.0, blur_prob=0.0)),
    "light": Preset("Flips and mild crops only: no photometric change.",
                    dict(crop_scale=(0.8, 1.0), hflip=0.5, color_jitter=(0.4, 0.4, 0.4, 0.1), color_jitter_prob=0.0,
                         rotation=0.0, blur_prob=0.0)),
    "heavy": Preset("Stronger crops, rotation, colour jitter and an occasional light blur.",
                    dict(crop_scale=(0.6, 1.0), hflip=0.5, color_jitter=(0.4, 0.4, 0.4, 0.1), color_jitter_prob=0.8,
                         rotation=20.0, blur_prob=0.2)),
}


@dataclasses.dataclass
class SegAugConfig(FineTuneAugConfig):
    """Augmentation of the training pairs. ``preset`` fills every key of :data:`AUG_PRESETS` left null; a key given
    explicitly (``aug.rotation=10``) overrides the preset's value. The resolved values are what config.yaml holds."""

    preset: str = dataclasses.field(default="study", metadata=choices(AUG_PRESETS))
    """A named augmentation (:data:`AUG_PRESETS`) that fills the ``aug.*`` keys left null."""
    crop_scale: tuple[float, float] | None = None
    """Random resized crop: the range of the crop's area, as a fraction of the image's."""
    hflip: float | None = None
    color_jitter: tuple[float, float, float, float] | None = None
    color_jitter_prob: float | None = None
    rotation: float | None = None
    blur_prob: float | None = None

    def __post_init__(self):
        check(self.preset in AUG_PRESETS,
              f"aug.preset={self.preset!r} is not allowed; choose one of {', '.join(AUG_PRESETS)}")
        for key, value in AUG_PRESETS[self.preset].settings.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        super().__post_init__()


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
    ema_half_life: float = 0.0
    """The EMA given as Composer does: the number of batches after which a weight's share in the average has
    halved (e.g. 1000); the decay per update is then 0.5 ** (ema_interval / ema_half_life). 0 = use ``ema``."""
    ema_interval: int = 1
    """Batches between EMA updates (Composer's ``update_interval``, e.g. 10)."""
    sam_rho: float = 0.0
    """Sharpness-aware minimisation: the radius of the ascent step (e.g. 0.05; MosaicML's recipes use 0.3 with
    ``sam_interval`` 2); 0 = off. A SAM step costs a second forward and backward pass."""
    sam_interval: int = 1
    """Take every N-th step with SAM (1 = every step); the others are plain steps."""
    sam_adaptive: bool = False
    """ASAM: the ascent step scaled by each weight's magnitude (use a larger rho, e.g. 0.5-2)."""
    layer_decay: float = 1.0
    """Layer-wise LR decay (BEiT/MAE, timm's grouping): the head gets the full LR, block i of L (0-based, the last
    with the final norm) LR x layer_decay^(L - i), the embeddings LR x layer_decay^(L + 1); 1 = off."""
    freeze_encoder_epochs: int = 0
    """Train only the head for the first N epochs (the encoder runs without gradients); 0 = off."""

    def __post_init__(self):
        super().__post_init__()
        check(self.ema == 0 or 0 < self.ema < 1, "train.ema must be 0 (off) or a decay in (0, 1), e.g. 0.999")
        check(self.ema_half_life >= 0, "train.ema_half_life must be >= 0 batches (0 = off)")
        check(not (self.ema and self.ema_half_life), "give train.ema or train.ema_half_life, not both")
        check(self.ema_interval >= 1, "train.ema_interval must be >= 1 batch")
        check(self.sam_rho >= 0, "train.sam_rho must be >= 0 (0 = off)")
        check(self.sam_interval >= 1, "train.sam_interval must be >= 1 step")
        check(0 < self.layer_decay <= 1, "train.layer_decay must be in (0, 1]; 1 = off")
        check(0 <= self.freeze_encoder_epochs < self.epochs,
               "train.freeze_encoder_epochs must be in [0, train.epochs): the encoder must train for some epochs")

    def sam(self) -> tuple[float, int, bool] | None:
        """(rho, interval, adaptive) for :func:`simseg.training.engine.train_one_epoch`, or None without SAM."""
        return (self.sam_rho, self.sam_interval, self.sam_adaptive) if self.sam_rho else None

    def ema_decay(self) -> float:
        """The EMA's decay per update (0 = no EMA): ``ema``, or the one ``ema_half_life`` and ``ema_interval``
        give."""
        return 0.5 ** (self.ema_interval / self.ema_half_life) if self.ema_half_life else self.ema


@dataclasses.dataclass
class SegMixupConfig(MixupConfig):
    """MixUp/CutMix of training batches with per-pixel soft targets (:mod:`simseg.models.segmentation_mixing`),
    configured like the classify stage's; off by default (the study's segmentation has none)."""

    alpha: float = 0.0
    """Beta(alpha, alpha) of MixUp's mixing factor (e.g. 0.2); 0 = no MixUp."""


@dataclasses.dataclass
class SegEvalConfig(EvalConfig):
    tta: bool = False
    """Test-time augmentation of the final test scores: softmax probabilities averaged over
    ``tta_scales`` x (plain, horizontally flipped); metrics.json then holds both figures (``miou`` with TTA,
    ``plain_miou`` without). The per-epoch scores stay plain (cheap)."""
    tta_scales: list[float] = dataclasses.field(default_factory=lambda: [0.75, 1.0, 1.25])
    """Image-side scales of the views (each rounded to a multiple of 32 pixels)."""
    tta_flip: bool = True
    """With ``tta``: each scale's horizontally flipped view joins the average."""

    def __post_init__(self):
        super().__post_init__()
        check(bool(self.tta_scales) and all(0.25 <= s <= 4 for s in self.tta_scales),
              "eval.tta_scales must be a non-empty list of scales in [0.25, 4], e.g. [0.75, 1.0, 1.25]")

    def tta_views(self) -> tuple[list[float], bool] | None:
        """(scales, flip) for :func:`simseg.training.engine.evaluate_confusion`, or None without TTA."""
        return (list(self.tta_scales), self.tta_flip) if self.tta else None


@dataclasses.dataclass
class SegLogConfig(LogConfig):
    examples: int = 6
    """Rows (fixed test images) of ``examples.png``: image | ground truth | prediction."""

    def __post_init__(self):
        super().__post_init__()
        check(self.examples >= 1, "log.examples must be >= 1")


# Named training recipes (``recipe=``), after MosaicML's published segmentation recipes (DeepLabv3+ on ADE20k),
# in this stage's keys. The EMA and SAM numbers are Composer's, in batches: a 1,000-batch half-life averages mostly
# the early weights of a run only a few hundred steps long, so set train.ema_half_life to a fraction of such a run.
RECIPES: dict[str, Preset] = {
    "study": Preset("The study's recipe: the stage's defaults."),
    "mild": Preset("MosaicML's mild recipe: an EMA of the weights, a Dice term beside cross-entropy and a constant "
                   "LR after the warmup.",
                   {"loss": "ce+dice", "train": {"schedule": "constant", "ema_half_life": 1000.0, "ema_interval": 10}}),
    "medium": Preset("MosaicML's medium recipe: mild + MixUp + SAM (a SAM step costs a second forward and backward "
                     "pass).",
                     {"loss": "ce+dice", "mixup": {"alpha": 0.2},
                      "train": {"schedule": "constant", "ema_half_life": 1000.0, "ema_interval": 10, "sam_rho": 0.3,
                                "sam_interval": 2}}),
    "hot": Preset("MosaicML's hot recipe: EMA and SAM every step, stronger MixUp. Composer also trains twice as "
                  "long: give train.epochs yourself, as a recipe sets fixed values.",
                  {"loss": "ce+dice", "mixup": {"alpha": 0.5},
                   "train": {"schedule": "constant", "ema_half_life": 1000.0, "ema_interval": 1, "sam_rho": 0.3,
                             "sam_interval": 1}}),
}


@dataclasses.dataclass
class SegmentConfig:
    RECIPES: ClassVar[dict[str, Preset]] = RECIPES
    """The module's :data:`RECIPES`, for the loader: it fills the keys of the named ``recipe`` the config leaves out."""
    RENAMED: ClassVar[RenamedKeys] = {"head": ("model.arch", HEAD_SYNONYMS)}
    """Keys the loader moves in configs written before a rename: ``head=`` named the model before ``model.arch``."""

    output_dir: str = "outputs/segment"
    """The run folder (config, metrics, exports, resume state); it must be empty or absent unless ``resume=true``."""
    seed: int = 0
    """Seeds the splits, the head's initialisation, augmentation and dropout."""
    resume: bool = False
    """Continue the run in ``output_dir`` from its last finished epoch; every key that changes what is computed must
    equal the saved config's."""
    init: str = "scratch"
    """A ViT model: ``scratch`` (random encoder, the baseline) or a run folder / ``encoder.safetensors`` of another
    stage (or a pretraining's intermediate export ``RUN/exports/epoch_NNN``). A CNN model: ``scratch``,
    ``imagenet`` (its library's ImageNet weights; needs a network the first time) or a local weights file of its
    encoder (torchvision/timm ResNet-18 keys, ``.pth`` or ``.safetensors``)."""
    loss: Literal["ce", "ce+dice"] = "ce"
    """Per-pixel cross-entropy, or its mean with a soft Dice loss over the classes."""
    recipe: str = dataclasses.field(default="study", metadata=choices(RECIPES))
    """A named set of training keys (:data:`RECIPES`); keys given explicitly override the recipe's."""
    data: SegDataConfig = dataclasses.field(default_factory=SegDataConfig)
    """The labelled image/mask pairs: where they come from, the test set, the training subset and validation."""
    model: SegModelConfig = dataclasses.field(default_factory=SegModelConfig)
    """The segmentation model and its ViT encoder (an ``init`` export must have the same architecture keys; at
    another ``img_size`` its position embedding is resampled)."""
    train: SegTrainConfig = dataclasses.field(default_factory=SegTrainConfig)
    """AdamW, the LR schedule, clipping, precision, EMA, SAM, layer decay and encoder freezing."""
    aug: SegAugConfig = dataclasses.field(default_factory=SegAugConfig)
    """Augmentation of the training pairs, and the normalisation of every image."""
    mixup: SegMixupConfig = dataclasses.field(default_factory=SegMixupConfig)
    """MixUp / CutMix of the training batches, with per-pixel soft targets."""
    eval: SegEvalConfig = dataclasses.field(default_factory=SegEvalConfig)
    """When the test (and validation) sets are scored, and test-time augmentation of the final scores."""
    log: SegLogConfig = dataclasses.field(default_factory=SegLogConfig)
    """Progress output, trackers and examples.png."""

    def __post_init__(self):
        check(self.recipe in RECIPES, f"recipe={self.recipe!r} is not allowed; choose one of {', '.join(RECIPES)}")
        check(bool(self.init.strip()), "init must be 'scratch' or the path of a run folder or encoder.safetensors")
        if self.model.family == "vit":
            check(self.init != "imagenet", f"init=imagenet is for the CNN models; {self.model.arch} starts from "
                                           f"scratch or from a simseg run folder / encoder.safetensors")
        else:
            check(self.train.layer_decay == 1, f"train.layer_decay works on a ViT's blocks; set it to 1 for "
                                               f"{self.model.arch}")
