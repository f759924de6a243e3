"""A sweep's runs as submitit tasks: a SLURM job array (``simseg sweep --launcher slurm``), or one process per cell
on the local GPUs (``--gpus-per-cell N``).

Each unfinished stage run becomes one :class:`StageTask`: the pretraining runs first, the cells after them (on SLURM
the cells' array waits for the pretraining array through a job dependency). A task that is preempted or reaches its
time limit is requeued by submitit and resumes its run from the last epoch it saved; a task that fails is reported
with the last line of its log and leaves the others running. Every task's pickled call and log are in
``SWEEP_DIR/launcher/``; ``SWEEP_DIR/launch.json`` records who owns the folder and every submission's job ids.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from simseg.config.launcher import LauncherConfig
from simseg.config.loader import to_dict
from simseg.errors import SimsegError
from simseg.experiments.run_folders import run_started
from simseg.experiments.stage_table import STAGES
from simseg.experiments.sweep.cells import collect_results, format_seconds, init_ready, run_unless_finished
from simseg.experiments.sweep.plan import Cell, write_cell_record
from simseg.files import atomic_write_json, atomic_write_text
from simseg.training.resume_state import run_is_finished

TASK_FOLDER = "launcher"
RECORD = "launch.json"
POLL_SECONDS = 10.0
PRETRAIN_PREFIX = "pretrain:"  # a pretraining task is named pretrain:LABEL, a cell's task by the cell (no colon)
SLURM = "slurm"
EXECUTOR = SLURM  # the submitit executor --launcher slurm uses; tests set submitit's "local" or "debug"


@dataclass
class StageTask:
    """One stage run of a sweep, as a submitit task: a pretraining, or a cell (the results are rebuilt after it).

    With ``processes`` > 1 the run is started as that many processes by torchrun inside the task (one per GPU; on a
    machine without CUDA, gloo processes on the CPU), which Accelerate picks up as it does under ``accelerate
    launch``."""

    stage: str
    cfg: Any
    name: str
    sweep_dir: Path
    cell: Cell | None = None
    labels: tuple[str, ...] = ()
    processes: int = 1

    def __call__(self) -> str:
        if self.cell is not None:
            while not init_ready(self.cell.init):  # made by a task of this sweep that has not finished yet
                time.sleep(POLL_SECONDS)
        cfg = replace(self.cfg, resume=run_started(Path(self.cfg.output_dir)))
        if self.processes == 1:
            run_unless_finished(self.stage, cfg, None)
        elif not run_is_finished(Path(cfg.output_dir), cfg.train.epochs):  # a requeued task may find it done
            run_in_processes(self.stage, cfg, self.processes, self.sweep_dir / TASK_FOLDER)
        if self.cell is not None:
            write_cell_record(self.cell, self.sweep_dir)
            collect_results(self.sweep_dir, list(self.labels))
        return str(cfg.output_dir)

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on preemption or timeout (its Checkpointable protocol): requeue the same task, which
        resumes the run from the last state it saved."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)


def run_in_processes(stage: str, cfg, processes: int, folder: Path) -> None:
    """Run a stage as ``processes`` processes on this node (torchrun, a free rendezvous port per run)."""
    import torch

    key = hashlib.sha1(str(cfg.output_dir).encode()).hexdigest()[:10]  # one file per run folder
    config = folder / "configs" / f"{stage}-{key}.yaml"
    atomic_write_text(config, yaml.safe_dump(to_dict(cfg), sort_keys=False))
    env = dict(os.environ)
    if not torch.cuda.is_available():
        env["ACCELERATE_USE_CPU"] = "1"
        print(f"no GPU visible: running {cfg.output_dir} as {processes} CPU processes", flush=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", STAGES[stage].module, "-c", str(config)]
    result = subprocess.run(command, env=env)
    if result.returncode != 0:
        raise SimsegError(f"{stage} run {cfg.output_dir} failed in one of its {processes} processes (exit "
                          f"{result.returncode}): see this task's log")


def load_submitit():
    try:
        import submitit
    except ImportError:
        raise SimsegError("this launcher needs submitit: pip install 'simseg[cluster]' (or pip install submitit)"
                          ) from None
    return submitit


def claim_sweep_folder(sweep_dir: Path) -> dict:
    """``launch.json`` of ``sweep_dir``, created for this user; a folder another user's sweep owns is refused."""
    path, user = sweep_dir / RECORD, getpass.getuser()
    record = json.loads(path.read_text()) if path.is_file() else {"owner": user, "submissions": []}
    if record.get("owner") != user:
        raise SimsegError(f"{sweep_dir} belongs to a sweep of user '{record.get('owner')}' (see {path}): choose "
                          f"another --output-dir, or ask them to share results instead of submitting into it")
    return record


