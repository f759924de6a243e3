"""Dataclass configs: defaults live here, YAML files hold differences, the command line takes ``section.key=value``.

Why not OmegaConf: its structured configs cannot type ``str | int`` fields such as ``data.subset`` (``250`` or
``1k``) and its errors are multi-line; the loader below is a typed merge of plain dicts (~100 lines) whose every
failure is one line that names the key, with a close-match suggestion for typos.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from simseg.errors import SimsegError
from simseg.models.vit import ARCHITECTURES, DEFAULT_ARCHITECTURE
from simseg.sizes import parse_size

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass
class DataConfig:
    source: str = "synthetic"
    """``synthetic``, an image folder (ImageFolder or flat), a ``save_to_disk`` dataset, parquet/arrow files or a
    hub name."""
    subset: str | None = None
    """Seeded random subset of the training images: ``250``, ``1k``, ``1.5k``, ``45k``; null = all."""
    val_size: str | None = None
    """Held-out images for the validation loss and the grids; null = min(1% of the source, 500), at least 1."""
    image_column: str = ""
    """Image column of a ``datasets`` source; empty = the first column of Image type."""
    split: str = "train"
    """Split of a ``datasets`` source that has several."""
    synthetic_size: int = 2000
    """Number of images the ``synthetic`` source holds (each generated on the fly from ``seed`` and its index)."""
    synthetic_image_size: int = 160
    synthetic_seed: int = 0
    """Which synthetic images: each stage draws its own stream from this seed, so stages never share images."""
    num_workers: int = 4
    """DataLoader worker processes; 0 loads in the main process."""
    pipeline: Literal["auto", "per_image", "batched"] = "auto"
    """Training batches: ``per_image`` (PIL transforms in the workers), ``batched`` (gathered from an image cache
    made by ``simseg data cache`` and augmented as one batch on the device), ``auto`` = batched when
    ``source`` is such a cache."""

    def __post_init__(self):
        if self.subset is not None:
            parse_size(self.subset, "data.subset")
        if self.val_size is not None:
            parse_size(self.val_size, "data.val_size")
        _check(self.synthetic_size >= 2, "data.synthetic_size must be at least 2")
        _check(self.num_workers >= 0, "data.num_workers must be >= 0")


@dataclasses.dataclass
class ModelConfig:
    """The encoder. Architecture fields left null take the values of the registered architecture ``name``."""

    name: str = DEFAULT_ARCHITECTURE
    img_size: int | None = None
    patch_size: int | None = None
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    mlp_dim: int | None = None
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    pos_embed_init: Literal["random", "sincos"] = "random"
    """Initial value of the (learned) position embedding: timm's small random values, or 2-D sin-cos as in MAE,
    which lets masked tokens find their neighbours from the first step."""

    def __post_init__(self):
        _check(self.name in ARCHITECTURES,
               f"model.name '{self.name}' is unknown; choose one of {sorted(ARCHITECTURES)}")
        for key, value in ARCHITECTURES[self.name].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        _check(self.img_size % self.patch_size == 0, "model.img_size must be a multiple of model.patch_size")
        _check(self.embed_dim % self.num_heads == 0, "model.embed_dim must be a multiple of model.num_heads")
        for key in ("drop_rate", "attn_drop_rate", "drop_path_rate"):
            _check(0.0 <= getattr(self, key) < 1.0, f"model.{key} must be in [0, 1)")

    def architecture(self) -> dict[str, Any]:
        """The fields that decide the weights' shapes: an export from another architecture is refused on these."""
        keys = ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_dim")
        return {key: getattr(self, key) for key in keys}


