"""The sweep's axes as its command line gives them (the table is :mod:`simseg.experiments.sweep.axes`): a flag per axis,
the values of each checked, the keys the sweep sets refused as ``key=value``, the pretraining runs the pretraining
axes ask for (with the labelled test images kept out of their data), the inits, and the (model, init) pairs that
cannot run."""

from __future__ import annotations

import argparse
from itertools import product
from pathlib import Path

from simseg.config.loader import load_config
from simseg.config.pretrain import PretrainConfig
from simseg.config.segment import SegmentConfig
from simseg.errors import SimsegError
from simseg.experiments.run_folders import run_started
from simseg.experiments.sweep.axes import (
    Axis,
    PretrainingData,
    Variant,
    axis_of,
    config_value,
    config_variant,
    every_axis,
    init_axis,
    pretraining_axes,
    variant_axes,
)
from simseg.experiments.sweep.inits import intermediate_init, resolve_init
from simseg.experiments.sweep.plan import Init, parse_list, pretraining_of
from simseg.files import atomic_write_text

SWEEP_SET = ("output_dir", "init", "seed", "resume", "data.subset")  # segmentation keys the sweep sets per cell
PRETRAIN_EXCLUDE = "pretrain_exclude.txt"  # in the sweep folder: the images no pretraining run may train on


def add_axis_flags(parser: argparse.ArgumentParser) -> None:
    """A flag per axis of the table; its value lands in ``args.<column>``."""
    for axis in every_axis():
        parser.add_argument(axis.flag, dest=axis.column, default=axis.default, help=axis.help,
                            metavar=axis.flag.lstrip("-").replace("-", "_").upper())


def flag_values(args: argparse.Namespace, axis: Axis) -> list:
    """The values ``axis``'s flag lists, each checked; [] when the flag is not given."""
    text = getattr(args, axis.column)
    if text is None:
        return []
    values = [axis.value_of(item) for item in parse_list(text, axis.flag)]
    if len(set(values)) < len(values):
        raise SimsegError(f"{axis.flag} '{text}' names one value twice (e.g. 1k and 1000): give each value once")
    return values


def refuse_axis_key(axis: Axis, overrides: list[str], prefix: str, runs: str) -> None:
    """A swept axis's config key given as ``key=value`` as well: the flag sets it for each run."""
    if any(item.partition("=")[0].strip() == axis.config_key for item in overrides):
        key = f"{prefix}{axis.config_key}"
        raise SimsegError(f"{key} is set by {axis.flag} for each {runs}: drop {key}=... or {axis.flag}")


def refuse_sweep_keys(overrides: list[str], prefix: str, keys: tuple[str, ...] = SWEEP_SET) -> None:
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key in keys:
            raise SimsegError(f"{prefix}{key} is set by the sweep for each cell: use --subsets, --seeds, --init or "
                              f"--output-dir instead")


def variant_values(args: argparse.Namespace, overrides: list[str]) -> dict[str, list[str]]:
    """Column -> values of each variant axis whose flag is given (``{"arch": ["vit_linear", "unet_resnet18"]}``)."""
    values = {}
    for axis in variant_axes():
        given = flag_values(args, axis)
        if given:
            refuse_axis_key(axis, overrides, "", "cell")
            values[axis.column] = given
    return values


def pretraining_asked(args: argparse.Namespace) -> bool:
    return any(getattr(args, axis.column) is not None for axis in pretraining_axes())


def pretraining_sources(args: argparse.Namespace) -> str:
    """``--pretrain-data`` as the text of ``data.source=...``: one source, or ``A,B`` for the union of several."""
    return ",".join(parse_list(args.pretrain_data, "--pretrain-data"))


def plan_pretraining(args: argparse.Namespace, sweep_dir: Path,
                     overrides: list[str]) -> tuple[list[tuple[Init, PretrainConfig]], dict[str, list]]:
    """(init, config) of each pretraining run the pretraining axes ask for (one per combination of their values, in
    ``sweep_dir/pretrain-<part>[-<part>...]``), and column -> values of each pretraining axis given."""
    given = {axis: flag_values(args, axis) for axis in pretraining_axes() if getattr(args, axis.column) is not None}
    if not given:
        if args.pretrain_data or args.pretrain_config or overrides:
            flags = " or ".join(axis.flag for axis in pretraining_axes())
            raise SimsegError(f"--pretrain-data, --pretrain-config and pretrain.key=value need {flags}")
        return [], {}
    if not args.pretrain_data:
        raise SimsegError(f"{', '.join(axis.flag for axis in given)} needs --pretrain-data: the folder (or dataset) "
                          f"of unlabelled images")
    for axis in given:
        refuse_axis_key(axis, overrides, "pretrain.", "pretraining run")
    axis_keys = {axis.config_key for axis in pretraining_axes()}  # free to set when their axis is not swept
    refuse_sweep_keys(overrides, "pretrain.", tuple(key for key in SWEEP_SET if key not in axis_keys))
    from simseg.data.unlabelled import open_pretraining_images, resolve_val_size

    # An axis asked for its default alone is left out of the names, so earlier sweeps' runs are found again.
    named = [axis for axis, values in given.items()
             if axis.unnamed is None or values != [axis.unnamed]] or list(given)
    planned, data = [], None
    for combination in product(*given.values()):
        swept = list(zip(given, combination))
        label = "pretrain-" + "-".join(axis.name_part(value) for axis, value in swept if axis in named)
        run_dir = sweep_dir / label
        cfg = load_config(PretrainConfig, args.pretrain_config, [
            *overrides, f"data.source={pretraining_sources(args)}",
            *(f"{axis.config_key}={axis.config_text(value)}" for axis, value in swept),
            f"output_dir={run_dir}", f"resume={str(run_started(run_dir)).lower()}"])
        if data is None:  # one source for every run: open it once, less the images data.exclude names
            source, _ = open_pretraining_images(cfg.data, stream="pretrain")
            data = PretrainingData(source.name, len(source) - resolve_val_size(cfg.data, len(source)))
        values = {axis.column: axis.pretrained_value(config_value(cfg, axis.config_key), data)
                  for axis in pretraining_axes()}
        planned.append((Init(label, str(run_dir.resolve()), pretraining_of(values)), cfg))
    return planned, {axis.column: values for axis, values in given.items()}


