"""The cluster launcher, with submitit's debug and local executors and a stand-in sbatch (no SLURM here)."""

from __future__ import annotations

import csv
import json
import os
import signal
import stat
import sys
import time
from pathlib import Path

import pytest

from simseg.config.loader import load_config
from simseg.config.segment import SegmentConfig
from simseg.errors import SimsegError
from simseg.experiments.sweep import launch
from simseg.experiments.sweep.command import sweep
from simseg.experiments.sweep.plan import Cell, Init
from simseg.training.resume_state import find_state, run_is_finished
from simseg.training.rundir import read_metrics
from tests.experiments.test_sweep import CELL, PRETRAIN
from tests.stages.test_segment import check_native_scores

pytest.importorskip("submitit")


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    monkeypatch.setattr(launch, "POLL_SECONDS", 0.2)


def rows(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "results.csv") as file:
        return list(csv.DictReader(file))


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """``srun`` and an ``sbatch`` that keeps every script it is given and answers with a new job id; ``sacct`` reports
    the states written in ``sacct-states.txt`` beside it (none: no job known). Returns the folder of the scripts."""
    bin_dir, kept = tmp_path / "bin", tmp_path / "sbatch-scripts"
    bin_dir.mkdir()
    kept.mkdir()
    scripts = {
        "srun": "#!/bin/sh\nexit 0\n",
        "sbatch": f"""#!/bin/sh
n=$(ls {kept} | wc -l)
if grep -q 'partition=nope' "$1"; then echo 'sbatch: error: invalid partition specified: nope' >&2; exit 1; fi
cp "$1" {kept}/$((4200 + n)).sh
echo "Submitted batch job $((4200 + n))"
""",
        "sacct": f"#!/bin/sh\necho 'JobID|State|NodeList'\ncat {tmp_path}/sacct-states.txt 2>/dev/null\nexit 0\n",
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return kept


def sbatch_flags(script: Path) -> dict[str, str]:
    flags = {}
    for line in script.read_text().splitlines():
        if line.startswith("#SBATCH --"):
            key, _, value = line.removeprefix("#SBATCH --").partition("=")
            flags[key] = value
    return flags


def test_sbatch_parameters_match_the_flags_and_cells_wait_for_the_pretraining(tmp_path, fake_slurm):
    out = tmp_path / "sweep"
    sweep(["--subsets", "8,16", "--seeds", "0,1", "--pretrain-subsets", "16", "--pretrain-data", "synthetic",
           "--output-dir", str(out), "--launcher", "slurm", "--partition", "gpu", "--time", "2:00:00",
           "--gpus-per-cell", "2", "--cpus-per-cell", "6", "--mem-gb", "24", "--array-parallelism", "3",
           *CELL, *PRETRAIN])
    pretraining, cells = (sbatch_flags(p) for p in sorted(fake_slurm.iterdir()))
    for flags in (pretraining, cells):
        assert flags["partition"] == "gpu" and flags["time"] == "120" and flags["gpus-per-node"] == "2"
        assert flags["cpus-per-task"] == "6" and flags["mem"] == "24GB" and flags["nodes"] == "1"
        assert flags["ntasks-per-node"] == "1"
    assert "array" not in pretraining and "dependency" not in pretraining  # one task: a plain job
    assert cells["array"] == "0-7%3"  # 2 inits x 2 subsets x 2 seeds, 3 at a time
    assert cells["dependency"] == "afterok:4200"  # every cell waits for the pretraining job
    record = json.loads((out / "launch.json").read_text())
    jobs = record["submissions"][0]["jobs"]
    assert list(jobs)[0] == "pretrain:pretrain-16" and jobs["scratch/subset-8/seed-0"] == "4201_0"
    assert len(jobs) == 9 and record["owner"]


def test_a_rerun_submits_what_is_unfinished_and_not_still_queued_or_running(tmp_path, fake_slurm, capsys):
    out = tmp_path / "sweep"
    argv = ["--subsets", "8", "--seeds", "0,1,2", "--init", "scratch", "--pretrain-subsets", "16", "--pretrain-data",
            "synthetic", "--output-dir", str(out), "--launcher", "slurm", *CELL, *PRETRAIN]
    sweep(argv)  # pretraining: job 4200; cells: array 4201 (scratch and pretrain-16 x 3 seeds)
    states = ["4200|FAILED|node1", *(f"4201_{i}|RUNNING|node2" for i in range(3)),
              *(f"4201_{i}|PENDING|" for i in range(3, 5)), "4201_5|CANCELLED|"]
    (tmp_path / "sacct-states.txt").write_text("\n".join(states) + "\n")
    capsys.readouterr()
    sweep(argv)
    assert "5 tasks of an earlier submission are still queued or running" in capsys.readouterr().out
    record = json.loads((out / "launch.json").read_text())
    assert record["submissions"][1]["jobs"] == {"pretrain:pretrain-16": "4202",
                                                "pretrain-16/subset-8/seed-2": "4203"}
    *_, cells = (sbatch_flags(p) for p in sorted(fake_slurm.iterdir()))
    assert cells["dependency"] == "afterok:4202" and "array" not in cells


def test_user_errors_are_one_line(tmp_path, fake_slurm, monkeypatch):
    base = ["--subsets", "8", "--output-dir", str(tmp_path / "s"), *CELL]
    cases = [
        (["--launcher", "slurm", "--partition", "gpu;rm"], "--partition 'gpu;rm' is not a SLURM partition name"),
        (["--launcher", "slurm", "--time", "soon"], "--time 'soon' is not a time limit"),
        (["--launcher", "slurm", "--partition", "nope"], "sbatch refused the job (sbatch: error: invalid partition"),
        (["--partition", "gpu"], "need --launcher slurm"),
        (["--launcher", "slurm", "--shard", "1/2"], "drop --shard"),
    ]
    for extra, message in cases:
        with pytest.raises(SimsegError) as err:
            sweep([*base, *extra])
        assert message in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "launch.json").write_text(json.dumps({"owner": "someone-else", "submissions": []}))
    with pytest.raises(SimsegError, match="belongs to a sweep of user 'someone-else'"):
        sweep(["--subsets", "8", "--output-dir", str(tmp_path / "theirs"), "--launcher", "slurm", *CELL])
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if it were not installed
    with pytest.raises(SimsegError, match=r"needs submitit: pip install 'simseg\[cluster\]'"):
        sweep([*base, "--launcher", "slurm"])


