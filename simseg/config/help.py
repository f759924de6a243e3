"""The config keys of ``simseg STAGE --help``, derived from the stage's dataclasses and the tables their keys choose
from: a key, a segmentation model, an encoder, a recipe or a preset added there shows up here with no other edit.

    model: The segmentation model and its encoder.
      model.arch = vit_linear
          The segmentation model: ...
            vit_linear            The study's ViT + a linear head, pixel-shuffled to full resolution.
            ...
      model.img_size = null -> 128 (from model.name)
          Side of the square input image, pixels; ...

Each key shows its default (for a key left null and filled from the table another key chooses from, that it is and
what the default resolves to), its docstring (:mod:`simseg.config.field_docs`) and its allowed values: the names of
its table (each with its description and the keys it sets) or the choices of its ``Literal`` type.
"""

from __future__ import annotations

import dataclasses
import textwrap
import typing
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from simseg.config.field_docs import field_docs, plain_text
from simseg.config.presets import choices_of

WIDTH = 118  # a 120-column terminal, with a margin
KEY, TEXT = 2, 6  # indents of a key's line and of its description

INTRO = ("config keys, by section: section.key=value on the command line, or nested by section in the -c FILE; values "
         "as in YAML (null, true/false, [a,b]). Each key: its default after '=', then what it means.")


def config_help(cls: type) -> str:
    """Every key of config class ``cls``: default, meaning and allowed values, grouped by section."""
    lines = _wrap(INTRO, 0)
    for title, prefix, section in _sections(cls(), "top level", ""):
        lines += ["", *_wrap(title, 0), *_section_lines(section, prefix)]
    return "\n".join(lines)


def _section_lines(section: Any, prefix: str) -> list[str]:
    """The keys of one section (its own, not its subsections'), a key that fills others first: a reader meets
    ``aug.preset`` before the keys it fills."""
    cls = type(section)
    docs, hints, filled = field_docs(cls), typing.get_type_hints(cls), filled_keys(cls)
    lines = []
    for field in sorted(dataclasses.fields(cls), key=lambda field: field.name not in filled.values()):
        if not dataclasses.is_dataclass(getattr(section, field.name)):
            lines += _key_lines(section, field, prefix, docs.get(field.name, ""), hints[field.name], filled)
    return lines


def _sections(config: Any, title: str, prefix: str) -> Iterator[tuple[str, str, Any]]:
    """(title, key prefix, section) of ``config`` and of each section in it, in field order."""
    yield title, prefix, config
    docs = field_docs(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            name = f"{prefix}{field.name}"
            yield from _sections(value, f"{name}: {plain_text(docs.get(field.name, ''))}", f"{name}.")


def filled_keys(cls: type) -> dict[str, str]:
    """{field: the field whose choice fills it}: the fields of ``cls`` that default to null and are set by the entry
    of a table another field chooses from (``model.img_size`` by ``model.name``), unless given."""
    fields = {field.name: field for field in dataclasses.fields(cls)}
    filled = {}
    for selector in fields.values():
        for entry in (choices_of(selector) or {}).values():
            for key in getattr(entry, "settings", None) or {}:  # a Preset's; ARCHS' and METHODS' entries set none
                if key in fields and fields[key].default is None:
                    filled[key] = selector.name
    return filled


def _key_lines(section: Any, field: dataclasses.Field, prefix: str, doc: str, hint: Any,
               filled: dict[str, str]) -> list[str]:
    value = show(getattr(section, field.name))
    if field.name in filled:
        value = f"null -> {value} (from {prefix}{filled[field.name]})"
    lines = _wrap(f"{prefix}{field.name} = {value}", KEY) + _wrap(plain_text(doc), TEXT)
    table = choices_of(field)
    if table is not None:
        return lines + _table_lines(table, prefix)
    allowed = literal_choices(hint)
    return lines + (_wrap(f"one of: {', '.join(allowed)}", TEXT) if allowed else [])


def _table_lines(table: Mapping[str, Any], prefix: str) -> list[str]:
    """Each name of a key's table with its description, and the keys it sets when its entries set any."""
    indent = TEXT + 2
    width = max(map(len, table)) + 2
    lines = []
    for name, entry in table.items():
        lines += _wrap(plain_text(entry.description), indent, first=name.ljust(width), hang=width)
        settings = getattr(entry, "settings", None)  # tables mix kinds: a Preset sets keys, an ARCHS entry none
        if settings is not None:
            sets = ", ".join(f"{key}={show(v)}" for key, v in flat_items(settings, prefix))
            lines += _wrap(f"sets {sets or 'nothing: the defaults'}", indent + width)
    return lines


def flat_items(tree: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of a nested mapping: ``{"train": {"lr": 1}}`` -> ``[("train.lr", 1)]``."""
    items = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            items += flat_items(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


def literal_choices(hint: Any) -> list[str]:
    """The values a ``Literal`` (or optional ``Literal``) type allows; [] for any other type."""
    if typing.get_origin(hint) is Literal:
        return [str(arg) for arg in typing.get_args(hint)]
    return [c for arg in typing.get_args(hint) if arg is not type(None) for c in literal_choices(arg)]


def show(value: Any) -> str:
    """A value as one writes it after ``key=``: null, true/false, [a,b], numbers in short form, "" for empty."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(show, value)) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value) if value != "" else '""'


def _wrap(text: str, indent: int, first: str = "", hang: int = 0) -> list[str]:
    """``text`` wrapped to :data:`WIDTH` at ``indent``; ``first`` (a name) opens the first line and the others hang
    ``hang`` further in. Words are never broken, so a long path may overrun."""
    return textwrap.wrap(text or "-", WIDTH, initial_indent=" " * indent + first,
                         subsequent_indent=" " * (indent + hang), break_long_words=False, break_on_hyphens=False)