@dataclasses.dataclass
class MaskConfig:
    ratio: float = 0.5
    """Fraction of mask units replaced by the mask token (the count per image is exact)."""
    unit: int = 16
    """Side of a mask unit in pixels: a multiple of the patch size that divides the image size."""

    def __post_init__(self):
        _check(0.0 < self.ratio < 1.0, f"mask.ratio must be in (0, 1), got {self.ratio}")
        _check(self.unit > 0, "mask.unit must be positive")


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 128
    """Per-process batch size."""
    lr: float = 1e-4
    weight_decay: float = 0.05
    """AdamW decay; none on norms, biases, embeddings and the mask token."""
    milestones: list[float] = dataclasses.field(default_factory=lambda: [0.5, 0.85])
    """Epochs after which the LR is multiplied by ``lr_decay``; values below 1 are fractions of ``epochs``."""
    lr_decay: float = 0.1
    warmup_epochs: float = 0.0
    grad_clip: float = 5.0
    """Max gradient norm; 0 disables clipping."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    compile: bool = False
    """torch.compile the model (Accelerate's inductor backend) and, on the batched data path, the colour jitter: the
    model's compile pays on GPUs, not on small CPUs; the jitter's is ~5x faster on both."""

    def __post_init__(self):
        _check(self.epochs >= 1, "train.epochs must be >= 1")
        _check(self.batch_size >= 1, "train.batch_size must be >= 1")
        _check(self.lr > 0, "train.lr must be positive")
        _check(self.weight_decay >= 0, "train.weight_decay must be >= 0")
        _check(all(m > 0 for m in self.milestones), "train.milestones must be positive (epochs, or fractions below 1)")
        _check(0 < self.lr_decay <= 1, "train.lr_decay must be in (0, 1]")
        _check(0 <= self.warmup_epochs < self.epochs, "train.warmup_epochs must be in [0, train.epochs)")
        _check(self.grad_clip >= 0, "train.grad_clip must be >= 0")


@dataclasses.dataclass
class AugConfig:
    crop_scale: tuple[float, float] = (0.67, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5
    color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    """Brightness, contrast, saturation, hue."""
    color_jitter_prob: float = 0.8
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        low, high = self.crop_scale
        _check(0 < low <= high <= 1, "aug.crop_scale must be two numbers with 0 < low <= high <= 1")
        _check(0 < self.crop_ratio[0] <= self.crop_ratio[1], "aug.crop_ratio must be two numbers with 0 < low <= high")
        _check(0 <= self.hflip <= 1 and 0 <= self.color_jitter_prob <= 1,
               "aug.hflip and aug.color_jitter_prob are probabilities")
        _check(all(s > 0 for s in self.std), "aug.std must be positive")


@dataclasses.dataclass
class LogConfig:
    grid_every: int = 10
    """Write a reconstruction grid every N epochs (and after the last); 0 = only after the last."""
    grid_rows: int = 8
    progress: bool = True
    trackers: list[str] = dataclasses.field(default_factory=list)
    """Accelerate trackers, e.g. [tensorboard]; logs go to ``output_dir/logs``."""

    def __post_init__(self):
        check_trackers(self.trackers)
        _check(self.grid_every >= 0 and self.grid_rows >= 1, "log.grid_every must be >= 0 and log.grid_rows >= 1")


@dataclasses.dataclass
class PretrainConfig:
    output_dir: str = "outputs/pretrain"
    seed: int = 0
    resume: bool = False
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    mask: MaskConfig = dataclasses.field(default_factory=MaskConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    aug: AugConfig = dataclasses.field(default_factory=AugConfig)
    log: LogConfig = dataclasses.field(default_factory=LogConfig)

    def __post_init__(self):
        unit, patch, size = self.mask.unit, self.model.patch_size, self.model.img_size
        _check(unit % patch == 0 and size % unit == 0,
               f"mask.unit={unit} must be a multiple of model.patch_size={patch} and divide model.img_size={size}")


# ---------------------------------------------------------------------------------------------------------------------
# Loading: defaults <- YAML diff <- key=value overrides, each value coerced to its field's type.


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans: only true/false are booleans, so yes/no/on/off stay the strings
    they are in choices like ``train.mixed_precision=no`` (YAML 1.1 would turn ``no`` into False)."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                    list("tTfF"))


def load_yaml(text: str) -> Any:
    """YAML text -> Python values, YAML 1.2 booleans (see :class:`_Yaml12Loader`)."""
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 (a SafeLoader subclass)


def parse_value(text: str) -> Any:
    """The value of a ``key=value`` override: YAML (numbers, lists, null, true/false), else the text itself."""
    try:
        return load_yaml(text) if text else ""
    except yaml.YAMLError:
        return text


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] = ()) -> Any:
    """Build ``cls`` from its defaults, the YAML diff at ``path`` and ``section.key=value`` overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        tree = read_yaml(Path(path))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SimsegError(f"override '{item}' is not of the form section.key=value")
        set_dotted(tree, key.strip(), parse_value(text))
    return build(cls, tree)


def build(cls: type, tree: dict[str, Any], prefix: str = "") -> Any:
    """Construct dataclass ``cls`` from a nested dict, rejecting unknown keys and ill-typed values."""
    if not isinstance(tree, dict):
        raise SimsegError(f"config section '{prefix.rstrip('.') or 'top level'}' must be a mapping, got {tree!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in tree.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f"; known keys: {', '.join(fields)}"
            raise SimsegError(f"unknown config key '{prefix}{key}'{hint}")
        if dataclasses.is_dataclass(hints[key]):
            kwargs[key] = build(hints[key], value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) for YAML, JSON and comparisons."""
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value
    return plain(dataclasses.asdict(cfg))


def flat_dict(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train.lr": 1e-4, "train.milestones": "[0.5, 0.85]", ...}``: dotted keys with scalar values, as
    experiment trackers (TensorBoard's hparams) require."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flat_dict(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def diff_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += diff_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise SimsegError(f"config file {path} does not exist: check the path given to -c")
    try:
        tree = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" line {where.line + 1}" if where else ""
        raise SimsegError(f"config file {path}{line} is not valid YAML: {getattr(err, 'problem', err)}") from None
    if not isinstance(tree, dict):
        raise SimsegError(f"config file {path} must hold a mapping of sections, got {type(tree).__name__}")
    return tree


def set_dotted(tree: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SimsegError(f"override '{key}' goes through '{part}', which is not a section")
    node[leaf] = value


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key)
    if origin is Literal:
        if value not in args:
            raise SimsegError(f"{key}={value!r} is not allowed; choose one of {', '.join(map(str, args))}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise SimsegError(f"{key} must be a list, got {value!r}")
        if origin is tuple and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise SimsegError(f"{key} must have {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, key) for v, a in zip(value, args))
        return origin(_coerce(v, args[0], key) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return str(value).lower() in ("true", "yes", "1", "on")
        raise SimsegError(f"{key} must be true or false, got {value!r}")
    if annotation in (int, float):
        try:
            number = annotation(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or (annotation is int and float(value) != number):
            raise SimsegError(f"{key} must be {'an integer' if annotation is int else 'a number'}, got {value!r}")
        return number
    if annotation is str:
        if isinstance(value, (dict, list)) or value is None:
            raise SimsegError(f"{key} must be a string, got {value!r}")
        return str(value)
    raise TypeError(f"config field {key} has an unsupported annotation {annotation}")


def check_trackers(trackers: list[str]) -> None:
    """``log.trackers`` must name Accelerate trackers."""
    from accelerate.utils import LoggerType

    known = sorted(t.value for t in LoggerType if t.value != "all")
    for tracker in trackers:
        _check(tracker in known, f"log.trackers: '{tracker}' is not an Accelerate tracker; choose from {known}")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise SimsegError(message)
