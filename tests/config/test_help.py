"""``--help``'s config keys come from the dataclasses and the tables their keys choose from: a model, recipe or preset
registered there is listed with no other edit, and keys filled from a table say so."""

from __future__ import annotations

from simseg.config.classify import ClassifyConfig
from simseg.config.help import WIDTH, config_help, filled_keys, show
from simseg.config.presets import Preset
from simseg.config.pretrain import PretrainConfig
from simseg.config.sections import ModelConfig
from simseg.config.segment import AUG_PRESETS, RECIPES, SegAugConfig, SegmentConfig
from simseg.models.registry import ARCHS, SegmentationArch


def words(text: str) -> str:
    return " ".join(text.split())


def test_a_newly_registered_model_recipe_and_preset_show_up(monkeypatch):
    monkeypatch.setitem(ARCHS, "vit_new", SegmentationArch("vit", "linear", description="A brand-new head."))
    monkeypatch.setitem(RECIPES, "spicy", Preset("Hotter than hot.", {"train": {"sam_rho": 0.5}}))
    monkeypatch.setitem(AUG_PRESETS, "wild", Preset("Everything at once.", {**AUG_PRESETS["heavy"].settings,
                                                                            "rotation": 90.0}))
    text = words(config_help(SegmentConfig))
    assert "vit_new A brand-new head." in text
    assert "spicy Hotter than hot. sets train.sam_rho=0.5" in text
    assert "wild Everything at once. sets aug.crop_scale=[0.6,1]" in text and "aug.rotation=90" in text


def test_keys_filled_from_a_table_name_it_and_show_what_the_default_resolves_to():
    assert filled_keys(ModelConfig) == dict.fromkeys(
        ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_dim"), "name")
    assert set(filled_keys(SegAugConfig)) == set(AUG_PRESETS["study"].settings)
    text = config_help(SegmentConfig)
    assert "  model.img_size = null -> 128 (from model.name)\n" in text
    assert "  aug.rotation = null -> 0 (from aug.preset)\n" in text
    assert text.index("  aug.preset = study") < text.index("  aug.crop_scale = null")  # the chooser first


def test_literal_choices_are_listed():
    text = config_help(PretrainConfig)
    assert "  train.mixed_precision = no\n" in text and "one of: no, bf16, fp16" in text
    assert "one of: ce, ce+dice" in config_help(SegmentConfig)


def test_values_are_shown_as_one_writes_them():
    assert [show(v) for v in (None, True, (0.5, 1.0), [70.0, 90.0], 2e-3, "", "ce")] == [
        "null", "true", "[0.5,1]", "[70,90]", "0.002", '""', "ce"]


def test_help_fits_a_120_column_terminal():
    for cls in (PretrainConfig, ClassifyConfig, SegmentConfig):
        long = [line for line in config_help(cls).splitlines() if len(line) > WIDTH]
        assert not long, long