def test_without_slurm_it_says_so_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun, no sbatch
    with pytest.raises(SimsegError, match="--launcher slurm found no SLURM here .* use --shard i/n"):
        sweep(["--subsets", "8", "--output-dir", str(tmp_path / "s"), "--launcher", "slurm", *CELL])


@pytest.mark.slow
def test_pretraining_tasks_run_before_the_cells_in_grid_order(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(launch, "EXECUTOR", "debug")  # submitit's in-process executor
    out = tmp_path / "sweep"
    argv = ["--subsets", "8,16", "--pretrain-subsets", "16", "--pretrain-data", "synthetic", "--output-dir", str(out),
            "--launcher", "slurm", "--wait", *CELL, *PRETRAIN]
    order, real_call = [], launch.StageTask.__call__

    def recorded_call(task):
        order.append(task.name)
        return real_call(task)

    monkeypatch.setattr(launch.StageTask, "__call__", recorded_call)
    sweep(argv)
    assert order == ["pretrain:pretrain-16", "scratch/subset-8/seed-0", "pretrain-16/subset-8/seed-0",
                     "scratch/subset-16/seed-0", "pretrain-16/subset-16/seed-0"]
    assert [r["cell"] for r in rows(out)] == order[1:]
    assert "sweep: 5 done, 0 running or queued, 0 failed" in capsys.readouterr().out
    sweep(argv)  # a second submission skips what is finished
    assert len(order) == 5 and "nothing to run" in capsys.readouterr().out


@pytest.mark.slow
def test_a_failed_cell_is_reported_the_others_finish_and_a_rerun_submits_only_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(launch, "EXECUTOR", "local")  # one process per task
    out = tmp_path / "sweep"
    argv = ["--subsets", "8", "--seeds", "0,1", "--output-dir", str(out), "--launcher", "slurm", "--wait", *CELL]
    clash = out / "cells/scratch/subset-8/seed-1/left-behind.txt"  # the cell's folder is not empty: it must refuse
    clash.parent.mkdir(parents=True)
    clash.write_text("x")
    with pytest.raises(SimsegError, match=r"1 of 2 tasks failed \(scratch/subset-8/seed-1\)"):
        sweep(argv)
    said = capsys.readouterr().out
    assert "sweep: scratch/subset-8/seed-1 failed: output_dir " in said and "is not empty" in said
    assert [r["cell"] for r in rows(out)] == ["scratch/subset-8/seed-0"]
    clash.unlink()
    sweep(argv)
    record = json.loads((out / "launch.json").read_text())
    assert [list(s["jobs"]) for s in record["submissions"]] == [
        [f"scratch/subset-8/seed-{s}" for s in range(2)], ["scratch/subset-8/seed-1"]]
    assert len(rows(out)) == 2


def task_processes(job) -> list:
    """The processes submitit started for ``job``'s tasks: children of a job controller this test started (submitit's
    local executor starts one per job), with the job's id in ``SUBMITIT_LOCAL_JOB_ID``, which a task's
    JobEnvironment reads and its controller does not have."""
    import psutil  # accelerate's dependency

    tasks = []
    for controller in psutil.Process().children():
        try:
            tasks += [p for p in controller.children() if p.environ().get("SUBMITIT_LOCAL_JOB_ID") == job.job_id]
        except (psutil.NoSuchProcess, psutil.AccessDenied):  # a process that ended meanwhile
            continue
    return tasks


@pytest.mark.slow
def test_a_task_stopped_at_its_time_limit_is_requeued_and_resumes_its_cell(tmp_path):
    """SLURM signals a task shortly before its time limit (submitit's USR2); the task asks to be requeued and the
    requeued run resumes from the last saved epoch, so every epoch is trained and logged once."""
    import submitit
    from submitit.local.local import LocalJobEnvironment

    sweep_dir = tmp_path / "sweep"
    cell = Cell(Init("scratch", "scratch"), 16, 0)
    cfg = load_config(SegmentConfig, None, [*CELL, "train.epochs=12", "data.subset=16",
                                            f"output_dir={cell.run_dir(sweep_dir)}"])
    executor = submitit.LocalExecutor(folder=sweep_dir / launch.TASK_FOLDER / "%j", max_num_timeout=2)
    executor.update_parameters(timeout_min=10)
    job = executor.submit(launch.StageTask("segment", cfg, cell.name, sweep_dir, cell, ("scratch",)))
    # The signal is sent once the first epoch's state is saved, not by a time limit: how many epochs fit in a fixed
    # window depends on the machine's speed (a fast one finished 40 epochs inside one 12-second window). Twelve
    # epochs leave seconds between that save and the end, against the 50 ms this loop polls at.
    deadline = time.monotonic() + 300
    while find_state(cell.run_dir(sweep_dir)) is None and not job.done():
        assert time.monotonic() < deadline, "the task saved no epoch in 5 minutes"
        time.sleep(0.05)
    assert not job.done(), f"the task ended before it saved an epoch: {(job.stderr() or '')[-3000:]}"
    (task,) = task_processes(job)
    task.send_signal(getattr(signal, f"SIG{LocalJobEnvironment.USR_SIG}"))  # the signal the task listens for
    job.result()
    log = job.stdout() + (job.stderr() or "")
    assert "Requeued job" in log and "resuming" in log, log[-3000:]  # stopped once, continued from its state
    assert run_is_finished(cell.run_dir(sweep_dir), 12)
    assert [r["epoch"] for r in read_metrics(cell.run_dir(sweep_dir))] == list(range(12))
    assert [r["cell"] for r in rows(sweep_dir)] == [cell.name]


@pytest.mark.slow
def test_local_gpus_run_one_process_per_cell(tmp_path, monkeypatch):
    """Two "GPUs" (ids only: on a machine without CUDA the cells train on the CPU) run two cells at once."""
    import submitit

    out = tmp_path / "sweep"
    monkeypatch.setattr("simseg.experiments.sweep.command.visible_gpus", lambda: [0, 1])
    # How many cell processes are alive right after each start: the launcher, not the cells' speed, decides this
    # (file times of cells this short raced on a loaded machine).
    jobs, alive_at_start = [], []
    submit = submitit.LocalExecutor.submit

    def counting_submit(self, *args, **kwargs):
        jobs.append(submit(self, *args, **kwargs))
        alive_at_start.append(sum(not job.done() for job in jobs))
        return jobs[-1]

    monkeypatch.setattr(submitit.LocalExecutor, "submit", counting_submit)
    sweep(["--subsets", "8", "--seeds", "0,1,2", "--output-dir", str(out), "--gpus-per-cell", "1", *CELL])
    assert [r["cell"] for r in rows(out)] == [f"scratch/subset-8/seed-{s}" for s in range(3)]
    assert alive_at_start[:2] == [1, 2] and max(alive_at_start) == 2  # two at once, never a third beside them
    with pytest.raises(SimsegError, match="--gpus-per-cell 4 needs at least 4 GPUs and this machine shows 2"):
        sweep(["--subsets", "16", "--output-dir", str(out), "--gpus-per-cell", "4", *CELL])
    monkeypatch.setattr("simseg.experiments.sweep.command.visible_gpus", lambda: [])
    with pytest.raises(SimsegError, match="shows 0 .asked for 1 per cell.: drop --gpus-per-cell"):
        sweep(["--subsets", "16", "--output-dir", str(out), "--gpus-per-cell", "1", *CELL])


@pytest.mark.slow
def test_a_cell_of_two_processes_writes_the_same_files(tmp_path, monkeypatch):
    """--gpus-per-cell 2: the cell runs as two processes under torchrun (gloo on the CPU here) and its run folder and
    results row have the same form as a one-process cell's."""
    out = tmp_path / "sweep"
    monkeypatch.setattr("simseg.experiments.sweep.command.visible_gpus", lambda: [0, 1])
    sweep(["--subsets", "16", "--output-dir", str(out), "--gpus-per-cell", "2", *CELL])
    (row,) = rows(out)
    run_dir = out / row["run_dir"]
    one = tmp_path / "one"
    sweep(["--subsets", "16", "--output-dir", str(one), *CELL])
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(p.name for p in (one / row["run_dir"]).iterdir())
    assert row.keys() == rows(one)[0].keys() and 0 <= float(row["miou_plain"]) <= 1
    logs = "".join(p.read_text() for p in (out / "launcher").rglob("*_log.out"))
    assert f"running {run_dir} as 2 CPU processes" in logs
    # the final test pass ran in shares on both processes: each test image scored once, at its own size
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["scored_at"] == "native"
    check_native_scores(run_dir, metrics)
