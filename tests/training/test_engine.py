"""The shared training loop: the share of an epoch spent waiting for data, the EMA rhythm, one-line out-of-memory
errors, a non-finite loss named with its step, and messages that stand on their own line beside a progress bar."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import time
import warnings

import pytest
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from simseg.experiments.stage_entry import run_main
from simseg.training.engine import reset_accelerate_state, speed_summary, train_one_epoch


class Clock:
    """A stand-in for time.perf_counter that moves only when the test says: loading and steps take what they are
    told to take, whatever else the machine is doing."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Numbers(Dataset):
    """Eight one-number items, each ``delay`` (clock) seconds to load."""

    def __init__(self, delay: float = 0.0, clock: Clock | None = None):
        self.delay, self.clock = delay, clock

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.clock is not None:
            self.clock.now += self.delay
        return torch.tensor([float(i)])


class Regression(nn.Module):
    """``loss = (w x + b)^2``; each forward pass takes ``cost`` clock seconds; ``poison`` makes step 2's loss nan."""

    def __init__(self, cost: float = 0.0, clock: Clock | None = None, poison: bool = False):
        super().__init__()
        self.weight, self.cost, self.clock, self.poison, self.calls = nn.Linear(1, 1), cost, clock, poison, 0

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.clock is not None:
            self.clock.now += self.cost
        self.calls += 1
        loss = self.weight(x).square().mean()
        return {"loss": loss * float("nan") if self.poison and self.calls == 3 else loss}


