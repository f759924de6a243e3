"""The segmentation config's model and augmentation keys: model.arch, its head= synonym, aug presets, recipes."""

import pytest

from simseg.config.loader import load_config, to_dict
from simseg.config.segment import AUG_PRESETS, RECIPES, SegmentConfig
from simseg.errors import SimsegError


def config(*overrides):
    return load_config(SegmentConfig, None, list(overrides))


@pytest.mark.parametrize("preset", list(AUG_PRESETS))
def test_each_preset_expands_to_its_documented_keys(preset):
    aug, settings = config(f"aug.preset={preset}").aug, AUG_PRESETS[preset].settings
    assert {key: getattr(aug, key) for key in settings} == settings


def test_the_light_and_heavy_presets_set_what_they_describe():
    light, heavy = config("aug.preset=light").aug, config("aug.preset=heavy").aug
    assert light.crop_scale == (0.8, 1.0) and light.hflip == 0.5 and light.color_jitter_prob == 0
    assert light.rotation == 0 and light.blur_prob == 0
    assert heavy.crop_scale == (0.6, 1.0) and heavy.rotation == 20 and heavy.color_jitter_prob > 0
    assert heavy.blur_prob > 0
    assert config().aug.crop_scale == (0.5, 1.0) and config().aug.preset == "study"  # the study's, unchanged


def test_explicit_aug_keys_override_the_preset_and_the_resolved_config_rebuilds_itself():
    cfg = config("aug.preset=heavy", "aug.rotation=5", "aug.crop_scale=[0.9,1.0]")
    assert cfg.aug.rotation == 5 and cfg.aug.crop_scale == (0.9, 1.0) and cfg.aug.blur_prob == 0.2
    from simseg.config.loader import build

    assert to_dict(build(SegmentConfig, to_dict(cfg))) == to_dict(cfg)


def test_head_is_a_synonym_of_model_arch_for_old_configs():
    assert config("head=linear_upsample").model.arch == "vit_linear_upsample"
    assert config("head=linear").model.arch == "vit_linear" and "head" not in to_dict(config("head=linear"))
    same = config("head=linear_upsample", "model.arch=vit_linear_upsample")
    assert to_dict(same) == to_dict(config("model.arch=vit_linear_upsample"))
    assert to_dict(config("head=null")) == to_dict(config()), "config.yaml of runs before model.arch held head: null"


@pytest.mark.parametrize("overrides,message", [
    (["head=linear_upsample", "model.arch=vit_pup"], "head=linear_upsample means model.arch=vit_linear_upsample"),
    (["model.arch=vit_unet"], "model.arch 'vit_unet' is unknown; choose one of vit_linear"),
    (["model.arch=unet_resnet18", "model.img_size=112"], "model.img_size=112: unet_resnet18 needs a multiple of 32"),
    (["init=imagenet"], "init=imagenet is for the CNN models"),
    (["model.arch=unet_resnet18", "train.layer_decay=0.75"], "set it to 1 for unet_resnet18"),
    (["aug.preset=extreme"], "aug.preset='extreme' is not allowed; choose one of study, light, heavy"),
    (["aug.rotation=200"], "aug.rotation must be in [0, 180]"),
    (["aug.blur_sigma=[1.0,0.5]"], "aug.blur_sigma must be two numbers"),
])
def test_bad_model_and_aug_values_fail_in_one_line(overrides, message):
    with pytest.raises(SimsegError) as err:
        config(*overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", list(RECIPES))
def test_each_recipe_expands_to_its_keys(name):
    from simseg.config.loader import diff_keys, flat_dict

    resolved, settings = flat_dict(to_dict(config(f"recipe={name}"))), flat_dict(RECIPES[name].settings)
    assert {key: resolved[key] for key in settings} == settings
    changed = diff_keys(to_dict(config()), to_dict(config(f"recipe={name}")))
    assert set(changed) <= {*settings, "recipe"} and ("recipe" in changed) == (name != "study")


def test_the_medium_recipe_is_mosaicmls():
    medium = config("recipe=medium")
    assert (medium.loss, medium.mixup.alpha, medium.train.sam_rho, medium.train.sam_interval) == ("ce+dice", 0.2,
                                                                                                    0.3, 2)
    assert medium.train.ema_decay() == pytest.approx(0.5 ** (10 / 1000)) and medium.train.schedule == "constant"


def test_explicit_keys_override_a_recipe_and_the_resolved_config_rebuilds_itself():
    from simseg.config.loader import build

    cfg = config("recipe=medium", "train.sam_rho=0.05", "loss=ce")
    assert (cfg.train.sam_rho, cfg.loss, cfg.train.sam_interval, cfg.mixup.alpha) == (0.05, "ce", 2, 0.2)
    assert to_dict(build(SegmentConfig, to_dict(cfg))) == to_dict(cfg)
    with pytest.raises(SimsegError, match="recipe='spicy' is not allowed; choose one of study, mild, medium, hot"):
        config("recipe=spicy")
