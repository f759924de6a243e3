"""``simseg sweep``: one segmentation run per ([variant x] init x labelled subset x seed) cell, all on one fixed
test set.

    simseg sweep --subsets 250,500,1k,2k,4k,6k --init scratch,outputs/pretrain-45k [--intermediate outputs/classify]
                 [--models vit_linear,unet_resnet18] [--aug light,heavy] [--recipes study,mild,medium]
                 [--img-sizes 128,160] [--seeds 0,1,2] [--val-size N|auto] [--data data/oxford-iiit-pet]
                 [-c configs/segment.yaml] [key=value ...]
                 [--pretrain-subsets 45k,100k,all [--pretrain-methods simmim,mae] --pretrain-data DIR[,DIR...]
                  [pretrain.key=value ...]]
                 [--output-dir outputs/sweep] [--shard i/n]
                 [--launcher slurm --partition P --time H:MM:SS --gpus-per-cell N ... [--wait]] [--gpus-per-cell N]

Cells share the test set (``data.test_seed``), one fixed validation set (``--val-size N|auto``, default auto: a
tenth of the labelled images left after the test set, at most 100; each cell reports its best epoch on it) and, per
seed, nested training subsets, so they are comparable.
The axes (their flags, config keys, folder levels and columns) are one table, :mod:`simseg.experiments.sweep.axes`.
``--pretrain-subsets`` and ``--pretrain-methods`` (pretraining axes) first run (or reuse) one pretraining per
unlabelled-set size and method and add each as an init; when ``--pretrain-data`` holds the labelled set's images, the
cells' test images are kept out of every pretraining (``pretrain_exclude.txt``). ``--models`` (``model.arch``
values), ``--aug`` (``aug.preset`` values), ``--recipes`` (``recipe`` values) and ``--img-sizes``
(``model.img_size`` values) are variant axes; an init runs only with the models it fits (a pretraining export with the
ViT models; ``imagenet`` or a ResNet weights file with the CNNs; ``scratch`` with all), and the cells that do not fit
are named and skipped.
Finished cells are never rerun; an interrupted one resumes from its state; ``results.csv``/``results.jsonl`` are
rebuilt from the finished cell folders after every cell. ``--shard i/n`` runs the i-th of n disjoint parts (several
machines writing into one shared folder); under ``accelerate launch -m simseg.cli sweep ...`` every cell runs on
all processes. ``--launcher slurm`` submits one job-array task per unfinished cell instead, and ``--gpus-per-cell N``
alone runs one process per cell on the local GPUs (see :mod:`simseg.experiments.sweep.launch`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from simseg.config.launcher import LauncherConfig
from simseg.config.loader import load_config, to_dict
from simseg.config.segment import SegmentConfig
from simseg.errors import SimsegError
from simseg.experiments.run_folders import run_started
from simseg.experiments.sweep.arguments import (
    add_axis_flags,
    exclude_labelled_test_set,
    plan_pretraining,
    refuse_sweep_keys,
    skipped_pairs,
    sweep_inits,
    variant_values,
)
from simseg.experiments.sweep.axes import (
    config_variant,
    every_variant,
    pretraining_axes,
    runs_with,
    variant_axes,
    variant_overrides,
)
from simseg.experiments.sweep.cells import (
    cell_config,
    check_unchanged,
    collect_results,
    format_seconds,
    init_ready,
    is_main_process,
    print_main,
    run_unless_finished,
)
from simseg.experiments.sweep.plan import (
    Cell,
    expand_grid,
    parse_seeds,
    parse_shard,
    parse_subsets,
    shard_cells,
    write_cell_record,
)
from simseg.experiments.sweep.results import read_sweep
from simseg.experiments.sweep.validation import check_subsets_fit, choose_val_size, labelled_pool, recorded_val_size
from simseg.files import atomic_write_json
from simseg.training.resume_state import run_is_finished

POLL_SECONDS = 30


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simseg sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subsets", required=True, help="labelled-subset sizes, e.g. 250,500,1k,2k")
    add_axis_flags(parser)  # --models, --aug, --recipes, --init, --pretrain-subsets, ...: see sweep.axes
    parser.add_argument("--intermediate", help="classification runs (LABEL=PATH) to start from as well")
    parser.add_argument("--seeds", default="0", help="training seeds, e.g. 0,1,2")
    parser.add_argument("--val-size", metavar="N|auto",
                        help="validation images, one fixed draw shared by every cell, on which each cell chooses its "
                             "reported epoch: auto (default) = a tenth of the labelled images left after the test "
                             "set, at most 100 (16 for synthetic data); 0 = none, the last epoch is reported")
    parser.add_argument("--data", help="segmentation data (sets data.source)")
    parser.add_argument("-c", "--config", help="segmentation config diff (YAML)")
    parser.add_argument("--pretrain-data", help="unlabelled images for the pretraining runs (sets data.source; "
                                                "A,B pretrains on their union)")
    parser.add_argument("--pretrain-config", help="pretraining config diff (YAML) for the pretraining runs")
    parser.add_argument("--output-dir", default="outputs/sweep", help="the sweep folder")
    parser.add_argument("--shard", help="run only the i-th of n disjoint parts of the grid, e.g. 1/4")
    cluster = parser.add_argument_group("where the cells run (see simseg.experiments.sweep.launch)")
    cluster.add_argument("--launcher", choices=("local", "slurm"), default="local",
                         help="local: in this process (default), or one process per cell with --gpus-per-cell; "
                              "slurm: one job-array task per unfinished cell, through submitit")
    cluster.add_argument("--launcher-config", help="YAML file of launcher keys (partition, time, gpus_per_cell, ...)")
    cluster.add_argument("--wait", action="store_true", help="with slurm: follow the tasks until they end")
    for flag, kind, meaning in (("--partition", str, "SLURM partition"),
                                ("--time", str, "time limit per cell: MINUTES, H:MM:SS or D-H:MM:SS"),
                                ("--gpus-per-cell", int, "GPUs per cell (more than one: torchrun inside the cell)"),
                                ("--cpus-per-cell", int, "CPU cores per cell"), ("--mem-gb", int, "memory per cell"),
                                ("--array-parallelism", int, "cells of the array running at once"),
                                ("--max-requeues", int, "requeues after preemption or time limit")):
        cluster.add_argument(flag, type=kind, help=meaning)
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="segmentation config keys; pretrain.key=value for the pretraining runs")
    return parser


def parse_arguments(argv: list[str]):
    """The sweep's flags and its key=value overrides, in any order (``--seeds 0 train.epochs=9 --img-sizes 128``:
    plain argparse would take the overrides after a later flag for unknown arguments)."""
    return build_parser().parse_intermixed_args(argv)


def sweep(argv: list[str]) -> Path:
    args = parse_arguments(argv)
    launcher = launcher_config(args)
    sweep_dir = Path(args.output_dir).expanduser()
    subsets, seeds = parse_subsets(args.subsets), parse_seeds(args.seeds)
    shard = parse_shard(args.shard)
    seg_overrides = [o for o in args.overrides if not o.startswith("pretrain.")]
    pre_overrides = [o.removeprefix("pretrain.") for o in args.overrides if o.startswith("pretrain.")]
    refuse_sweep_keys(seg_overrides, "")
    variants = variant_values(args, seg_overrides)  # column -> values of each swept variant axis
    base_overrides = [*seg_overrides, *([f"data.source={args.data}"] if args.data else [])]
    base = load_config(SegmentConfig, args.config, base_overrides)
    pool = labelled_pool(base)
    val_size, val_line = choose_val_size(args.val_size, base, pool, seg_overrides, sweep_dir / "sweep.json",
                                         recorded_val_size(read_sweep(sweep_dir) if sweep_dir.is_dir() else None))
    check_subsets_fit(pool, subsets, val_size)
    base_overrides.append(f"data.val_size={val_size}")  # every cell: one validation set
    templates = {variant: load_config(SegmentConfig, args.config, [*base_overrides, *variant_overrides(variant)])
                 for variant in every_variant(variants)}  # per variant: explicit keys still override
    template = next(iter(templates.values()))
    print_main(val_line)
    excluded, message = exclude_labelled_test_set(args, sweep_dir, pre_overrides, template)
    if message:
        print_main(message)
    pretraining, pretraining_values = plan_pretraining(args, sweep_dir, [*pre_overrides, *excluded])
    inits = sweep_inits(args, pretraining)
    labels = [init.label for init in inits]
    cells = expand_grid(inits, subsets, seeds, variants,
                        lambda init, variant: runs_with(init.path, config_variant(templates[variant])))
    skipped = skipped_pairs(inits, templates)
    if skipped:
        print_main(f"sweep: skipping {', '.join(skipped)}: each init runs only with the models it fits (pretraining "
                   f"exports with ViTs; imagenet and ResNet weights files with CNNs)")
    if not cells:
        raise SimsegError("no init fits any of the models: give --init scratch, or inits that fit --models")
    configs = {cell: cell_config(templates[cell.variant], cell, sweep_dir) for cell in cells}
    for arch in {configs[c].model.arch for c in cells if c.init.path == "imagenet"}:
        from simseg.models.registry import ARCHS
        from simseg.training.cnn_weights import imagenet_encoder_state

        imagenet_encoder_state(ARCHS[arch].encoder, arch)  # offline: one line now, not after the other cells ran

    if is_main_process():
        record_sweep(sweep_dir, argv, template, inits, subsets, seeds, pretraining, {**variants, **pretraining_values},
                     val_size)
    my_pretraining = shard_cells(pretraining, *shard)
    my_cells = shard_cells(cells, *shard)
    part = f" (shard {shard[0] + 1}/{shard[1]})" if shard[1] > 1 else ""
    todo = []
    for cell in my_cells:
        if not run_is_finished(cell.run_dir(sweep_dir), template.train.epochs):
            todo.append(cell)
        elif is_main_process():  # reused only with the same config; cell.json may be missing after a kill
            check_unchanged(configs[cell], sweep_dir)
            write_cell_record(cell, sweep_dir)
    todo_pre = []
    for _, cfg in my_pretraining:
        if not run_is_finished(Path(cfg.output_dir), cfg.train.epochs):
            todo_pre.append(cfg)
        elif is_main_process():  # reused only with the same config (data.exclude included), cells finished or not
            check_unchanged(cfg, sweep_dir)
    if not todo and not todo_pre:
        rows = collect_results(sweep_dir, labels)
        print_main(f"sweep: all {len(my_cells)} cells{part} finished earlier in {sweep_dir}: nothing to run "
                   f"(results.csv has {len(rows)} rows)")
        return sweep_dir

    if launcher is not None:
        launch_tasks(args, launcher, sweep_dir, [(i, c) for i, c in my_pretraining if c in todo_pre],
                     [(cell, configs[cell]) for cell in todo], labels)
        return sweep_dir
    for init, cfg in my_pretraining:
        run_unless_finished("pretrain", cfg, f"sweep: pretraining {init.label} -> {cfg.output_dir}")
    run_cells(my_cells, configs, sweep_dir, labels, part)
    return sweep_dir


def launcher_config(args) -> LauncherConfig | None:
    """The launcher's config from --launcher-config and the flags; None to run the cells in this process."""
    flags = {key: getattr(args, key) for key in ("partition", "time", "gpus_per_cell", "cpus_per_cell", "mem_gb",
                                                 "array_parallelism", "max_requeues")}
    given = [f"{key}={value}" for key, value in flags.items() if value is not None]
    if args.launcher == "local" and args.gpus_per_cell is None:
        if args.launcher_config or args.wait or given:
            raise SimsegError("--launcher-config, --wait and the resource flags need --launcher slurm (or "
                              "--gpus-per-cell N for one process per cell on the local GPUs)")
        return None
    if args.shard:
        raise SimsegError("--shard splits the grid by hand; with --launcher slurm or --gpus-per-cell every "
                          "unfinished cell is its own task already: drop --shard")
    return load_config(LauncherConfig, args.launcher_config, given)


