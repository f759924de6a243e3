"""``train.compile=true`` compiles each stage's training step once, with static shapes: no recompile across epochs,
evaluation, grids, examples, the final figures and a resume, read from torch's own compile records."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch._dynamo.utils as dynamo_utils
import yaml

from simseg.config.classify import ClassifyConfig
from simseg.config.loader import load_config
from simseg.config.segment import SegmentConfig
from simseg.errors import SimsegError
from simseg.training import engine
from simseg.training.engine import compile_cache_dir
from simseg.training.weight_files import read_weights
from stages import classify as classify_stage
from stages import pretrain as pretrain_stage
from stages import segment as segment_stage
from tests.helpers import interrupted_then_resumed
from tests.stages.test_classify import CLS_TINY
from tests.stages.test_segment import SEG_TINY

# One 1-block encoder at 32 px for every stage; the training sets leave a short last batch (20 = 2 x 8 + 4 and
# 12 = 8 + 4); the pretraining grid, the segmentation validation split and every test set run every epoch. No colour
# jitter: its compiled kernel sees the same training batches, and inductor's build of it would double the test's time.
SMALL = ["model.depth=1", "model.img_size=32", "model.patch_size=8", "train.epochs=3", "train.compile=true",
         "aug.color_jitter_prob=0"]
PRETRAIN = [*SMALL, "mask.unit=8", "data.synthetic_size=22", "data.val_size=2"]
SEGMENT = [*SMALL, "data.subset=12", "data.val_size=4", "data.test_size=6"]
CLASSIFY = [*SMALL, "data.subset=12", "data.test_size=6"]


@pytest.fixture
def compile_records(monkeypatch, tmp_path):
    """Fresh Dynamo caches and records for the test, and the compile cache folder in ``tmp_path``. The stages
    compile with ``aot_eager``: a recompile is Dynamo's guards failing, decided before any backend runs, and
    inductor's C++ builds would take minutes on a CPU (benchmarks/compile_time.py times inductor itself)."""
    monkeypatch.setattr(engine, "COMPILE_BACKEND", "aot_eager")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "unused"))  # restored after the stage sets it
    torch._dynamo.reset()
    dynamo_utils.clear_compilation_metrics()
    yield
    torch._dynamo.reset()


def compiled_frames() -> list[str]:
    """Every compile of the process so far, as 'file:function compile_id' (a recompile's id ends /1, /2, ...)."""
    return [f"{Path(m.co_filename or '').name}:{m.co_name} {m.compile_id}"
            for m in dynamo_utils.get_compilation_metrics()]


def recompiles() -> list[str]:
    """Each recompile with the guard that failed, as TORCH_LOGS=recompiles prints it."""
    return [f"{Path(m.co_filename or '').name}:{m.co_name}: {m.recompile_reason}"
            for m in dynamo_utils.get_compilation_metrics() if m.recompile_reason]


@pytest.mark.slow
def test_every_training_step_compiles_once_across_epochs_evaluation_and_a_resume(tiny_config, tmp_path,
                                                                                 monkeypatch, compile_records):
    def seg_config(*overrides, output_dir):
        return load_config(SegmentConfig, None, [*SEG_TINY, f"output_dir={output_dir}", *overrides])

    def cls_config(*overrides, output_dir):
        return load_config(ClassifyConfig, None, [*CLS_TINY, f"output_dir={output_dir}", *overrides])

    runs = [(pretrain_stage, tiny_config, [*PRETRAIN, "method=simmim"], "simmim.py:forward"),
            (pretrain_stage, tiny_config, [*PRETRAIN, "method=mae"], "mae.py:forward"),
            (segment_stage, seg_config, SEGMENT, "segmentation.py:forward"),
            (classify_stage, cls_config, CLASSIFY, "classifier.py:forward")]
    cache = tmp_path / "inductor"
    for stage, make_config, overrides, step in runs:
        name = step.split(".")[0]
        # Epoch 0, killed once its state is saved, then epochs 1-2 resumed in this process: the resumed model is
        # another module of the same code, which must find the graph already compiled.
        run = interrupted_then_resumed(stage, make_config, [*overrides, f"train.compile_cache_dir={cache}"],
                                       tmp_path / name, monkeypatch)
        assert recompiles() == [], f"{name} recompiled"
        compiles = [f for f in compiled_frames() if f.startswith(step)]
        assert len(compiles) == 1, f"{name}'s step should compile once, not {compiles}; all: {compiled_frames()}"
        recorded = yaml.safe_load((run / "config.yaml").read_text())["resolved"]["train"]
        assert recorded == {"compile_cache_dir": str(cache)}
        assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
        # The exports hold the module's own names, not those of torch.compile's wrapper (_orig_mod.*).
        assert not [key for key in read_weights(run / "model.safetensors")[0] if key.startswith("_orig_mod")]


def test_the_compile_cache_folder_is_the_configs_else_the_users_else_simsegs_own(monkeypatch, tmp_path):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    def folder(*overrides):
        return compile_cache_dir(load_config(SegmentConfig, None, ["train.compile=true", *overrides]))

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())  # what importing torch._dynamo leaves
    assert folder() == tmp_path / "xdg" / "simseg" / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "users"))
    assert folder() == tmp_path / "users"
    assert folder(f"train.compile_cache_dir={tmp_path / 'given'}") == tmp_path / "given"


def test_a_compiled_run_refuses_a_training_set_smaller_than_one_batch(tiny_config):
    with pytest.raises(SimsegError, match=r"^6 training items do not fill one batch of train.batch_size=8 .*"
                                          r"train.compile=true trains on full batches only"):
        pretrain_stage.main(tiny_config("train.compile=true", "data.synthetic_size=10"))
