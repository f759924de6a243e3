"""The run folder: a run describes itself and can be continued.

    output_dir/
      config.yaml         the config as given, with every default filled in; under ``resolved`` what the run chose
                          where the config leaves the choice to it (the data path, the loader workers); under
                          ``meta`` the git revision, package versions and command
      metrics.jsonl       one line per finished epoch (each epoch exactly once, also after resumes)
      metrics.json        final figures
      state/              Accelerate state for resume (model, optimiser, RNG) + progress.json (epoch, step)
      ...                 the stage's exports and pictures

The resume state in ``state/`` is saved, checked and restored by :mod:`simseg.training.resume_state`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path

import yaml

from simseg.config.loader import diff_keys, flat_dict, load_yaml, merge_trees, to_dict
from simseg.errors import SimsegError
from simseg.files import atomic_write_text
from simseg.training.resume_state import check_state, load_state

# Keys a resumed run may change: they do not alter what is computed.
RESUMABLE_CHANGES = ("resume", "data.num_workers", "data.cache_dir", "log.progress", "log.trackers", "log.grid_every",
                     "train.compile_cache_dir")
_PACKAGES = ("simseg", "torch", "torchvision", "timm", "accelerate", "datasets", "numpy")


def prepare_run_dir(cfg) -> Path:
    """Create ``cfg.output_dir`` for a new run, or check that a resumed run's config matches the saved one and that
    its saved state can be read, before anything in the folder changes."""
    run_dir = Path(cfg.output_dir).expanduser()
    if run_dir.exists() and not run_dir.is_dir():
        raise SimsegError(f"output_dir {run_dir} is a file: choose a folder")
    if cfg.resume:
        changed = changed_keys(cfg)
        if changed:
            raise SimsegError(f"resume=true but {', '.join(changed)} differ from {run_dir / 'config.yaml'}: resume "
                              f"with the original values or start a new output_dir")
        check_state(run_dir)
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise SimsegError(f"output_dir {run_dir} is not empty: pass resume=true to continue that run, or choose "
                          f"another output_dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def saved_config(run_dir: Path) -> dict | None:
    """A run folder's config.yaml as a tree (``meta`` left out), or None when it has none yet. A folder written
    before runs recorded their choices under ``resolved`` had written the data path it chose into
    ``data.pipeline`` (or, before the batched path, nothing: per image); that choice moves to ``resolved``."""
    path = Path(run_dir).expanduser() / "config.yaml"
    if not path.exists():
        return None
    tree = load_yaml(path.read_text()) or {}
    tree.pop("meta", None)
    if "resolved" not in tree and isinstance(tree.get("data"), dict):
        chosen = tree["data"].get("pipeline", "auto")
        tree["resolved"] = {"data": {"pipeline": "per_image" if chosen == "auto" else chosen}}
        tree["data"] = {**tree["data"], "pipeline": "auto"}
    return tree


def recorded_choices(cfg) -> dict:
    """What a resumed run chose when it started (its config.yaml's ``resolved`` tree); {} for a new run."""
    saved = saved_config(cfg.output_dir) if cfg.resume else None
    return (saved or {}).get("resolved") or {}


def changed_keys(cfg) -> list[str]:
    """Dotted keys whose values in ``cfg`` differ from those its run folder's ``config.yaml`` was made with, leaving
    out the keys a resume may change; [] when the folder has no config yet. A key the run resolved (``data.pipeline``
    under ``auto``) is unchanged when given as what the run chose, or left at its default, which leaves the choice
    to the run: a resumed run's choice is the one it made."""
    saved = saved_config(cfg.output_dir)
    if saved is None:
        return []
    resolved = saved.pop("resolved", None) or {}
    new, cls = to_dict(cfg), type(cfg)
    as_given = diff_keys(with_new_defaults(saved, cls), new)
    as_resolved = set(diff_keys(with_new_defaults(merge_trees(saved, resolved), cls), new))
    defaults, given = flat_dict(to_dict(cls())), flat_dict(new)
    left_to_the_run = {key for key in flat_dict(resolved) if defaults.get(key) == given.get(key)}
    return [k for k in as_given if k in as_resolved and k not in left_to_the_run and k not in RESUMABLE_CHANGES]


def with_new_defaults(saved: dict, cls: type) -> dict:
    """A saved config tree with the current defaults of keys added since it was written, so a run folder made by an
    earlier simseg still resumes; a tree the current ``cls`` refuses (a key since removed) is compared as it is."""
    from simseg.config.loader import build

    try:
        return to_dict(build(cls, saved))
    except SimsegError:
        return saved


def load_run_config(run_dir: Path, cls: type):
    """The config a run folder was made with."""
    from simseg.config.loader import build

    tree = saved_config(run_dir)
    if tree is None:
        raise SimsegError(f"{run_dir} has no config.yaml: give a simseg run folder (the output_dir of a stage)")
    tree.pop("resolved", None)
    return build(cls, tree)


def write_config(run_dir: Path, cfg, resolved: dict | None = None, command: list[str] | None = None) -> None:
    """``config.yaml``: the config, what the run resolved (``resolved``, nested as the config), and what is needed
    to reproduce it."""
    meta = {
        "git_revision": git_revision(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(command if command is not None else sys.argv),
        "versions": package_versions(),
    }
    text = yaml.safe_dump({**to_dict(cfg), "resolved": resolved or {}, "meta": meta}, sort_keys=False)
    atomic_write_text(run_dir / "config.yaml", text)


def git_revision() -> str:
    """The source tree's commit (with ``-dirty`` if it has changes), or ``unknown`` outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in _PACKAGES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def check_or_save_splits(run_dir: Path, names: dict[str, list[str]], write: bool) -> None:
    """Save each split's item names (``test_images.txt``, ...); a resumed run must find the same names."""
    from simseg.data.splits import load_split, save_split

    for split, items in names.items():
        path = run_dir / f"{split}_images.txt"
        if path.exists():
            if load_split(path) != items:
                raise SimsegError(f"{path} lists other images than this run's {split} split: the data, or how "
                                  f"simseg draws splits (a validation set is fixed across seeds since 2026-12-07), "
                                  f"changed since the run started; resume with the original data or start a new "
                                  f"output_dir")
        elif write and items:
            save_split(path, items)


# --- metrics ----------------------------------------------------------------------------------------------------------


def append_metrics(run_dir: Path, record: dict) -> None:
    """Add one epoch's line to ``metrics.jsonl`` (rewritten whole and renamed, so a kill never leaves half a line)."""
    lines = read_metrics(run_dir) + [record]
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in lines))


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(run_dir: Path, first_epoch: int) -> None:
    """Drop lines of epochs >= ``first_epoch``: epochs logged after the last saved state are run again."""
    kept = [r for r in read_metrics(run_dir) if r["epoch"] < first_epoch]
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept))


def start_or_resume(accelerator, run_dir: Path, cfg, resolved: dict | None = None) -> tuple[int, int, bool]:
    """Where a stage's loop starts: (first epoch, step, whether this is a new run).

    With ``resume=true`` the newest complete state is restored and epochs logged after it are dropped from
    ``metrics.jsonl`` (they run again); a new run writes ``config.yaml`` with what it ``resolved``.
    """
    progress = load_state(accelerator, run_dir) if cfg.resume else None
    start_epoch, step = (progress["epoch"], progress["step"]) if progress else (0, 0)
    if progress is not None:
        epochs = cfg.train.epochs
        accelerator.print(f"resuming {run_dir} at epoch {start_epoch} of {epochs}" if start_epoch < epochs
                          else f"{run_dir} already finished all {epochs} epochs")
    if accelerator.is_main_process:
        truncate_metrics(run_dir, start_epoch)
        if progress is None:
            write_config(run_dir, cfg, resolved)
    accelerator.wait_for_everyone()  # every process sees the truncated log
    return start_epoch, step, progress is None