def launch_tasks(args, launcher: LauncherConfig, sweep_dir: Path, pretraining: list, cells: list,
                 labels: list[str]) -> None:
    """Hand the unfinished runs to the cluster (or the local GPUs) as one task each."""
    from simseg.experiments.sweep import launch

    processes = max(launcher.gpus_per_cell, 1)
    pre_tasks = [launch.StageTask("pretrain", cfg, f"{launch.PRETRAIN_PREFIX}{init.label}", sweep_dir,
                                  processes=processes) for init, cfg in pretraining]
    cell_tasks = [launch.StageTask("segment", cfg, cell.name, sweep_dir, cell, tuple(labels), processes)
                  for cell, cfg in cells]
    if args.launcher == "slurm":
        launch.launch_slurm(sweep_dir, pre_tasks, cell_tasks, launcher, args.wait, cluster=launch.EXECUTOR)
    else:
        launch.launch_local_gpus(sweep_dir, pre_tasks, cell_tasks, launcher, visible_gpus())


def visible_gpus() -> list[int]:
    """The GPU ids this process may use, as CUDA_VISIBLE_DEVICES names them (else 0..count-1)."""
    import os

    import torch

    count = torch.cuda.device_count()
    named = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if named and all(part.strip().isdigit() for part in named.split(",")):
        return [int(part) for part in named.split(",")][:count]
    return list(range(count))


