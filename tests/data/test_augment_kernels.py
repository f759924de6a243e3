"""How many ops the batched augmentation and the optimiser issue: as many for a batch of 2 as for a batch of 8 (no
loop over the images), as many for 2 layers as for 6 (no loop over the parameters), and no copy to the GPU that
waits for it. benchmarks/kernels_per_step.py counts the same for whole training steps."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from simseg.config.sections import AugConfig
from simseg.data.batch_augment import BatchAugment
from simseg.data.color_jitter import jitter_colours
from simseg.training.optim import build_adamw

# Every branch of the augmentation taken for every image: jitter with hue, rotation, blur, masks.
EVERY_BRANCH = AugConfig(color_jitter_prob=1.0, rotation=30.0, blur_prob=1.0)


def aten_ops(run, activities=(ProfilerActivity.CPU,)) -> Counter:
    """The aten ops ``run()`` calls, nested ones included, by name."""
    with profile(activities=list(activities)) as prof:
        run()
    return Counter(e.name for e in prof.events() if e.name.startswith("aten::"))


def augment_batch(batch: int, device: str = "cpu", aug: AugConfig = EVERY_BRANCH):
    """``run()`` augmenting a batch of tiny random images and masks on ``device`` (and running it once first)."""
    augment = BatchAugment.from_aug_config(aug, 8)
    images = torch.randint(0, 256, (batch, 3, 12, 12), dtype=torch.uint8, device=device)
    masks = torch.randint(0, 3, (batch, 12, 12), dtype=torch.uint8, device=device)
    sizes = torch.full((batch,), 20)
    generator = torch.Generator().manual_seed(0)

    def run():
        augment(images, sizes, sizes + 4, masks, generator)

    run()
    return run


def test_the_batched_augmentation_issues_the_same_ops_for_any_batch_size():
    small, large = aten_ops(augment_batch(2)), aten_ops(augment_batch(8))
    assert small == large, f"ops that change with the batch: {(large - small) + (small - large)}"
    assert small["aten::grid_sampler_2d"] >= 3  # crop, and the rotation of images and masks: each once per batch


def test_the_count_sees_a_loop_over_the_images():
    def per_image(batch):
        images = torch.rand(batch, 3, 8, 8)
        factors = torch.full((1,), 1.2)
        return lambda: [jitter_colours(images[i:i + 1], torch.ones(1, dtype=torch.bool), factors, factors, factors,
                                       torch.full((1,), 0.1)) for i in range(batch)]

    assert sum(aten_ops(per_image(4)).values()) > sum(aten_ops(per_image(2)).values())


class CrossDeviceCopies(TorchDispatchMode):
    """Records (source device, target device, non_blocking) of every copy between devices made inside."""

    def __init__(self):
        super().__init__()
        self.copies: list[tuple[str, str, bool]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is torch.ops.aten._to_copy.default and args[0].device != out.device:
            self.copies.append((args[0].device.type, out.device.type, bool(kwargs.get("non_blocking", False))))
        return out


def test_the_colour_jitter_sends_its_factors_without_waiting_for_the_device():
    # "meta" stands in for a GPU: a tensor there has a device other than the CPU's and no data.
    images = torch.empty(4, 3, 8, 8, device="meta")
    factors = torch.tensor([0.8, 1.0, 1.2, 0.9])
    with CrossDeviceCopies() as seen:
        jitter_colours(images, torch.tensor([True, False, True, True]), factors, factors, factors,
                       torch.tensor([0.1, 0.0, -0.1, 0.05]))
    assert seen.copies and all(non_blocking for _, _, non_blocking in seen.copies), seen.copies


def test_the_optimiser_is_fused_and_its_step_does_not_loop_over_parameters_in_python():
    def one_step(layers: int):
        model = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(layers)])
        optimizer = build_adamw(model, 1e-3, 0.05)
        model(torch.randn(2, 4)).sum().backward()
        optimizer.step()  # the state exists from here on
        return optimizer, optimizer.step

    optimizer, small = one_step(2)
    assert all(group["fused"] for group in optimizer.param_groups)

    def called_from_python(step) -> int:  # ops called by the optimiser itself, not inside another aten op
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        return sum(e.name.startswith("aten::") and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))
                   for e in prof.events())

    assert called_from_python(small) == called_from_python(one_step(6)[1])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_augmentation_never_waits_for_the_gpu():
    run = augment_batch(8, "cuda", AugConfig())  # the stages' augmentation: crops, flips, colour jitter
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run()
    waits = [e.name for e in prof.events() if e.name in ("cudaStreamSynchronize", "cudaDeviceSynchronize")]
    assert not waits
