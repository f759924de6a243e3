"""The resume state: only complete states are found, a failed save keeps the previous state, and a state that
cannot be read whole is refused in one line naming the file, with nothing in the folder changed."""

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from simseg.config.segment import SegmentConfig
from simseg.errors import SimsegError
from simseg.training.resume_state import find_state, run_is_finished
from simseg.training.rundir import load_run_config, prepare_run_dir


def test_find_state_uses_only_complete_states(tmp_path):
    assert find_state(tmp_path) is None
    (tmp_path / "state.tmp").mkdir()  # killed mid-save: incomplete, ignored
    (tmp_path / "state.tmp" / "model.safetensors").write_bytes(b"partial")
    assert find_state(tmp_path) is None
    (tmp_path / "state.old").mkdir()  # killed between the two renames of the swap
    (tmp_path / "state.old" / "progress.json").write_text('{"epoch": 1, "step": 5}')
    assert find_state(tmp_path) == tmp_path / "state.old"
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "progress.json").write_text('{"epoch": 2, "step": 10}')
    assert find_state(tmp_path) == tmp_path / "state"


def test_failed_state_save_is_one_line_and_keeps_the_previous_state(tmp_path):
    from simseg.training.resume_state import save_state

    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "progress.json").write_text('{"epoch": 1, "step": 5}')

    class FullDisk:
        is_main_process = True

        def wait_for_everyone(self):
            pass

        def save_state(self, path):
            import os
            os.makedirs(path)
            (tmp_path / "state.tmp" / "optimizer.bin").write_bytes(b"half")
            raise RuntimeError("Error while serializing: IoError(No space left on device (os error 28))")

    with pytest.raises(SimsegError, match=r"cannot save training state .*No space left on device.*resume=true"):
        save_state(FullDisk(), tmp_path, {"epoch": 2, "step": 10})
    assert find_state(tmp_path) == tmp_path / "state" and not (tmp_path / "state.tmp").exists()


FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "runs_before_layout" / "segment"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("file, damage, reason", [
    ("model.safetensors", "truncate", "incomplete metadata"),
    ("optimizer.bin", "truncate", "not a zip file"),
    ("random_states_0.pkl", "flip", "fails its CRC check"),
    ("custom_checkpoint_0.pkl", "truncate", "not a zip file"),
    ("progress.json", "truncate", "JSONDecodeError"),
])
def test_a_state_that_cannot_be_read_is_refused_in_one_line_and_nothing_changes(tmp_path, monkeypatch, file,
                                                                                damage, reason):
    run_dir = copied_fixture(tmp_path, monkeypatch)
    path = run_dir / "state" / file
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        del data[len(data) // 2:]
    else:
        data[len(data) // 3] ^= 0xFF  # inside the pickled data: the zip's CRC no longer matches
    path.write_bytes(bytes(data))
    before = snapshot(run_dir)
    with pytest.raises(SimsegError) as err:
        prepare_run_dir(replace(load_run_config(run_dir, SegmentConfig), resume=True))
    message = str(err.value)
    assert f"cannot resume {run_dir}: {run_dir / 'state' / file} is damaged" in message and reason in message
    assert f"restore the folder from a copy, or move {run_dir / 'state'} away" in message and "\n" not in message
    assert snapshot(run_dir) == before
    assert not run_is_finished(run_dir, 1), "a damaged state is never a finished run"


def copied_fixture(tmp_path: Path, monkeypatch) -> Path:
    """A copy of an old segmentation run killed after epoch 0; its config names its folder relative to where it
    ran."""
    shutil.copytree(FIXTURE, tmp_path / "old_runs" / "segment")
    monkeypatch.chdir(tmp_path)
    return Path("old_runs/segment")


def test_a_readable_state_passes_the_check(tmp_path, monkeypatch):
    run_dir = copied_fixture(tmp_path, monkeypatch)
    assert prepare_run_dir(replace(load_run_config(run_dir, SegmentConfig), resume=True)) == run_dir
