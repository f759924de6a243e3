"""The sweep's axes as its command line gives them (the table is :mod:`simseg.experiments.axes`): a flag per axis,
the values of each checked, the keys the sweep sets refused as ``key=value``, the pretraining runs the pretraining
axes ask for, the inits, and the (model, init) pairs that cannot run."""

from __future__ import annotations

import argparse
from itertools import product
from pathlib import Path

from simseg.config.loader import load_config
from simseg.config.pretrain import PretrainConfig
from simseg.errors import SimsegError
from simseg.experiments.axes import (
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
from simseg.experiments.inits import intermediate_init, resolve_init
from simseg.experiments.plan import Init, parse_list, pretraining_of

SWEEP_SET = ("output_dir", "init", "seed", "resume", "data.subset")  # segmentation keys the sweep sets per cell


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
    from simseg.data.unlabelled import open_image_source, resolve_val_size

    planned, data = [], None
    for combination in product(*given.values()):
        swept = list(zip(given, combination))
        label = "pretrain-" + "-".join(axis.name_part(value) for axis, value in swept)
        run_dir = sweep_dir / label
        cfg = load_config(PretrainConfig, args.pretrain_config, [
            *overrides, f"data.source={args.pretrain_data}",
            *(f"{axis.config_key}={axis.config_text(value)}" for axis, value in swept),
            f"output_dir={run_dir}", f"resume={str((run_dir / 'config.yaml').exists()).lower()}"])
        if data is None:  # one source for every run: open it once
            source = open_image_source(cfg.data, stream="pretrain")
            data = PretrainingData(source.name, len(source) - resolve_val_size(cfg.data, len(source)))
        values = {axis.column: axis.pretrained_value(config_value(cfg, axis.config_key), data)
                  for axis in pretraining_axes()}
        planned.append((Init(label, str(run_dir.resolve()), pretraining_of(values)), cfg))
    return planned, {axis.column: values for axis, values in given.items()}


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
