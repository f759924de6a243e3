"""The sweep's axes in one table: for each, its ``simseg sweep`` flag, the config key it sets, its place in a cell's
folder, its column in results and ``cell.json``, the values it accepts, and how the report compares its values.

An axis is one of three kinds:

- ``variant``: a segmentation config key set per cell (``--models`` -> ``model.arch``, ``--img-sizes`` ->
  ``model.img_size``). A swept variant axis adds a folder level in front of the init's, in table order:
  ``cells/ARCH/AUG/RECIPE/SIZEpx/INIT/subset-N/seed-S``; its values are the report's variants
  (``unet_resnet18/heavy/scratch``), each init compared with the scratch init of its own.
- ``init``: where a cell's encoder starts (``--init``): the ``INIT`` level.
- ``pretraining``: a pretraining config key (``--pretrain-subsets`` -> ``data.subset``, ``--pretrain-methods`` ->
  ``method``). The sweep first runs one pretraining per combination of the swept pretraining axes' values,
  ``SWEEP_DIR/pretrain-<part>[-<part>...]`` (``pretrain-mae-45k``), each an init of that name; every init's column
  holds the value its pretraining ran with (read from the run folders for ``--init PATH``), and the report shows
  each value's gain over scratch.

The parser, the grid, the cell folders, ``cell.json``, ``sweep.json``, the results table and the report read this
table: adding an axis is one entry here.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any, Literal, NamedTuple

from simseg.config.segment import AUG_PRESETS, RECIPES
from simseg.errors import SimsegError
from simseg.experiments.run_folders import images_of_run, method_of_run, run_config_value
from simseg.models.pretraining import LEGACY_METHOD, METHODS
from simseg.models.registry import ARCHS, HEAD_SYNONYMS
from simseg.models.vit import ARCHITECTURES, DEFAULT_ARCHITECTURE
from simseg.sizes import format_size, parse_size

PATCH_SIDE = ARCHITECTURES[DEFAULT_ARCHITECTURE]["patch_size"]  # every registered encoder's; input sizes are multiples

Variant = tuple[tuple[str, str], ...]
"""(column, value) of each swept variant axis, in table order: ``(("arch", "unet_resnet18"), ("aug", "heavy"))``."""


class PretrainingData(NamedTuple):
    """The unlabelled images the sweep's pretraining runs draw from."""
    name: str
    images: int  # training images left after the held-out ones


@dataclass(frozen=True, eq=False)
class Axis:
    column: str
    """Its results column, ``cell.json`` key and ``args`` attribute (``arch``)."""
    flag: str
    """The ``simseg sweep`` option listing its values (``--models``)."""
    kind: Literal["variant", "init", "pretraining"]
    config_key: str
    """The key a value sets: in the segmentation config (variant, init) or the pretraining config (pretraining)."""
    title: str
    """The axis in words: the report's column heading and "effect of" row (``model``)."""
    help: str
    reference: str = "scratch"
    """The value the report measures the others against (pretraining axes: the scratch init); empty: the sweep
    template's value, else the first value (see :func:`reference_value`)."""
    choices: Collection[str] | None = None
    """The values it accepts: a registry's names, never a copy of them. None: any ``parse_item`` accepts."""
    grid_key: str = ""
    """Its list of values in ``sweep.json``'s grid (``models``)."""
    noun: str = ""
    """One value in words for the report's counts (``2 models``); empty: the title."""
    effect: str = "{title} (vs {reference})"
    """The report's "effect of" row, ``{title}`` and ``{reference}`` filled in."""
    default: str | None = None
    """The flag's value when it is not given (``--init scratch``)."""
    fits: Callable[[str, str], bool] | None = None
    """(init path, value) -> whether that init can start a cell with this value; None: every init can."""
    old_metrics: Callable[[dict], Any] | None = None
    """The value in ``metrics.json`` of runs made before it was recorded under :attr:`column`."""
    counts_images: bool = False
    """Its values are image counts: shown as ``45k``, and ``45k`` in a hand-written table is read as 45000."""
    whole_numbers: bool = False
    """Its values are whole numbers (pixels): results are read back as ints."""
    parse_item: Callable[[str, str], Any] | None = None
    """(item, flag) -> value, for values that are not :attr:`choices` (sizes); a variant axis's values are text."""
    name_part: Callable[[Any], str] = str
    """A value's part of the pretraining runs' names (``45k`` of ``pretrain-45k``), or a variant axis's folder level
    (``160px``)."""
    # pretraining axes only
    unnamed: Any = None
    """A value left out of the runs' names when it is the flag's only value and another axis names the run: the
    value of runs made before the axis existed, so ``--pretrain-methods simmim --pretrain-subsets 45k`` reuses the
    ``pretrain-45k`` of sweeps made before it. None: every value is named."""
    config_text: Callable[[Any], str] = str
    """A value as the text of ``config_key=...``."""
    column_value: Callable[[Any, PretrainingData], Any] | None = None
    """(the pretraining config's value at :attr:`config_key`, the data) -> its column's value; None: that value."""
    read_run: Callable[[Path], Any] | None = None
    """A finished pretraining run folder -> its column's value; None: its config.yaml's value at the key."""

    def __post_init__(self):
        if not self.noun:
            object.__setattr__(self, "noun", self.title)  # frozen: set once, here

    def value_of(self, item: str) -> Any:
        """One item of the flag's list, checked."""
        if self.parse_item is not None:
            return self.parse_item(item, self.flag)
        if item not in self.choices:
            close = difflib.get_close_matches(item, list(self.choices), n=1)
            raise SimsegError(f"{self.flag} {item} is unknown; choose from {', '.join(self.choices)}"
                              + (f" (did you mean {close[0]}?)" if close else ""))
        return item

    def show(self, value: Any) -> str:
        """A value as tables print it: image counts as ``45k`` or ``7,349``."""
        if not self.counts_images:
            return str(value)
        text = format_size(int(value))
        return f"{int(value):,}" if text.isdigit() else text

    def effect_name(self, reference: str) -> str:
        return self.effect.format(title=self.title, reference=reference)

    def pretrained_value(self, configured: Any, data: PretrainingData) -> Any:
        """The column's value for a pretraining run whose config holds ``configured`` at :attr:`config_key`."""
        return configured if self.column_value is None else self.column_value(configured, data)

    def of_run(self, root: Path) -> Any:
        """The value of a pretraining run made outside the sweep (``root``: its folder), None if it does not say."""
        if self.read_run is not None:
            return self.read_run(root)
        return run_config_value(root, self.config_key)


