"""A dataset's class file: the names, colours and mask values of its classes, beside the data (``classes.json``,
``classes.yaml`` or ``classes.yml`` in the source folder) or named by ``data.classes=FILE``.

The full form (JSON, or the same in YAML)::

    {"title": "skin lesions",                         # optional: what the dataset is, in a few words
     "classes": [{"name": "background", "colour": [0, 0, 0], "value": 0},
                 {"name": "lesion", "colour": "#ff0000", "value": 255}],
     "ignore": [128, "#c0c0c0"]}                      # optional: mask values or colours that mean "no label"

Class ids are the classes' positions in the list (or their ``id`` keys, 0..C-1, as a run's own ``classes.json``
writes them, so a run's file can describe new data). Each class may give

- ``colour``: ``[r, g, b]`` or ``"#rrggbb"``; colour masks are read through these colours exactly, and pictures
  draw the class in it (a class without one gets :func:`~simseg.data.label_set.default_colours`' colour);
- ``value``: what the dataset's masks store for it (default: its id); ``data.label_map`` overrides the values.

Shorter forms name the classes only, in id order: ``{"names": ["background", "lesion"]}``, a JSON list of names, or
a YAML list (``- background``). The pixels valued 255 are ignored unless a class claims that value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from simseg.config.loader import load_yaml
from simseg.data.label_set import IGNORE_INDEX, Colour, LabelSet, default_colours
from simseg.errors import SimsegError

CLASS_FILE_NAMES = ("classes.json", "classes.yaml", "classes.yml")


@dataclass(frozen=True)
class ClassFile:
    """What a class file says: ``label_set`` (names, colours, values, title), ``values`` (mask value -> class id, the
    ignored values -> 255) and ``colours`` (the colours the file gives -> class id, ignored colours -> 255; empty
    when it gives none)."""

    path: Path
    label_set: LabelSet
    values: dict[int, int]
    colours: dict[Colour, int]

    @property
    def coloured(self) -> set[int]:
        """The class ids the file gives a colour."""
        return set(self.colours.values()) - {IGNORE_INDEX}


def find_class_file(folder: Path) -> Path | None:
    """The first of :data:`CLASS_FILE_NAMES` in ``folder``, or None."""
    return next((folder / n for n in CLASS_FILE_NAMES if (folder / n).is_file()), None)


def parse_colour(colour, where: str) -> Colour:
    """``[r, g, b]`` or ``"#rrggbb"`` -> (r, g, b); a one-line error naming ``where`` otherwise."""
    try:
        if isinstance(colour, str) and len(colour.strip()) == 7 and colour.strip().startswith("#"):
            code = colour.strip()[1:]
            rgb = tuple(int(code[i:i + 2], 16) for i in (0, 2, 4))
        else:
            rgb = tuple(int(c) for c in colour)
        if len(rgb) == 3 and all(0 <= c <= 255 for c in rgb):
            return rgb
    except (TypeError, ValueError):
        pass
    raise SimsegError(f"{where}: colour {colour!r} is not [r, g, b] (0..255 each) or \"#rrggbb\"; fix it")


def read_class_file(path: str | Path) -> ClassFile:
    """The classes ``path`` describes (format in this module's docstring); a one-line error naming the file and the
    entry otherwise."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")
        record = json.loads(text) if path.suffix.lower() == ".json" else load_yaml(text)
    except FileNotFoundError:
        raise SimsegError(f"class file {path} does not exist: check data.classes") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:  # json and yaml errors are ValueErrors or YAMLErrors
        raise SimsegError(f"class file {path} cannot be read ({type(err).__name__}): fix it or point data.classes "
                          f"at another") from None
    except Exception as err:  # noqa: BLE001 (yaml.YAMLError and its many subclasses)
        raise SimsegError(f"class file {path} is not valid YAML ({type(err).__name__}): fix it") from None
    return class_file_from_record(record, path)


def class_file_from_record(record, path: Path) -> ClassFile:
    """:func:`read_class_file` of a parsed ``record``."""
    where = f"class file {path}"
    title, ignore = "", []
    if isinstance(record, dict):
        title, ignore = str(record.get("title", "")), record.get("ignore", [])
        classes = record.get("classes", record.get("names"))
    else:
        classes = record
    if not isinstance(classes, list) or not classes or not isinstance(ignore, list):
        raise SimsegError(f"{where} holds no class list: give {{\"classes\": [{{\"name\": ...}}, ...]}}, "
                          f"{{\"names\": [...]}} or a list of names (and \"ignore\" as a list)")
    entries = [c if isinstance(c, dict) else {"name": c} for c in classes]
    if any("id" in c for c in entries):
        try:
            entries.sort(key=lambda c: int(c["id"]))
            ok = [int(c["id"]) for c in entries] == list(range(len(entries)))
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise SimsegError(f"{where}: class ids must be 0, 1, 2, ... (one each) when given; fix the \"id\" keys")
    names, colours, values, by_colour = [], [], [], {}
    fallback = default_colours(len(entries))
    for class_id, entry in enumerate(entries):
        name = entry.get("name")
        if not isinstance(name, (str, int)) or not str(name).strip():
            raise SimsegError(f"{where}: class {class_id} has no name; give each class \"name\"")
        value = entry.get("value", class_id)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
            raise SimsegError(f"{where}: class '{name}' has value {value!r}; a mask value is an integer 0..65535")
        colour = entry.get("colour", entry.get("color"))
        if colour is not None:
            colour = parse_colour(colour, f"{where}, class '{name}'")
            if colour in by_colour:
                raise SimsegError(f"{where}: classes '{names[by_colour[colour]]}' and '{name}' share the colour "
                                  f"{colour_code(colour)}; give each class its own")
            by_colour[colour] = class_id
        names.append(str(name).strip())
        colours.append(colour or fallback[class_id])
        values.append(value)
    if len(set(values)) != len(values):
        twice = next(v for v in values if values.count(v) > 1)
        raise SimsegError(f"{where}: two classes have the value {twice}; give each class its own \"value\"")
    by_value = dict(zip(values, range(len(values))))
    for item in ignore:
        if isinstance(item, int) and not isinstance(item, bool):
            by_value.setdefault(item, IGNORE_INDEX)
        else:
            by_colour.setdefault(parse_colour(item, f"{where}, ignore"), IGNORE_INDEX)
    try:
        label_set = LabelSet(tuple(names), tuple(colours), tuple(values), title or path.parent.name)
    except SimsegError as err:  # e.g. a name given twice: say which file
        raise SimsegError(f"{where}: {err}") from None
    return ClassFile(path, label_set, by_value, by_colour)


def colour_code(colour: Colour) -> str:
    """(127, 127, 127) -> ``#7f7f7f``."""
    return "#" + "".join(f"{c:02x}" for c in colour)
