"""Where a sweep's cells run: the launcher's config (``simseg sweep --launcher slurm``, ``--gpus-per-cell``), from
flags or a YAML file (``--launcher-config FILE``, these keys); flags win over the file."""

from __future__ import annotations

import dataclasses
import re

from simseg.config.loader import check

_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?$")


@dataclasses.dataclass
class LauncherConfig:
    partition: str | None = None
    """SLURM partition; null = the cluster's default."""
    time: str = "4:00:00"
    """Time limit of one cell's task: ``MINUTES``, ``H:MM:SS`` or ``D-H:MM:SS``. A task that reaches it is requeued
    and resumes its cell from the last epoch it saved."""
    gpus_per_cell: int = 1
    """GPUs of one cell; with more than one the cell runs as that many processes (torchrun inside the task)."""
    cpus_per_cell: int = 8
    """CPU cores of one cell (its data loaders)."""
    mem_gb: int = 32
    """Memory of one cell, GB."""
    array_parallelism: int = 64
    """Cells of the job array that may run at once."""
    account: str | None = None
    """SLURM ``--account`` the cells are charged to; null = your default account."""
    qos: str | None = None
    """SLURM ``--qos`` (quality of service); null = the partition's default."""
    constraint: str | None = None
    """SLURM ``--constraint``, e.g. ``h100``."""
    max_requeues: int = 3
    """How often a cell's task is requeued after preemption or its time limit before it counts as failed."""

    def __post_init__(self):
        check(self.partition is None or re.fullmatch(r"[\w.\-,]+", self.partition) is not None,
              f"--partition '{self.partition}' is not a SLURM partition name: letters, digits, '_', '-', '.' "
              f"(',' between several)")
        self.minutes()
        check(self.gpus_per_cell >= 0, "--gpus-per-cell must be >= 0")
        check(self.cpus_per_cell >= 1, "--cpus-per-cell must be >= 1")
        check(self.mem_gb >= 1, "--mem-gb must be >= 1")
        check(self.array_parallelism >= 1, "--array-parallelism must be >= 1")
        check(self.max_requeues >= 0, "--max-requeues must be >= 0")

    def minutes(self) -> int:
        """``time`` in minutes (SLURM's formats: ``MINUTES``, ``MM:SS``, ``H:MM:SS``, ``D-H``, ``D-H:MM:SS``)."""
        match = _TIME.match(str(self.time).strip())
        check(match is not None, f"--time '{self.time}' is not a time limit: give MINUTES, H:MM:SS or D-H:MM:SS")
        days, first, second, third = match.groups()
        if days is not None:  # D-H[:MM[:SS]]
            total = int(days) * 1440 + int(first) * 60 + int(second or 0) + (int(third or 0) > 0)
        elif third is not None:  # H:MM:SS
            total = int(first) * 60 + int(second) + (int(third) > 0)
        elif second is not None:  # MM:SS
            total = int(first) + (int(second) > 0)
        else:
            total = int(first)
        check(total >= 1, f"--time '{self.time}' must be at least one minute")
        return total