def exclude_labelled_test_set(args: argparse.Namespace, sweep_dir: Path, overrides: list[str],
                              labelled: SegmentConfig) -> tuple[list[str], str | None]:
    """Keep the cells' test images out of pretraining: when a ``--pretrain-data`` source holds the labelled
    source's images (it is that folder, inside it, or above it: a folder source reads every image below it), write
    the names of the test split every cell scores on, with those of the pretraining config's own ``data.exclude``,
    to ``sweep_dir/pretrain_exclude.txt``. Returns the pretraining override that points every run at that file and
    the line that says so; ``([], None)`` when no source holds the labelled images."""
    if not (pretraining_asked(args) and args.pretrain_data):
        return [], None  # plan_pretraining says what is missing
    from simseg.data.unlabelled import read_exclude_file

    base = load_config(PretrainConfig, args.pretrain_config, [*overrides, f"data.source={pretraining_sources(args)}"])
    sources = base.data.source if isinstance(base.data.source, list) else [base.data.source]
    if not any(holds_images_of(source, labelled.data.source) for source in sources):
        return [], None
    test = labelled_test_names(labelled)
    own = read_exclude_file(base.data.exclude)[0] if base.data.exclude else set()
    path = sweep_dir / PRETRAIN_EXCLUDE
    header = (f"# never pretrained on: the test split of {labelled.data.source} (data.test_size="
              f"{labelled.data.test_size}, data.test_seed={labelled.data.test_seed})"
              + (f" and the names of {base.data.exclude}" if own else ""))
    text = "\n".join([header, *sorted(set(test) | own)]) + "\n"
    if not path.is_file() or path.read_text() != text:  # rewritten only when it changes: shards read it meanwhile
        atomic_write_text(path, text)
    also = f", with the {len(own - set(test)):,} further names of data.exclude={base.data.exclude}" if own else ""
    return [f"data.exclude={path}"], (f"sweep: pretraining data includes the labelled set: its {len(test):,} test "
                                      f"images are excluded{also} ({path})")


def holds_images_of(source: str, labelled: str) -> bool:
    """Whether pretraining source ``source`` may hold the images of labelled source ``labelled``: both are local
    paths and one is the other or lies inside it (resolved, so links and ``..`` cannot hide it)."""
    paths = [Path(text).expanduser() for text in (source, labelled)]
    if "synthetic" in (source, labelled) or not all(path.exists() for path in paths):
        return False  # synthetic streams never share images; a hub dataset is not compared
    unlabelled, labelled_path = (path.resolve() for path in paths)
    return unlabelled.is_relative_to(labelled_path) or labelled_path.is_relative_to(unlabelled)


def labelled_test_names(labelled: SegmentConfig) -> list[str]:
    """The item names of the test split every cell of the sweep scores on, drawn as the segmentation stage draws it
    (:func:`~simseg.data.splits.segmentation_splits` of the data section, or the split the data gives: its own
    train/test folders or data.test_list; the test set depends on neither the subset nor the seed). The names are
    the image stems a folder of images names its items by, so data.exclude matches them."""
    from simseg.data.pair_sources import open_segmentation_pairs
    from simseg.data.splits import segmentation_splits

    test_size, _, val_size = labelled.data.sizes()
    source = open_segmentation_pairs(labelled.data)
    split = segmentation_splits(len(source), test_size, None, labelled.seed, source.groups, val_size, source.name,
                                test_seed=labelled.data.test_seed, given=source.given_split)
    return [source.names[i] for i in split["test"]]


def sweep_inits(args: argparse.Namespace, pretraining: list[tuple[Init, PretrainConfig]]) -> list[Init]:
    """The inits: ``--init``'s, the pretraining runs', then ``--intermediate``'s; two with one label are refused."""
    axis = init_axis()
    inits = [*(resolve_init(item, axis.flag) for item in parse_list(getattr(args, axis.column), axis.flag)),
             *(init for init, _ in pretraining)]
    inits += [intermediate_init(resolve_init(item, "--intermediate"), inits)
              for item in (parse_list(args.intermediate, "--intermediate") if args.intermediate else [])]
    labels = [init.label for init in inits]
    if len(set(labels)) < len(labels):
        twice = next(label for label in labels if labels.count(label) > 1)
        raise SimsegError(f"two inits are labelled '{twice}': name them apart with LABEL=PATH, e.g. --init a=PATH")
    return inits


def skipped_pairs(inits: list[Init], templates: dict[Variant, object]) -> list[str]:
    """``value x init`` for each value of an axis with a ``fits`` rule (swept, or the config's) that the init cannot
    start, e.g. ``vit_linear x imagenet``."""
    values = dict.fromkeys(pair for cfg in templates.values() for pair in config_variant(cfg))
    return [f"{value} x {init.label}" for column, value in values if axis_of(column).fits is not None
            for init in inits if not axis_of(column).fits(init.path, value)]
