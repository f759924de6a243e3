"""What runs only on a GPU: skipped without CUDA, run by benchmarks/gpu_check.sh on a lent machine."""

from __future__ import annotations

import json

import pytest
import torch

from simseg.errors import SimsegError

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
TINY_GPU = ["model.depth=2", "data.synthetic_size=96", "data.val_size=8", "data.num_workers=2", "train.epochs=1",
            "train.batch_size=16", "log.progress=false", "log.grid_rows=2"]


@pytest.mark.slow
def test_pretraining_on_the_gpu_with_bf16_compiled_and_the_cache_on_the_device(tmp_path):
    import stages.pretrain as pretrain_stage
    from simseg.config.loader import load_config
    from simseg.config.pretrain import PretrainConfig, PretrainDataConfig
    from simseg.data.cache_build import build_cache
    from simseg.data.image_cache import CacheSpec
    from simseg.data.unlabelled import open_image_source

    source = open_image_source(PretrainDataConfig(source="synthetic", synthetic_size=96), "pretrain")
    cache = build_cache(source, tmp_path / "cache", CacheSpec(160), progress=False)
    for compile_ in ("false", "true"):
        out = tmp_path / f"run-{compile_}"
        pretrain_stage.main(load_config(PretrainConfig, None, [
            *TINY_GPU, f"data.source={cache}", "train.mixed_precision=bf16", f"train.compile={compile_}",
            f"output_dir={out}"]))
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["pipeline"] == "batched" and metrics["peak_memory_mib"] > 0
        assert torch.isfinite(torch.tensor(metrics["final_train_loss"]))


@pytest.mark.slow
def test_segmentation_on_the_gpu_with_bf16(tmp_path):
    import stages.segment as segment_stage
    from simseg.config.loader import load_config
    from simseg.config.segment import SegmentConfig

    out = tmp_path / "seg"
    segment_stage.main(load_config(SegmentConfig, None, [
        "model.depth=2", "data.subset=64", "data.test_size=16", "data.num_workers=2", "train.epochs=1",
        "train.batch_size=16", "train.mixed_precision=bf16", "log.progress=false", "log.examples=2",
        f"output_dir={out}"]))
    assert 0 <= json.loads((out / "metrics.json").read_text())["miou"] <= 1


def test_a_real_cuda_out_of_memory_is_one_line():
    from simseg.training.engine import out_of_memory_is_one_line

    free, _ = torch.cuda.mem_get_info()
    with pytest.raises(SimsegError, match="lower train.batch_size"):
        with out_of_memory_is_one_line("in epoch 0 at step 0", 1 << 20):
            torch.empty(int(free * 2), dtype=torch.uint8, device="cuda")  # twice what is free


def test_fused_adamw_steps_on_the_gpu():
    from simseg.training.optim import build_adamw

    model = torch.nn.Linear(8, 8).cuda()
    optimizer = build_adamw(model, 1e-3, 0.05, fused=True)
    model(torch.randn(4, 8, device="cuda")).sum().backward()
    optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