def arch_fits(init_path: str, arch: str) -> bool:
    """Scratch starts every model; ``imagenet`` or a CNN weights file only a CNN; a run folder (pretraining
    or classification export) only a ViT. An arch the registry no longer has fits everything (old sweep.json)."""
    if init_path == "scratch" or arch not in ARCHS:
        return True
    cnn_weights = init_path == "imagenet" or Path(init_path).suffix in (".pth", ".pt", ".bin", ".safetensors")
    return cnn_weights == (ARCHS[arch].family == "cnn")


def arch_of_head(metrics: dict) -> str | None:
    """``metrics.json`` of runs made before ``model.arch`` named the model by its ViT head."""
    return HEAD_SYNONYMS.get(metrics.get("head"))


def parse_img_size(item: str, flag: str) -> str:
    """``160`` -> ``"160"``: a positive multiple of the encoders' patch side, as text like every variant value."""
    size = int(item) if item.isdigit() else 0
    if size <= 0 or size % PATCH_SIDE:
        raise SimsegError(f"{flag} {item} is not a positive multiple of the patch size {PATCH_SIDE}: use sizes like "
                          f"{PATCH_SIDE * 8},{PATCH_SIDE * 10}")
    return str(size)


def parse_pretrain_size(item: str, flag: str) -> int | None:
    """``45k`` -> 45000; ``all`` -> None (every image)."""
    return None if item == "all" else parse_size(item, flag)


def images_trained_on(subset: str | int | None, data: PretrainingData) -> int:
    """The pretraining's training images: its ``data.subset`` (checked against the data), or all of them."""
    if subset is None:
        return data.images
    count = parse_size(subset, "--pretrain-subsets")
    if count > data.images:
        raise SimsegError(f"--pretrain-subsets {format_size(count)} asks for {count:,} images but {data.name} has "
                          f"{data.images:,} after the held-out images: use sizes up to {format_size(data.images)}")
    return count