def record_sweep(sweep_dir: Path, argv: list[str], template, inits, subsets, seeds, pretraining,
                 axis_values: dict[str, list], val_size: int) -> None:
    """``sweep.json``: the latest grid (each axis's values under its ``grid_key``; ``[]`` when not swept; the
    validation images every cell shares under ``val_size``) and config, and every distinct command run into this
    folder."""
    path = sweep_dir / "sweep.json"
    command = shlex.join(["simseg", "sweep", *argv])
    commands = json.loads(path.read_text()).get("commands", []) if path.is_file() else []
    atomic_write_json(path, {
        "command": command, "commands": commands + [command] * (command not in commands),
        "grid": {"subsets": subsets, "seeds": seeds, "val_size": val_size,
                 **{axis.grid_key: axis_values.get(axis.column, []) for axis in variant_axes()},
                 "inits": {i.label: i.path for i in inits if not i.intermediate},
                 "intermediate": {i.label: i.path for i in inits if i.intermediate},
                 **{axis.grid_key: [axis.name_part(v) for v in axis_values.get(axis.column, [])]
                    for axis in pretraining_axes()}},
        "segment_config": {k: v for k, v in to_dict(template).items() if k not in ("output_dir", "init", "resume")},
        "pretrain_config": to_dict(pretraining[0][1]) if pretraining else None,
    })


