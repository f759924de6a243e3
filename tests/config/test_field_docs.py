"""Every config key documents itself: a docstring under each field of every config class, and a description on
every entry of the tables keys choose from (read from the source, as ``--help`` reads them)."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from simseg.config.classify import ClassifyConfig
from simseg.config.field_docs import field_docs, plain_text
from simseg.config.launcher import LauncherConfig
from simseg.config.pretrain import PretrainConfig
from simseg.config.sections import ENCODERS
from simseg.config.segment import AUG_PRESETS, RECIPES, SegmentConfig
from simseg.models.registry import ARCHS

ROOTS = (PretrainConfig, ClassifyConfig, SegmentConfig, LauncherConfig)


def config_classes(cls: type) -> list[type]:
    """``cls`` and every config class reachable through its fields."""
    found = [cls]
    for hint in typing.get_type_hints(cls).values():
        if dataclasses.is_dataclass(hint):
            found += config_classes(hint)
    return found


CLASSES = sorted({c for root in ROOTS for c in config_classes(root)}, key=lambda c: c.__name__)


def undocumented(cls: type) -> list[str]:
    docs = field_docs(cls)
    return [field.name for field in dataclasses.fields(cls) if not docs.get(field.name, "").strip()]


@pytest.mark.parametrize("cls", CLASSES, ids=[c.__name__ for c in CLASSES])
def test_every_config_field_has_a_docstring(cls):
    assert not undocumented(cls), f"{cls.__name__}: write a docstring under {undocumented(cls)}"


def test_the_classes_cover_every_section():
    names = {c.__name__ for c in CLASSES}
    assert {"SegAugConfig", "SegDataConfig", "MaskConfig", "MixupConfig", "SegMixupConfig", "LauncherConfig"} <= names


@dataclasses.dataclass
class _Parent:
    documented: int = 1
    """The parent's words."""
    bare: int = 2


@dataclasses.dataclass
class _Child(_Parent):
    documented: int = 3
    extra: str = ""
    """Its own."""


def test_docstrings_are_read_from_the_source_and_inherited_and_a_missing_one_is_seen():
    assert field_docs(_Child) == {"documented": "The parent's words.", "extra": "Its own."}
    assert undocumented(_Child) == ["bare"]


def test_plain_text_drops_the_markup():
    assert plain_text("See :func:`~simseg.x.f` and\n    ``aug.rotation=10``.") == "See simseg.x.f and aug.rotation=10."


@pytest.mark.parametrize("table", [ARCHS, ENCODERS, AUG_PRESETS, RECIPES],
                         ids=["model.arch", "model.name", "aug.preset", "recipe"])
def test_every_registered_choice_has_a_description(table):
    assert table and all(entry.description.strip() for entry in table.values())
