from pathlib import Path

import pytest

from simseg.config.loader import diff_keys, flat_dict, load_config, to_dict
from simseg.config.pretrain import PretrainConfig
from simseg.errors import SimsegError

CONFIG_ROOT = Path(__file__).resolve().parents[2] / "configs"
CONFIGS = sorted(CONFIG_ROOT.rglob("*.yaml"))


def test_defaults_are_the_study_recipe():
    cfg = load_config(PretrainConfig)
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.epochs, cfg.train.grad_clip) == (1e-4, 0.05, 100, 5.0)
    assert cfg.train.milestones == [0.5, 0.85] and cfg.train.lr_decay == 0.1
    assert (cfg.mask.ratio, cfg.mask.unit) == (0.5, 16)
    assert cfg.model.architecture() == dict(img_size=128, patch_size=16, embed_dim=128, depth=12, num_heads=8,
                                            mlp_dim=512)


def test_yaml_diff_then_overrides(tmp_path):
    path = tmp_path / "diff.yaml"
    path.write_text("train:\n  epochs: 7\n  lr: 2.0e-4\ndata:\n  subset: 1k\n")
    cfg = load_config(PretrainConfig, path, ["train.lr=1e-3", "mask.unit=32", "train.milestones=[3,5]",
                                             "aug.crop_scale=[0.5,1]", "resume=true", "data.subset=45k"])
    assert cfg.train.epochs == 7 and cfg.train.lr == 1e-3  # command line wins over the file
    assert cfg.mask.unit == 32 and cfg.train.milestones == [3.0, 5.0] and cfg.aug.crop_scale == (0.5, 1.0)
    assert cfg.resume is True and cfg.data.subset == "45k"


def test_yes_no_on_off_stay_strings_for_choices_and_still_work_for_booleans(tmp_path):
    # YAML 1.1 reads `no` as False, which would make the documented `train.mixed_precision=no` an error.
    cfg = load_config(PretrainConfig, None, ["train.mixed_precision=no", "train.compile=no", "log.progress=off"])
    assert cfg.train.mixed_precision == "no" and cfg.train.compile is False and cfg.log.progress is False
    diff = tmp_path / "diff.yaml"
    diff.write_text("train:\n  mixed_precision: no\n  compile: yes\n")
    cfg = load_config(PretrainConfig, diff)
    assert cfg.train.mixed_precision == "no" and cfg.train.compile is True


def test_required_key_names_exist_and_take_their_values_from_the_command_line():
    # the keys the study's commands set: each one a real dotted path, read as its field's type, not a default
    given = {"output_dir": ("runs/mine", "runs/mine"), "seed": ("7", 7), "resume": ("true", True),
             "data.source": ("/data/photos", "/data/photos"), "data.subset": ("1k", "1k"), "train.epochs": ("3", 3),
             "train.batch_size": ("16", 16), "train.lr": ("2e-3", 2e-3), "mask.ratio": ("0.6", 0.6),
             "mask.unit": ("32", 32)}
    defaults = load_config(PretrainConfig)
    cfg = load_config(PretrainConfig, None, [f"{key}={text}" for key, (text, _) in given.items()])
    for key, (_, value) in given.items():
        node, default = cfg, defaults
        for part in key.split("."):
            node, default = getattr(node, part), getattr(default, part)
        assert node == value and type(node) is type(value) and default != value, key