def run_cells(cells: list[Cell], configs: dict, sweep_dir: Path, labels: list[str], part: str) -> None:
    """Run (or resume) each unfinished cell whose init is ready; wait for inits another shard is still making."""
    epochs = next(iter(configs.values())).train.epochs
    pending = [c for c in cells if not run_is_finished(c.run_dir(sweep_dir), epochs)]
    done_before, total = len(cells) - len(pending), len(cells)
    spent, units, started, waiting = 0.0, 0, time.perf_counter(), False
    while pending:
        cell = agree(lambda: next((c for c in pending if init_ready(c.init)), None))
        if cell is None:
            if not waiting:
                print_main(f"sweep: waiting for {pending[0].init.label} (made by another shard) ...")
            waiting = True
            time.sleep(POLL_SECONDS)
            continue
        waiting = False
        pending.remove(cell)
        k = total - len(pending)
        eta = f", ETA {format_seconds(spent / units * sum(c.subset for c in pending))}" if units else ""
        resume = agree(partial(run_started, cell.run_dir(sweep_dir)))
        print_main(f"sweep: [{k}/{total}]{part} {cell.name}{' (resuming)' if resume else ''}; "
                   f"{format_seconds(time.perf_counter() - started)} elapsed{eta}")
        cfg = replace(configs[cell], resume=resume)
        tick = time.perf_counter()
        run_unless_finished("segment", cfg, None)
        spent, units = spent + time.perf_counter() - tick, units + cell.subset
        if is_main_process():
            write_cell_record(cell, sweep_dir)  # after the run: the stage wants a new run's folder empty
            collect_results(sweep_dir, labels)
    print_main(f"sweep: {total - done_before} cells{part} run in {format_seconds(time.perf_counter() - started)} "
               f"({done_before} finished earlier); results in {sweep_dir / 'results.csv'}")


def agree(decide):
    """``decide()`` on the main process, broadcast to all: ranks reading the file system at slightly different
    moments must still run the same cell."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    if PartialState().num_processes == 1:
        return decide()
    box = [decide() if PartialState().is_main_process else None]
    broadcast_object_list(box)
    return box[0]
