"""One stage run of a sweep, wherever it runs (in the sweep's process, as a cluster task or on a local GPU): a cell's
config, running it unless it finished with the same config, and rebuilding the sweep's results from the finished
cell folders."""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock

from simseg.config.loader import build, to_dict
from simseg.config.segment import SegmentConfig
from simseg.errors import SimsegError
from simseg.experiments.run_folders import cell_records, run_metrics
from simseg.experiments.stage_table import run_stage
from simseg.experiments.sweep.plan import Cell, Init, cell_of_record
from simseg.experiments.sweep.results import result_row, write_results
from simseg.training.resume_state import run_is_finished
from simseg.training.rundir import changed_keys, load_run_config

RESULTS_LOCK = ".results.lock"  # held while a process rebuilds results.csv / results.jsonl


def cell_config(template: SegmentConfig, cell: Cell, sweep_dir: Path) -> SegmentConfig:
    """The segmentation config of ``cell``: its variant's template with the cell's folder, init, seed and subset."""
    tree = to_dict(template)
    tree.update(output_dir=str(cell.run_dir(sweep_dir)), init=cell.init.path, seed=cell.seed, resume=False)
    tree["data"]["subset"] = str(cell.subset)
    # every cell's batched path shares one cache of the pairs, decoded once for the whole grid
    tree["data"]["cache_dir"] = tree["data"]["cache_dir"] or str((sweep_dir / "data_cache").resolve())
    return build(SegmentConfig, tree)


def check_unchanged(cfg, sweep_dir: Path) -> None:
    """Refuse to reuse a finished run of this sweep folder that was made with other settings."""
    changed = changed_keys(cfg)
    if changed:
        raise SimsegError(f"{sweep_dir} holds runs made with other settings (changed: {', '.join(changed)}; in "
                          f"{cfg.output_dir}): rerun with the original settings or choose another --output-dir")


def init_ready(init: Init) -> bool:
    if init.path in ("scratch", "imagenet"):
        return True
    path = Path(init.path)
    return path.is_file() or (path / "encoder.safetensors").is_file()  # a CNN weights file, or a ViT run's export


def run_unless_finished(stage: str, cfg, message: str | None) -> Path:
    """Run one stage (see :func:`~simseg.experiments.stage_table.run_stage`), or only check a finished one's config."""
    run_dir = Path(cfg.output_dir)
    if run_is_finished(run_dir, cfg.train.epochs):
        check_unchanged(cfg, run_dir.parent)  # a finished run is reused only with the same config
        return run_dir
    if message:
        print_main(message)
    return run_stage(stage, cfg)


def collect_results(sweep_dir: Path, labels: list[str]) -> list[dict]:
    """Rows of every finished cell folder under ``sweep_dir/cells``, in grid order; rewrites results.* if changed.

    Shards running at once each rebuild the files after every cell: the lock makes each read-then-write whole, so
    the last writer has seen every cell finished before it, and no shard's rewrite drops another's new row (shards on
    several machines need a shared file system whose locks work, as local disks and NFSv4 do)."""
    with FileLock(sweep_dir / RESULTS_LOCK):
        return _collect_results(sweep_dir, labels)


def _collect_results(sweep_dir: Path, labels: list[str]) -> list[dict]:
    rows = []
    for run_dir, record in cell_records(sweep_dir):
        cell = cell_of_record(record)
        if cell.run_dir(sweep_dir) != run_dir:
            continue  # a folder moved by hand: its name no longer says which cell it is
        cfg = load_run_config(run_dir, SegmentConfig)
        if run_is_finished(run_dir, cfg.train.epochs):
            rows.append(result_row(cell, run_metrics(run_dir), sweep_dir, cfg))
    order = {label: i for i, label in enumerate(labels)}
    rows.sort(key=lambda r: (r["subset"], order.get(r["init"], len(order)), r["init"], r["seed"]))
    write_results(sweep_dir, rows)
    return rows


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def print_main(message: str) -> None:
    if is_main_process():
        print(message, flush=True)