@pytest.mark.parametrize("override,message", [
    ("train.lrr=1", "unknown config key 'train.lrr' (did you mean 'train.lr'?)"),
    ("trian.lr=1", "unknown config key 'trian'"),
    ("mask.ratio=1.5", "mask.ratio must be in (0, 1)"),
    ("train.epochs=ten", "train.epochs must be an integer, got 'ten'"),
    ("train.epochs=2.5", "train.epochs must be an integer"),
    ("train.mixed_precision=fp8", "train.mixed_precision='fp8' is not allowed; choose one of no, bf16, fp16"),
    ("mask.unit=24", "mask.unit=24 must be a multiple of model.patch_size=16"),
    ("data.subset=lots", "data.subset='lots' is not a size"),
    ("resume=maybe", "resume must be true or false"),
    ("model.name=vit_huge", "model.name 'vit_huge' is unknown"),
    ("aug.crop_scale=[0.5]", "aug.crop_scale must have 2 values"),
    ("train", "override 'train' is not of the form section.key=value"),
    ("train=3", "config section 'train' must be a mapping"),
    ("log.trackers=[tensorbored]", "log.trackers: 'tensorbored' is not an Accelerate tracker"),
])
def test_bad_keys_and_values_fail_in_one_line_naming_them(override, message):
    with pytest.raises(SimsegError) as err:
        load_config(PretrainConfig, None, [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_renamed_keys_and_recipes_are_class_variables_not_keys():
    from simseg.config.classify import ClassifyConfig
    from simseg.config.segment import SegmentConfig

    assert load_config(ClassifyConfig, None, ["head=mean"]).pool == "mean"  # pool's name in configs before
    assert load_config(SegmentConfig, None, ["recipe=mild"]).train.schedule == "constant"  # filled from RECIPES
    for cls in (ClassifyConfig, SegmentConfig):
        assert not {"RENAMED", "RECIPES"} & set(to_dict(load_config(cls))), "a run folder's config.yaml holds them"
        with pytest.raises(SimsegError, match="unknown config key 'RENAMED'"):
            load_config(cls, None, ["RENAMED={}"])


def test_bad_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: [1\n")
    with pytest.raises(SimsegError, match="bad.yaml line .* is not valid YAML"):
        load_config(PretrainConfig, bad)
    with pytest.raises(SimsegError, match="does not exist"):
        load_config(PretrainConfig, tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(CONFIG_ROOT)) for p in CONFIGS])
def test_every_shipped_config_loads_and_starts_with_its_command(path):
    from simseg.config.classify import ClassifyConfig
    from simseg.config.segment import SegmentConfig

    stage_configs = {"stages/pretrain.py": PretrainConfig, "stages/classify.py": ClassifyConfig,
                     "stages/segment.py": SegmentConfig}
    command = path.read_text().splitlines()[0]
    if "simseg chain" in command:  # a chain file: every stage's config must resolve
        from simseg.experiments.chain import load_chain, stage_configs
        root, stages = load_chain(path, [])
        assert len(stage_configs(root, stages)) == 3
        return
    stages = [stage for stage in stage_configs if stage in command]
    assert command.startswith("#") and len(stages) == 1, f"{path.name} must open with the command that runs it"
    load_config(stage_configs[stages[0]], path)


def test_to_dict_round_trip_and_diff():
    cfg = load_config(PretrainConfig, None, ["train.epochs=3"])
    tree = to_dict(cfg)
    assert load_config(PretrainConfig, None, []).train.epochs == 100
    assert diff_keys(to_dict(load_config(PretrainConfig)), tree) == ["train.epochs"]


def test_flat_dict_for_trackers_has_only_scalars():
    flat = flat_dict(to_dict(load_config(PretrainConfig)))
    assert flat["train.lr"] == 1e-4 and flat["train.milestones"] == "[0.5, 0.85]" and flat["data.subset"] == "None"
    assert all(isinstance(v, (int, float, str, bool)) for v in flat.values())


def test_no_base_60_numbers():
    """YAML 1.1 reads 2:00:00 as 7200 and 1:30 as 90; simseg keeps such text as text (YAML 1.2) and reads every
    other number as PyYAML does."""
    from simseg.config.loader import load_yaml

    assert load_yaml("2:00:00") == "2:00:00" and load_yaml("1:30") == "1:30"
    assert [load_yaml(t) for t in ("120", "-3", "0.5", "1.0e-4", ".5", "0x1f", "1_000")] == [
        120, -3, 0.5, 1e-4, 0.5, 31, 1000]


def test_num_workers_default_fits_the_cores_and_the_device(monkeypatch):
    import os

    import torch

    from simseg.config.sections import default_num_workers

    for cores, gpu, expected in ((2, False, 0), (6, False, 1), (32, False, 4), (2, True, 1), (16, True, 8)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _, n=cores: set(range(n)), raising=False)
        monkeypatch.setattr(torch.cuda, "is_available", lambda g=gpu: g)
        assert default_num_workers() == expected, (cores, gpu)
    cfg = load_config(PretrainConfig, None, [])
    assert cfg.data.num_workers is None and cfg.data.workers() == expected  # resolved at run time (config.yaml's
    assert load_config(PretrainConfig, None, ["data.num_workers=3"]).data.workers() == 3  # resolved tree says so)
    assert load_config(PretrainConfig, None, ["data.num_workers=3"]).data.num_workers == 3
