"""SAM: the perturbed step equals a hand computation, the interval skips steps, ASAM scales by the weights."""

import pytest
import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from simseg.training.engine import reset_accelerate_state, train_one_epoch
from simseg.training.sam import perturb, restore


class Quadratic(nn.Module):
    """loss = sum((w * x - y)^2) / n, with a forward counter."""

    def __init__(self, w: list[float]):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))
        self.forwards = 0

    def forward(self, x, y):
        self.forwards += 1
        return {"loss": ((self.w * x - y) ** 2).sum(1).mean()}


def grad(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d/dw of mean_i sum_j (w_j x_ij - y_ij)^2, by hand."""
    return (2 * (w * x - y) * x).mean(0)


def run(sam, steps: int = 1, w=(1.0, -2.0)):
    reset_accelerate_state()
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    x, y = torch.randn(steps * 4, 2), torch.randn(steps * 4, 2)
    model = Quadratic(list(w))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer, loader = accelerator.prepare(model, optimizer, DataLoader(TensorDataset(x, y), batch_size=4))
    train_one_epoch(model, loader, optimizer, accelerator, epoch=0, step=0, lr_at=lambda _: 0.1,
                    make_inputs=lambda b: {"x": b[0], "y": b[1]}, grad_clip=0, progress=False, sam=sam)
    return model, x, y


def test_a_sam_step_takes_the_gradient_at_the_perturbed_weights():
    rho = 0.3
    model, x, y = run((rho, 1, False))
    w = torch.tensor([1.0, -2.0])
    g = grad(w, x, y)
    perturbed = w + rho * g / g.norm()
    expected = w - 0.1 * grad(perturbed, x, y)  # SGD from w (restored) with the gradient at w + e
    assert torch.allclose(model.w.detach(), expected, atol=1e-6)
    assert not torch.allclose(model.w.detach(), w - 0.1 * g, atol=1e-4)  # not a plain step
    assert model.forwards == 2


def test_adaptive_sam_scales_the_ascent_by_the_weights():
    rho = 0.5
    model, x, y = run((rho, 1, True))
    w = torch.tensor([1.0, -2.0])
    g = grad(w, x, y)
    perturbed = w + rho * w**2 * g / (w.abs() * g).norm()
    assert torch.allclose(model.w.detach(), w - 0.1 * grad(perturbed, x, y), atol=1e-6)


def test_the_interval_takes_sam_on_every_kth_step_only():
    model, _, _ = run((0.1, 2, False), steps=4)
    assert model.forwards == 4 + 2  # steps 0 and 2 took a second pass, steps 1 and 3 did not


def test_restore_puts_the_weights_back_and_skips_parameters_without_gradients():
    a, b = nn.Parameter(torch.tensor([3.0, 4.0])), nn.Parameter(torch.tensor([1.0]))
    a.grad = torch.tensor([3.0, 4.0])
    moves = perturb([a, b], rho=0.5)
    assert torch.allclose(a.detach(), torch.tensor([3.3, 4.4])) and moves[1] is None  # e = 0.5 * g / 5
    restore([a, b], moves)
    assert torch.allclose(a.detach(), torch.tensor([3.0, 4.0])) and b.item() == 1.0


def test_sam_config_keys():
    from simseg.config.segment import SegTrainConfig
    from simseg.errors import SimsegError

    assert SegTrainConfig().sam() is None
    assert SegTrainConfig(sam_rho=0.3, sam_interval=2).sam() == (0.3, 2, False)
    with pytest.raises(SimsegError, match="train.sam_interval must be >= 1"):
        SegTrainConfig(sam_rho=0.3, sam_interval=0)