def active_jobs(record: dict, sweep_dir: Path, cluster: str) -> dict[str, Any]:
    """{task name: job} of the latest submissions' tasks that SLURM still has queued or running, so a rerun
    follows them instead of submitting them twice."""
    if cluster != SLURM or not record["submissions"]:
        return {}
    submitit = load_submitit()
    latest: dict[str, str] = {}
    for submission in record["submissions"]:
        latest.update(submission["jobs"])
    jobs = {name: submitit.SlurmJob(folder=sweep_dir / TASK_FOLDER / "%j", job_id=job_id)
            for name, job_id in latest.items()}
    return {name: job for name, job in jobs.items() if not job.done()}


def slurm_executor(folder: Path, options: LauncherConfig, cluster: str, name: str, dependency: str | None = None):
    """A submitit executor with the launcher's resources; ``cluster`` is ``slurm`` (or submitit's ``local`` and
    ``debug`` executors, for tests)."""
    submitit = load_submitit()
    try:
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster,
                                         slurm_max_num_timeout=options.max_requeues,
                                         local_max_num_timeout=options.max_requeues)
    except RuntimeError as err:  # submitit's 'Could not detect "srun"'
        raise SimsegError(f"--launcher slurm found no SLURM here ({err}): run it on the cluster's login node, or "
                          f"use --shard i/n under another scheduler") from None
    slurm = {"slurm_partition": options.partition, "slurm_array_parallelism": options.array_parallelism,
             "slurm_account": options.account, "slurm_qos": options.qos, "slurm_constraint": options.constraint,
             "slurm_additional_parameters": {"dependency": dependency} if dependency else None}
    executor.update_parameters(name=name, timeout_min=options.minutes(), nodes=1, tasks_per_node=1,
                               gpus_per_node=options.gpus_per_cell, cpus_per_task=options.cpus_per_cell,
                               mem_gb=options.mem_gb, **{k: v for k, v in slurm.items() if v is not None})
    return executor


def submit(executor, tasks: list[StageTask]) -> list:
    """Submit ``tasks`` as one job array (a plain job for one task); sbatch's refusal becomes one line."""
    from submitit.core.utils import FailedJobError

    try:
        return executor.submit_array(tasks)
    except FailedJobError as err:  # sbatch refused: a wrong partition, account, time limit or quota
        said = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise SimsegError(f"sbatch refused the job ({said[-1] if said else 'no reason given'}): check --partition, "
                          f"--time and the other resources") from None


def launch_slurm(sweep_dir: Path, pretraining: list[StageTask], cells: list[StageTask], options: LauncherConfig,
                 wait: bool, cluster: str = SLURM) -> dict[str, str]:
    """Submit the unfinished runs as job arrays; returns {task name: job id}. With ``wait``, follow them to the end.

    Tasks an earlier submission still has queued or running are followed, not submitted again."""
    record = claim_sweep_folder(sweep_dir)
    folder = sweep_dir / TASK_FOLDER
    jobs = active_jobs(record, sweep_dir, cluster)
    if jobs:
        print(f"sweep: {len(jobs)} tasks of an earlier submission are still queued or running: not submitted again",
              flush=True)
    pretraining = [task for task in pretraining if task.name not in jobs]
    cells = [task for task in cells if task.name not in jobs]
    new: dict[str, Any] = {}
    if pretraining:
        pre_jobs = submit(slurm_executor(folder, options, cluster, "simseg-pretrain"), pretraining)
        new.update({task.name: job for task, job in zip(pretraining, pre_jobs)})
        if cluster != SLURM:  # submitit's local executors know no job dependencies: wait for the pretraining here
            follow(dict(new), sweep_dir)
    if cells:
        # The cells wait for every pretraining task still to come, new or from an earlier submission.
        before = [job.job_id for name, job in {**jobs, **new}.items() if name.startswith(PRETRAIN_PREFIX)]
        dependency = ("afterok:" + ":".join(before)) if before and cluster == SLURM else None
        cell_jobs = submit(slurm_executor(folder, options, cluster, "simseg-cells", dependency), cells)
        new.update({task.name: job for task, job in zip(cells, cell_jobs)})
    if new:
        record["submissions"].append({"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "cluster": cluster,
                                      "jobs": {name: job.job_id for name, job in new.items()}})
        atomic_write_json(sweep_dir / RECORD, record)
        arrays = sorted({job.job_id.split("_")[0] for job in new.values()})
        print(f"sweep: submitted {len(pretraining)} pretraining and {len(cells)} cell tasks as job(s) "
              f"{', '.join(arrays)}; logs in {folder}", flush=True)
    jobs.update(new)
    if wait:
        follow(jobs, sweep_dir)
    elif jobs:
        print("sweep: follow them with the same command plus --wait (it submits nothing that is finished, queued "
              "or running), or with squeue --me", flush=True)
    return {name: job.job_id for name, job in jobs.items()}


