"""A preset: a named set of config values that one key selects (``aug.preset=heavy``, ``recipe=mild``,
``model.name=...``), with a line saying what it is. The presets' tables (:data:`simseg.config.segment.AUG_PRESETS`,
:data:`~simseg.config.segment.RECIPES`, :data:`~simseg.config.sections.ENCODERS`) are the only place their values
are written; ``--help`` lists each entry with its description and the keys it sets.

A config field that selects from such a table names it in its metadata, ``dataclasses.field(...,
metadata=choices(TABLE))``; the table's entries need a ``description`` and may have ``settings``
(:class:`Preset`), as :data:`simseg.models.registry.ARCHS`'s entries, which set no keys, show.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

CHOICES = "choices"
"""The metadata key under which a field names the table its value is chosen from."""


@dataclasses.dataclass(frozen=True)
class Preset:
    description: str
    """What it is, in a sentence: the why, not the values (``--help`` lists those from ``settings``)."""
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The keys it sets, relative to the section of the key that selects it (nested by section for a top-level
    key such as ``recipe``)."""


def choices(table: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Field metadata saying that a key's value is one of ``table``'s names."""
    return {CHOICES: table}


def choices_of(field: dataclasses.Field) -> Mapping[str, Any] | None:
    """The table a field's value is chosen from, or None."""
    return field.metadata.get(CHOICES)
