"""The shared training loop's bookkeeping: the share of an epoch spent waiting for data."""

from __future__ import annotations

import time

import pytest
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, Dataset

from simseg.training.engine import reset_accelerate_state, speed_summary, train_one_epoch


class Numbers(Dataset):
    """Eight one-number items, each ``delay`` seconds to load."""

    def __init__(self, delay: float):
        self.delay = delay

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> torch.Tensor:
        time.sleep(self.delay)
        return torch.tensor([float(i)])


class Regression(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": self.weight(x).square().mean()}


def one_epoch(delay: float) -> dict:
    reset_accelerate_state()
    accelerator = Accelerator(cpu=True)
    model = Regression()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model, optimizer, loader = accelerator.prepare(model, optimizer, DataLoader(Numbers(delay), batch_size=2))
    stats, step = train_one_epoch(model, loader, optimizer, accelerator, epoch=0, step=0, lr_at=lambda _: 0.01,
                                  make_inputs=lambda batch: {"x": batch}, grad_clip=1.0, progress=False)
    assert step == 4 and stats["images"] == 8
    return stats


def test_loader_wait_is_the_share_of_the_epoch_spent_loading():
    slow = one_epoch(delay=0.05)  # 0.1 s of loading per batch against a step of well under a millisecond
    assert slow["loader_wait"] > 0.8 and slow["seconds"] >= 0.4
    fast = one_epoch(delay=0.0)
    assert 0 <= fast["loader_wait"] < slow["loader_wait"]
    assert "waited for data" in speed_summary(slow)


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
    model, optimizer, loader = accelerator.prepare(model, optimizer, DataLoader(Numbers(0.0), batch_size=2))
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
