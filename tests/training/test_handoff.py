import errno
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from simseg.config.loader import to_dict
from simseg.config.sections import ModelConfig
from simseg.errors import SimsegError
from simseg.files import atomic_write, atomic_write_text
from simseg.models.vit import build_encoder
from simseg.training.handoff import export_encoder, load_encoder
from simseg.training.weight_files import save_weights


def test_export_then_load_is_lossless(tmp_path):
    cfg = ModelConfig(depth=2, drop_path_rate=0.1)
    encoder = build_encoder(cfg)
    export_encoder(tmp_path / "encoder.safetensors", encoder, cfg)
    loaded, loaded_cfg = load_encoder(tmp_path, expected=ModelConfig(depth=2))  # a run folder works too
    assert loaded_cfg.architecture() == cfg.architecture() and loaded_cfg.drop_path_rate == 0.1
    for (name, a), (_, b) in zip(encoder.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    x = torch.randn(2, 3, 128, 128)
    assert torch.equal(encoder.eval()(x), loaded.eval()(x))


def test_architecture_mismatch_names_the_fields(tmp_path):
    cfg = ModelConfig(depth=2)
    export_encoder(tmp_path / "encoder.safetensors", build_encoder(cfg), cfg)
    expected = r"another architecture \(embed_dim: export 128, config 64; depth: export 2, config 12; num_heads"
    with pytest.raises(SimsegError, match=expected) as err:
        load_encoder(tmp_path / "encoder.safetensors", expected=ModelConfig(embed_dim=64, num_heads=4))
    assert "\n" not in str(err.value)


def test_files_that_are_not_exports_are_refused(tmp_path):
    with pytest.raises(SimsegError, match="does not exist"):
        load_encoder(tmp_path / "nothing.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(SimsegError, match="not a readable safetensors file"):
        load_encoder(tmp_path / "garbage.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(SimsegError, match="not a simseg encoder export"):
        load_encoder(tmp_path / "foreign.safetensors")


def test_damaged_export_is_refused(tmp_path):
    cfg = ModelConfig(depth=2)
    encoder = build_encoder(cfg)
    state = {k: v for k, v in encoder.state_dict().items() if not k.startswith("blocks.1.")}
    metadata = {"format": "simseg-encoder/1", "model": json.dumps(to_dict(cfg))}
    save_weights(tmp_path / "encoder.safetensors", state, metadata)
    with pytest.raises(SimsegError, match="does not match its recorded architecture"):
        load_encoder(tmp_path)


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_text(path, "old")

    def half_then_crash(file):
        file.write(b"new but incomplete")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(path, half_then_crash)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["metrics.json"]


def test_disk_full_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "encoder.safetensors"
    atomic_write_text(path, "complete")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(SimsegError, match=r"disk full while writing .*encoder.safetensors: free space"):
        atomic_write_text(path, "x" * 1000)
    assert path.read_text() == "complete" and os.listdir(tmp_path) == ["encoder.safetensors"]


def test_atomic_writes_get_the_mode_a_plain_open_would(tmp_path):
    import os

    from simseg.files import atomic_write_text

    atomic_write_text(tmp_path / "atomic.txt", "x")
    (tmp_path / "plain.txt").write_text("x")
    assert os.stat(tmp_path / "atomic.txt").st_mode == os.stat(tmp_path / "plain.txt").st_mode
