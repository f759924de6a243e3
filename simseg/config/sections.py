"""Config sections more than one stage uses, each defined once: the data fields every stage has, the encoder, the
optimiser and schedule, augmentation, evaluation and logging. Each stage's module (:mod:`simseg.config.pretrain`,
:mod:`~simseg.config.classify`, :mod:`~simseg.config.segment`) adds its own fields to these.

Where a stage only changes a default, a subclass redeclares that field: ``build`` makes each section from its class,
so a default given through the parent's ``default_factory`` would be lost as soon as the user set any other key of
the section.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Literal

from timm.models import model_entrypoint

from simseg.config.loader import check
from simseg.config.presets import Preset, choices
from simseg.models.vit import ARCHITECTURES, DEFAULT_ARCHITECTURE
from simseg.sizes import parse_size

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The registered encoders as ``model.name`` offers them: each one's sizes (:data:`simseg.models.vit.ARCHITECTURES`)
# and, as its description, the docstring of its timm builder.
ENCODERS: dict[str, Preset] = {name: Preset(inspect.getdoc(model_entrypoint(name)) or "", sizes)
                               for name, sizes in ARCHITECTURES.items()}


@dataclasses.dataclass
class SourceConfig:
    """The data fields every stage has; each stage's data section adds its own (test and validation sizes, columns).
    What ``source`` may name depends on the stage: see its data section."""

    source: str = "synthetic"
    """``synthetic`` (built-in images, generated on the fly), a folder in the stage's layout, a ``save_to_disk``
    dataset, parquet/arrow files or a hub name."""
    subset: str | None = None
    """Training images: a seeded subset (``250``, ``1k``, ``1.5k``, ``45k``); null = all. The labelled stages draw it
    stratified (by class or breed) and nested, so for one seed the 250 images are among the 500."""
    image_column: str = ""
    """Image column of a ``datasets`` source; empty = detected (the first column of Image type)."""
    split: str = "train"
    """Training split of a ``datasets`` source that has several."""
    synthetic_image_size: int = 160
    """Side in pixels of the ``synthetic`` source's square images, which are then cropped and resized to
    ``model.img_size`` like any other."""
    synthetic_seed: int = 0
    """Which synthetic images: each stage draws its own stream from this seed, so stages never share images."""
    num_workers: int | None = None
    """DataLoader worker processes; 0 loads in the main process; null = chosen for this machine by
    :func:`default_num_workers` (the run folder's config.yaml records the number under ``resolved``)."""
    pipeline: Literal["auto", "per_image", "batched"] = "auto"
    """Training batches: ``per_image`` (decoding and PIL transforms item by item in the loader), ``batched``
    (images decoded once into a cache, gathered by index and augmented as one batch on the training device),
    ``auto`` = batched when the source is an image cache or its decoded items fit in a quarter of the memory.
    A run records what it chose in its config.yaml, and a resumed run keeps it."""
    cache_dir: str = ""
    """Where the batched path's automatic caches go (one folder per source and size, reused while the source is
    unchanged); empty = ``data_cache/`` in the run folder. A sweep points all its cells at ``SWEEP_DIR/data_cache``."""

    def __post_init__(self):
        if self.subset is not None:
            parse_size(self.subset, "data.subset")
        check(self.synthetic_image_size >= 32, "data.synthetic_image_size must be at least 32")
        check(self.num_workers is None or self.num_workers >= 0, "data.num_workers must be >= 0 (or null)")

    def workers(self) -> int:
        """``num_workers``, or the machine's default when it is null."""
        return default_num_workers() if self.num_workers is None else self.num_workers


def default_num_workers() -> int:
    """Loader workers for the cores this process may use and its device.

    With a GPU the CPU only feeds it: one worker per core but one, at most 8. On a CPU alone, workers take cores
    from the compute threads, so a small CPU gets none and a larger one a quarter of its cores beyond two, at most 4
    (docs/performance.md)."""
    import os

    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if torch.cuda.is_available():
        return max(0, min(8, cores - 1))
    return min(4, max(0, cores - 2) // 4)


@dataclasses.dataclass
class ModelConfig:
    """The encoder. Architecture fields left null take the values of the registered architecture ``name``."""

    name: str = dataclasses.field(default=DEFAULT_ARCHITECTURE, metadata=choices(ENCODERS))
    """The registered encoder (timm name) whose sizes fill the architecture keys below that are left null."""
    img_size: int | None = None
    """Side of the square input image in pixels, a multiple of ``patch_size``: every image is cropped or resized to
    it."""
    patch_size: int | None = None
    """Side of a patch, one token, in pixels."""
    embed_dim: int | None = None
    """Width of a token; a multiple of ``num_heads``."""
    depth: int | None = None
    """Number of transformer blocks."""
    num_heads: int | None = None
    """Attention heads per block."""
    mlp_dim: int | None = None
    """Hidden width of each block's MLP."""
    drop_rate: float = 0.0
    """Dropout after the embedding, in attention output and MLPs (and before a classifier); 0 = none."""
    attn_drop_rate: float = 0.0
    """Dropout of the attention weights; 0 = none."""
    drop_path_rate: float = 0.0
    """Stochastic depth: the probability of skipping a block's residual branches, rising linearly from 0 at the
    first block to this at the last; 0 = none."""
    pos_embed_init: Literal["random", "sincos"] = "random"
    """Initial value of the (learned) position embedding: timm's small random values, or 2-D sin-cos as in MAE,
    which lets masked tokens find their neighbours from the first step."""

    def __post_init__(self):
        check(self.name in ARCHITECTURES, f"model.name '{self.name}' is unknown; choose one of {sorted(ARCHITECTURES)}")
        for key, value in ARCHITECTURES[self.name].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        check(self.img_size % self.patch_size == 0, "model.img_size must be a multiple of model.patch_size")
        check(self.embed_dim % self.num_heads == 0, "model.embed_dim must be a multiple of model.num_heads")
        for key in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
            check(0.0 <= getattr(self, key) < 1.0, f"model.{key} must be in [0, 1)")

    def architecture(self) -> dict[str, Any]:
        """The fields that decide the weights' shapes: an export from another architecture is refused on these."""
        keys = ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_dim")
        return {key: getattr(self, key) for key in keys}

    @property
    def family(self) -> str:
        """``vit``: these keys describe a ViT (the segment stage's ``model.arch`` may name a CNN instead)."""
        return "vit"


@dataclasses.dataclass
class FineTuneModelConfig(ModelConfig):
    drop_rate: float = 0.1
    """Dropout after the embedding, in attention output and MLPs (and before a classifier): the study's 0.1 for
    both labelled stages."""


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 100
    """Passes over the training images."""
    batch_size: int = 128
    """Per-process batch size."""
    lr: float = 1e-4
    """Peak AdamW learning rate: after the warmup, before any decay."""
    weight_decay: float = 0.05
    """AdamW decay; none on norms, biases, embeddings and the mask token."""
    milestones: list[float] = dataclasses.field(default_factory=lambda: [0.5, 0.85])
    """Epochs after which the LR is multiplied by ``lr_decay``; values below 1 are fractions of ``epochs``."""
    lr_decay: float = 0.1
    """Factor the LR is multiplied by at each of ``milestones`` (``schedule=multistep``)."""
    schedule: Literal["multistep", "cosine", "constant"] = "multistep"
    """After the warmup: ``multistep`` (LR x ``lr_decay`` at each of ``milestones``, the study's), ``cosine`` (half a
    cosine down to ``min_lr`` at the last step) or ``constant``."""
    min_lr: float = 0.0
    """Where ``schedule=cosine`` ends."""
    warmup_epochs: float = 0.0
    """Epochs (fractions allowed) of linear warmup from near 0 to ``lr``; 0 = none."""
    grad_clip: float = 5.0
    """Max gradient norm; 0 disables clipping."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    """Accelerate's autocast of the forward pass: ``no`` (float32), ``bf16`` or ``fp16`` (with loss scaling)."""
    compile: bool = False
    """torch.compile the model (Accelerate's inductor backend) and, on the batched data path, the colour jitter:
    fusing the jitter's many small element-wise steps pays on any device, the model's larger kernels mainly on GPUs
    (docs/performance.md). The training step compiles once, with static shapes: an epoch's short last batch is
    dropped (other images each epoch, as the shuffle changes), and evaluation, grids and examples run eagerly."""
    compile_cache_dir: str = ""
    """Where ``compile`` keeps its compiled kernels, so a later run of the same model and batch size starts from
    them; empty = ``$TORCHINDUCTOR_CACHE_DIR`` if set, else ``~/.cache/simseg/inductor``. config.yaml records the
    folder used under ``resolved``."""

    def __post_init__(self):
        check(self.epochs >= 1, "train.epochs must be >= 1")
        check(self.batch_size >= 1, "train.batch_size must be >= 1")
        check(self.lr > 0, "train.lr must be positive")
        check(self.weight_decay >= 0, "train.weight_decay must be >= 0")
        check(all(m > 0 for m in self.milestones), "train.milestones must be positive (epochs, or fractions below 1)")
        check(0 < self.lr_decay <= 1, "train.lr_decay must be in (0, 1]")
        check(0 <= self.min_lr <= self.lr, "train.min_lr must be in [0, train.lr]")
        check(0 <= self.warmup_epochs < self.epochs, "train.warmup_epochs must be in [0, train.epochs)")
        check(self.grad_clip >= 0, "train.grad_clip must be >= 0")


@dataclasses.dataclass
class AugConfig:
    crop_scale: tuple[float, float] = (0.67, 1.0)
    """Random resized crop: the range of the crop's area, as a fraction of the image's."""
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    """Random resized crop: the range of the crop's aspect ratio (width / height)."""
    hflip: float = 0.5
    """Probability of a horizontal flip (of a segmentation mask with its image); 0 = none."""
    color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    """Colour jitter strengths: brightness, contrast, saturation (factors drawn from [1-x, 1+x]) and hue (a shift
    drawn from [-h, h], h <= 0.5)."""
    color_jitter_prob: float = 0.8
    """Probability that an image gets colour jitter; 0 = none."""
    rotation: float = 0.0
    """Rotation by up to +-this many degrees (a segmentation mask with its image, nearest; the uncovered corners
    are left out of the loss, see :mod:`simseg.data.transforms`); 0 = none."""
    blur_prob: float = 0.0
    """Probability of a Gaussian blur of the image (never a mask) with sigma drawn from ``blur_sigma``."""
    blur_sigma: tuple[float, float] = (0.1, 1.0)
    """Range of the blur's sigma in pixels (drawn uniformly per image)."""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    """Per-channel (RGB) mean subtracted from every image, training and evaluation, after scaling pixels to
    [0, 1]: ImageNet's."""
    std: tuple[float, float, float] = IMAGENET_STD
    """Per-channel (RGB) standard deviation every image is divided by after the mean: ImageNet's."""

    def __post_init__(self):
        low, high = self.crop_scale
        check(0 < low <= high <= 1, "aug.crop_scale must be two numbers with 0 < low <= high <= 1")
        check(0 < self.crop_ratio[0] <= self.crop_ratio[1], "aug.crop_ratio must be two numbers with 0 < low <= high")
        check(0 <= self.hflip <= 1 and 0 <= self.color_jitter_prob <= 1,
              "aug.hflip and aug.color_jitter_prob are probabilities")
        check(len(self.color_jitter) == 4 and min(self.color_jitter[:3]) >= 0 and 0 <= self.color_jitter[3] <= 0.5,
              f"aug.color_jitter={list(self.color_jitter)} must be brightness, contrast, saturation >= 0 and hue "
              f"in [0, 0.5]")
        check(0 <= self.rotation <= 180, "aug.rotation must be in [0, 180] degrees")
        check(0 <= self.blur_prob <= 1, "aug.blur_prob is a probability")
        check(0 < self.blur_sigma[0] <= self.blur_sigma[1], "aug.blur_sigma must be two numbers with 0 < low <= high")
        check(all(s > 0 for s in self.std), "aug.std must be positive")


@dataclasses.dataclass
class FineTuneAugConfig(AugConfig):
    crop_scale: tuple[float, float] = (0.5, 1.0)
    """Random resized crop: the range of the crop's area, as a fraction of the image's; the labelled stages keep
    half or more, as the study's fine-tuning does."""


@dataclasses.dataclass
class EvalConfig:
    every: int = 5
    """Epochs between validation evaluations; the last epoch is always evaluated; 0 = only the last."""
    test_curve: bool = False
    """Also score the test set at each evaluated epoch (segmentation; metrics.jsonl's ``test_miou``), a learning
    curve to watch and never a choice. Off by default, so the test set is scored once, on the reported weights."""

    def __post_init__(self):
        check(self.every >= 0, "eval.every must be >= 0")


@dataclasses.dataclass
class LogConfig:
    progress: bool = True
    """A progress bar per epoch (in a log file, a line every 30 s)."""
    trackers: list[str] = dataclasses.field(default_factory=list)
    """Accelerate trackers, e.g. [tensorboard]; logs go to ``output_dir/logs``."""

    def __post_init__(self):
        check_trackers(self.trackers)


def check_trackers(trackers: list[str]) -> None:
    """``log.trackers`` must name Accelerate trackers."""
    from accelerate.utils import LoggerType

    known = sorted(t.value for t in LoggerType if t.value != "all")
    for tracker in trackers:
        check(tracker in known, f"log.trackers: '{tracker}' is not an Accelerate tracker; choose from {known}")