def one_epoch(dataset: Dataset, model: nn.Module, progress: bool = False, batch_size: int = 2) -> dict:
    reset_accelerate_state()
    accelerator = Accelerator(cpu=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model, optimizer, loader = accelerator.prepare(model, optimizer, DataLoader(dataset, batch_size=batch_size))
    stats, step = train_one_epoch(model, loader, optimizer, accelerator, epoch=0, step=0, lr_at=lambda _: 0.01,
                                  make_inputs=lambda batch: {"x": batch}, grad_clip=1.0, progress=progress)
    assert step == 8 // batch_size and stats["images"] == 8
    return stats


def test_loader_wait_is_the_share_of_the_epoch_spent_loading(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(time, "perf_counter", clock)
    # 4 batches of 2 items at 1 s an item, each step 0.5 s: 8 s of 10 waiting for data
    stats = one_epoch(Numbers(1.0, clock), Regression(0.5, clock))
    assert stats["seconds"] == 10.0 and stats["loader_wait"] == 0.8 and stats["images_per_s"] == 0.8
    assert one_epoch(Numbers(0.0, clock), Regression(0.5, clock))["loader_wait"] == 0.0
    assert "waited for data 80% of the time" in speed_summary(stats)


def test_a_non_finite_loss_stops_the_epoch_naming_its_step():
    from simseg.errors import SimsegError

    with pytest.raises(SimsegError, match=r"training loss became nan in epoch 0 at step 2: lower train.lr"):
        one_epoch(Numbers(), Regression(poison=True), batch_size=1)


def training_that_fails(failure: str):
    """``run_main``'s argument: an epoch with a progress bar on screen in which ``failure`` happens at step 2 (a
    warning, then a nan loss; or Ctrl-C)."""
    class Failing(Regression):
        def forward(self, x):
            if self.calls == 2:
                warnings.warn("a warning printed mid-epoch", UserWarning, stacklevel=1)
                if failure == "interrupt":
                    raise KeyboardInterrupt
            return super().forward(x)

    return lambda argv: one_epoch(Numbers(), Failing(poison=failure == "nan"), progress=True, batch_size=1)


def rendered(text: str) -> list[str]:
    """The lines a terminal shows for ``text``: a carriage return moves back to the line's start, and what follows
    overwrites what was there."""
    lines = []
    for raw in text.replace("\r\n", "\n").split("\n"):
        screen: list[str] = []
        for part in raw.split("\r"):
            screen[:len(part)] = part
        lines.append("".join(screen).rstrip())
    return lines


@pytest.mark.parametrize("failure, message", [("nan", "simseg: error: training loss became nan in epoch 0 at step 2"),
                                              ("interrupt", "simseg: interrupted; rerun the same command")])
def test_a_message_raised_mid_epoch_starts_a_line_of_its_own_in_a_log_file(capfd, failure, message):
    with pytest.raises(SystemExit):
        run_main(training_that_fails(failure), [])
    err = capfd.readouterr().err
    assert "epoch 0:" in err, "the bar was on screen"
    lines = err.split("\n")  # a log file: no terminal to honour carriage returns
    assert any(line.startswith(message) for line in lines), err
    assert any("UserWarning: a warning printed mid-epoch" in line for line in lines), err
    assert not any("epoch 0:" in line and ("simseg:" in line or "UserWarning" in line) for line in lines), err


@pytest.mark.slow  # a training process under a pseudo-terminal: seconds, left to the full suite
def test_a_message_raised_mid_epoch_stands_alone_on_a_terminal():
    script = (f"import sys; sys.path.insert(0, {os.getcwd()!r}); from tests.training.test_engine import *; "
              "run_main(training_that_fails('nan'), [])")
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # 40 rows, 120 columns
    process = subprocess.Popen([sys.executable, "-c", script], stdin=child, stdout=child, stderr=child,
                               cwd=os.getcwd(), close_fds=True)
    os.close(child)
    output = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    assert process.wait(timeout=60) == 2
    screen = rendered(output.decode(errors="replace"))
    error = [line for line in screen if "simseg: error:" in line]
    assert error and error[0].startswith("simseg: error: training loss became nan"), screen
    assert any("UserWarning: a warning printed mid-epoch" in line for line in screen), screen
    assert not any("epoch 0:" in line and ("UserWarning" in line or "simseg:" in line) for line in screen), screen


def test_out_of_memory_becomes_one_line_naming_the_batch_size():
    from simseg.errors import SimsegError
    from simseg.training.engine import out_of_memory_is_one_line

    with pytest.raises(SimsegError) as err:
        with out_of_memory_is_one_line("in epoch 3 at step 40", 256):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert "in epoch 3 at step 40 with 256 images per process" in str(err.value)
    assert "train.batch_size=128" in str(err.value) and "\n" not in str(err.value)


def test_ema_updates_every_interval_and_half_life_gives_the_documented_decay():
    from timm.utils import ModelEmaV3

    from simseg.config.segment import SegTrainConfig

    cfg = SegTrainConfig(ema_half_life=1000, ema_interval=10)
    assert cfg.ema_decay() == pytest.approx(0.5 ** (10 / 1000))
    assert cfg.ema_decay() ** (1000 / 10) == pytest.approx(0.5)  # after 1,000 batches a weight's share halved
    assert SegTrainConfig(ema=0.999).ema_decay() == 0.999 and SegTrainConfig().ema_decay() == 0

    reset_accelerate_state()
    accelerator = Accelerator(cpu=True)
    model = Regression()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer, loader = accelerator.prepare(model, optimizer, DataLoader(Numbers(), batch_size=2))
    ema = ModelEmaV3(model, decay=0.5)
    updates = []
    real_update = ema.update
    ema.update = lambda m, step: (updates.append(step), real_update(m, step=step))
    start = ema.module.weight.weight.detach().clone()
    _, step = train_one_epoch(model, loader, optimizer, accelerator, epoch=0, step=1, lr_at=lambda _: 0.1,
                              make_inputs=lambda batch: {"x": batch}, grad_clip=0, progress=False, ema=ema,
                              ema_every=3)
    assert step == 5 and updates == [3]  # steps 1..4 ran; only the 3rd (counted over the run) updated the average
    assert not torch.equal(ema.module.weight.weight, start)
