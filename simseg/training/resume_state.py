"""A run's resume state: Accelerate's full state (model, optimiser, RNG, EMA) plus ``progress.json`` (the next epoch
and step) in ``RUN/state/``, saved whole or not at all, checked before a resume changes anything, and restored.

The state is saved to ``state.tmp/`` and swapped in by renames, so a run killed at any moment finds ``state/`` (or,
killed mid-swap, ``state.old/``) complete; ``progress.json`` is written last and marks a complete state.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

from safetensors import SafetensorError, safe_open

from simseg.errors import SimsegError
from simseg.files import atomic_write_json

STATE, STATE_TMP, STATE_OLD = "state", "state.tmp", "state.old"
PROGRESS = "progress.json"


def save_state(accelerator, run_dir: Path, progress: dict) -> None:
    """Accelerate's full state plus ``progress`` (next epoch, step), swapped in atomically."""
    tmp, final, old = run_dir / STATE_TMP, run_dir / STATE, run_dir / STATE_OLD
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp))
    except Exception as err:  # OSError, or the serialiser's own error type wrapping ENOSPC
        shutil.rmtree(tmp, ignore_errors=True)
        text = str(err).strip()
        reason = getattr(err, "strerror", None) or (text.splitlines()[0] if text else type(err).__name__)
        raise SimsegError(f"cannot save training state to {tmp} ({reason}): free disk space and rerun with "
                          f"resume=true (the previous state and all other files are intact)") from None
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(tmp / PROGRESS, progress)  # written last: its presence marks a complete state
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def find_state(run_dir: Path) -> Path | None:
    """The newest complete state folder, if any."""
    for name in (STATE, STATE_OLD):
        if (run_dir / name / PROGRESS).exists():
            return run_dir / name
    return None


def read_progress(state: Path) -> dict:
    """A state folder's progress (next epoch, step), or one line saying it cannot be read."""
    try:
        progress = json.loads((state / PROGRESS).read_text())
        return {"epoch": int(progress["epoch"]), "step": int(progress["step"])}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SimsegError(_unreadable(state / PROGRESS, type(err).__name__)) from None


def check_state(run_dir: Path) -> None:
    """Refuse, in one line naming the file, a resume whose newest state holds a file that cannot be read whole (a
    copy cut short, a damaged disk): the safetensors headers must cover their files, and Accelerate's pickles
    (zip archives) must pass their CRC checks. Reads the files; changes nothing."""
    state = find_state(run_dir)
    if state is None:
        return
    read_progress(state)
    for path in sorted(state.iterdir()):
        try:
            if path.suffix == ".safetensors":
                with safe_open(str(path), framework="pt") as file:
                    file.keys()
            elif path.suffix in (".bin", ".pkl", ".pt"):
                with zipfile.ZipFile(path) as archive:
                    broken = archive.testzip()
                if broken is not None:
                    raise zipfile.BadZipFile(f"{broken} fails its CRC check")
        except (SafetensorError, zipfile.BadZipFile, OSError, EOFError) as err:
            raise SimsegError(_unreadable(path, str(err).strip().splitlines()[0] if str(err).strip()
                                          else type(err).__name__)) from None


def _unreadable(path: Path, reason: str) -> str:
    state = path.parent
    return (f"cannot resume {state.parent}: {path} is damaged ({reason}); restore the folder from a copy, or move "
            f"{state} away to start the run again from epoch 0 (nothing was changed)")


def load_state(accelerator, run_dir: Path) -> dict | None:
    """Restore the newest complete state; returns its progress, or None when there is nothing to resume."""
    state = find_state(run_dir)
    if state is None:
        return None
    progress = read_progress(state)
    try:
        accelerator.load_state(str(state))
    except (RuntimeError, ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile, SafetensorError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SimsegError(f"cannot resume {run_dir} from {state} ({type(err).__name__}: {reason}): it was saved by "
                          f"another model or setup; resume with the run's own config, or start a new "
                          f"output_dir") from None
    return progress


def is_finished(cfg) -> bool:
    """A stage run is finished when its last epoch's state, its final figures and its export are all on disk."""
    return run_is_finished(Path(cfg.output_dir), cfg.train.epochs)


def run_is_finished(run_dir: Path, epochs: int) -> bool:
    """:func:`is_finished` for a run folder found on disk (its saved ``output_dir`` may be relative to elsewhere)."""
    state = find_state(run_dir)
    # model.safetensors is every stage's last file (a CNN writes no encoder.safetensors, the ViT handoff)
    if state is None or not (run_dir / "metrics.json").exists() or not (run_dir / "model.safetensors").exists():
        return False
    try:
        return read_progress(state)["epoch"] >= epochs
    except SimsegError:  # a damaged state: not finished; resuming it says what is wrong
        return False