AXES: tuple[Axis, ...] = (
    Axis("arch", "--models", "variant", "model.arch", "model", reference="vit_linear", choices=ARCHS,
         grid_key="models", fits=arch_fits, old_metrics=arch_of_head,
         help="model.arch values to compare, e.g. vit_linear,vit_pup,unet_resnet18"),
    Axis("aug", "--aug", "variant", "aug.preset", "augmentation preset", reference="light", choices=AUG_PRESETS,
         grid_key="aug", help="aug.preset values to compare, e.g. light,heavy"),
    Axis("recipe", "--recipes", "variant", "recipe", "recipe", reference="study", choices=RECIPES,
         grid_key="recipes", help="recipe values to compare, e.g. study,mild,medium"),
    Axis("img_size", "--img-sizes", "variant", "model.img_size", "input size", reference="", grid_key="img_sizes",
         whole_numbers=True, parse_item=parse_img_size, name_part=lambda size: f"{size}px",
         help=f"model.img_size values to compare (multiples of {PATCH_SIDE} pixels), e.g. 128,160"),
    Axis("init", "--init", "init", "init", "init", effect="pretraining (init vs {reference})", grid_key="inits",
         default="scratch",
         help="inits: scratch and run folders (LABEL=PATH to name one; LABEL=scratch a second from-scratch "
              "arm), e.g. scratch,small=runs/p45k"),
    Axis("pretrain_method", "--pretrain-methods", "pretraining", "method", "pretraining method", choices=METHODS,
         grid_key="pretrain_methods", unnamed=LEGACY_METHOD, read_run=method_of_run,
         help=f"also pretrain with each of these methods ({', '.join(METHODS)}), e.g. simmim,mae"),
    Axis("pretrain_images", "--pretrain-subsets", "pretraining", "data.subset", "pretraining images",
         noun="pretraining size", grid_key="pretrain_subsets", counts_images=True, parse_item=parse_pretrain_size,
         name_part=lambda subset: "all" if subset is None else format_size(subset),
         config_text=lambda subset: "null" if subset is None else str(subset),
         column_value=images_trained_on, read_run=images_of_run,
         help="also pretrain on these unlabelled-set sizes (or 'all') first"),
)


def every_axis() -> tuple[Axis, ...]:
    """The table (read through here and the functions below, so an axis added to it is seen everywhere)."""
    return AXES


def variant_axes() -> tuple[Axis, ...]:
    return tuple(axis for axis in AXES if axis.kind == "variant")


def pretraining_axes() -> tuple[Axis, ...]:
    return tuple(axis for axis in AXES if axis.kind == "pretraining")


def init_axis() -> Axis:
    return next(axis for axis in AXES if axis.kind == "init")


def axis_of(column: str) -> Axis:
    return next(axis for axis in AXES if axis.column == column)


def variant_of(record: Mapping[str, Any]) -> Variant:
    """The variant a results row or ``cell.json`` names: its non-empty variant columns, in table order."""
    return tuple((axis.column, str(record[axis.column])) for axis in variant_axes()
                 if record.get(axis.column) is not None)


def every_variant(values: Mapping[str, Sequence[str]]) -> list[Variant]:
    """Every combination of the swept variant axes' values (column -> values; absent or empty: not swept), the
    first axis varying slowest; ``[()]`` when none is swept."""
    swept = [axis.column for axis in variant_axes() if values.get(axis.column)]
    return [tuple(zip(swept, combination)) for combination in product(*(values[column] for column in swept))]


def variant_overrides(variant: Variant) -> list[str]:
    """``key=value`` of the segmentation config for each value of ``variant``."""
    return [f"{axis_of(column).config_key}={value}" for column, value in variant]


def config_variant(cfg) -> Variant:
    """Every variant axis's value in a resolved segmentation config, swept or not."""
    return tuple((axis.column, str(config_value(cfg, axis.config_key))) for axis in variant_axes())


def config_value(cfg, key: str) -> Any:
    """The value at dotted ``key`` of a config dataclass (``model.arch`` -> ``cfg.model.arch``)."""
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def reference_value(axis: Axis, values: Sequence[Any], template_value: Any = None) -> Any:
    """The value of ``axis`` that the others are measured against, among ``values`` (in the sweep's order): its
    fixed :attr:`Axis.reference` when present, else (axes whose reference is the template's, as the input size)
    the sweep template's value ``template_value`` (``sweep.json``'s ``segment_config`` at the axis's key) when
    present, else the first value."""
    for candidate in (axis.reference, template_value):
        found = next((value for value in values if candidate not in (None, "") and str(value) == str(candidate)),
                     None)
        if found is not None:
            return found
    return values[0]


def runs_with(init_path: str | None, variant: Variant) -> bool:
    """Whether the init at ``init_path`` can start a cell of ``variant`` (each axis's ``fits``; an unknown path
    fits every variant)."""
    values = dict(variant)
    return init_path is None or all(axis.fits(init_path, values[axis.column]) for axis in variant_axes()
                                    if axis.fits is not None and axis.column in values)