def launch_local_gpus(sweep_dir: Path, pretraining: list[StageTask], cells: list[StageTask], options: LauncherConfig,
                      devices: list[int]) -> None:
    """Run the tasks on this machine's GPUs, ``options.gpus_per_cell`` each, as many at once as there are GPUs for,
    one process (group) per task; pretraining first."""
    submitit = load_submitit()
    per_cell = options.gpus_per_cell
    if per_cell < 1 or not devices:
        raise SimsegError(f"--gpus-per-cell runs one process per cell on this machine's GPUs and it shows "
                          f"{len(devices)} (asked for {per_cell} per cell): drop --gpus-per-cell to run the cells here "
                          f"one after another, or use --launcher slurm")
    slots = [devices[i:i + per_cell] for i in range(0, len(devices) - per_cell + 1, per_cell)]
    if not slots:
        raise SimsegError(f"--gpus-per-cell {per_cell} needs at least {per_cell} GPUs and this machine shows "
                          f"{len(devices)}: lower --gpus-per-cell to {len(devices)} or use --launcher slurm")
    folder = sweep_dir / TASK_FOLDER
    claim_sweep_folder(sweep_dir)
    started, total = 0, len(pretraining) + len(cells)
    for group in (pretraining, cells):
        queue, running, jobs = list(group), {}, {}
        while queue or running:
            for slot in [s for s in range(len(slots)) if s not in running][:len(queue)]:
                task = queue.pop(0)
                executor = submitit.LocalExecutor(folder=folder / "%j", max_num_timeout=options.max_requeues)
                executor.update_parameters(timeout_min=options.minutes(), gpus_per_node=per_cell,
                                           visible_gpus=slots[slot])
                running[slot] = (task.name, executor.submit(task))
                jobs[task.name] = running[slot][1]
                started += 1
                print(f"sweep: [{started}/{total}] {task.name} on GPU {','.join(map(str, slots[slot]))}; log in "
                      f"{folder / running[slot][1].job_id}", flush=True)
            for slot, (_, job) in list(running.items()):
                if job.done():
                    del running[slot]
            if running:
                time.sleep(0.5)
        follow(jobs, sweep_dir)


def follow(jobs: dict[str, Any], sweep_dir: Path) -> None:
    """Print progress (done / running / failed, ETA) until every job has ended; a failed task is reported with its
    log's last line and does not stop the others. Raises, at the end, if any failed."""
    started, reported, failed, last = time.perf_counter(), set(), {}, None
    # submitit's debug executor runs a job in this process when asked for its outcome, and tells it only once
    ran_here = {name: job.exception() for name, job in jobs.items() if type(job).__name__ == "DebugJob"}
    while True:
        done = {name for name, job in jobs.items() if job.done()}
        for name in sorted(done - reported):
            error = ran_here[name] if name in ran_here else jobs[name].exception()
            if error is not None:
                failed[name] = last_log_line(jobs[name]) or type(error).__name__
                print(f"sweep: {name} failed: {failed[name]}", flush=True)
        reported = done
        finished = len(done) - len(failed)
        line = f"sweep: {finished} done, {len(jobs) - len(done)} running or queued, {len(failed)} failed"
        if finished and len(done) < len(jobs):
            elapsed = time.perf_counter() - started
            line += f"; ETA {format_seconds(elapsed / len(done) * (len(jobs) - len(done)))}"
        if line != last:
            print(line, flush=True)
            last = line
        if len(done) == len(jobs):
            break
        time.sleep(POLL_SECONDS)
    if failed:
        raise SimsegError(f"{len(failed)} of {len(jobs)} tasks failed ({', '.join(sorted(failed))}); their logs are "
                          f"in {sweep_dir / TASK_FOLDER}; fix the cause and rerun the same command to retry them")


def last_log_line(job) -> str:
    """The last non-empty line a task wrote to stderr (else stdout): usually the error that ended it."""
    for text in (job.stderr(), job.stdout()):
        lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if lines:
            name, sep, message = lines[-1].partition(": ")
            return message if sep and name.endswith("SimsegError") else lines[-1]
    return ""
