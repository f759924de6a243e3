"""Loading dataclass configs: defaults <- YAML diff <- ``section.key=value`` overrides, each value coerced to its
field's type. The dataclasses themselves (the only home of defaults) are in :mod:`simseg.config.sections` and one
module per stage.

Why not OmegaConf: its structured configs cannot type ``str | int`` fields such as ``data.subset`` (``250`` or
``1k``) and its errors are multi-line; the loader below is a typed merge of plain dicts whose every failure is one
line that names the key, with a close-match suggestion for typos.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from simseg.errors import SimsegError

RenamedKeys = dict[str, tuple[str, dict[str, str] | None]]
"""A stage config's ``RENAMED``: old top-level key -> (new dotted key, {old value: new value} or None to keep the
value)."""


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with two YAML 1.2 rules: only true/false are booleans, so yes/no/on/off stay the strings
    they are in choices like ``train.mixed_precision=no`` (YAML 1.1 would turn ``no`` into False); and no base-60
    numbers, so a time limit ``--time 2:00:00`` stays that text (YAML 1.1 would read it as 7200)."""


_BOOL, _INT, _FLOAT = (f"tag:yaml.org,2002:{kind}" for kind in ("bool", "int", "float"))
_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag not in (_BOOL, _INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Yaml12Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
# PyYAML's own int and float patterns, less their sexagesimal branches
_Yaml12Loader.add_implicit_resolver(_INT, re.compile(r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+)$""", re.X), list("-+0123456789"))
_Yaml12Loader.add_implicit_resolver(_FLOAT, re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X), list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """YAML text -> Python values, with YAML 1.2 booleans and no base-60 numbers (see :class:`_Yaml12Loader`)."""
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 (a SafeLoader subclass)


def parse_value(text: str) -> Any:
    """The value of a ``key=value`` override: YAML (numbers, lists, null, true/false), else the text itself."""
    try:
        return load_yaml(text) if text else ""
    except yaml.YAMLError:
        return text


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] = ()) -> Any:
    """Build ``cls`` from its defaults, the YAML diff at ``path`` and ``section.key=value`` overrides."""
    tree: dict[str, Any] = {}
    if path is not None:
        tree = read_yaml(Path(path))
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SimsegError(f"override '{item}' is not of the form section.key=value")
        set_dotted(tree, key.strip(), parse_value(text))
    return build(cls, tree)


def build(cls: type, tree: dict[str, Any], prefix: str = "") -> Any:
    """Construct dataclass ``cls`` from a nested dict, rejecting unknown keys and ill-typed values."""
    if not isinstance(tree, dict):
        raise SimsegError(f"config section '{prefix.rstrip('.') or 'top level'}' must be a mapping, got {tree!r}")
    tree = with_recipe(cls, with_renamed_keys(cls, tree, prefix), prefix)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in tree.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f"; known keys: {', '.join(fields)}"
            raise SimsegError(f"unknown config key '{prefix}{key}'{hint}")
        if dataclasses.is_dataclass(hints[key]):
            kwargs[key] = build(hints[key], value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
    return cls(**kwargs)


def with_renamed_keys(cls: type, tree: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``tree`` with the keys of configs written before a rename moved to their new place, for a class with a
    ``RENAMED`` class variable (:data:`RenamedKeys`). An old key set to null is dropped; one that contradicts its new
    key given as well is refused."""
    # Only a stage config that renamed a key declares RENAMED; the sections ``build`` recurses into have none.
    renamed: RenamedKeys = getattr(cls, "RENAMED", {})
    if not any(old in tree for old in renamed):
        return tree
    tree = dict(tree)
    for old, (new, values) in renamed.items():
        given = tree.pop(old, None)
        if given is None:
            continue
        if values is not None and given not in values:
            raise SimsegError(f"{prefix}{old}={given!r} is not allowed; set {new} instead ({old} accepts only "
                              f"{', '.join(values)}, its names from before)")
        value = given if values is None else values[given]
        *parents, leaf = new.split(".")
        node = tree
        for part in parents:
            node[part] = dict(node.get(part) or {})
            node = node[part]
        if node.get(leaf, value) != value:
            raise SimsegError(f"{prefix}{old}={given} means {new}={value}, but {new}={node[leaf]}: give only {new}")
        node[leaf] = value
    return tree


def with_recipe(cls: type, tree: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``tree`` over the keys of its named recipe, for a class with a ``RECIPES`` class variable (name ->
    :class:`~simseg.config.presets.Preset` whose ``settings`` are nested keys): a recipe fills what the tree leaves
    out, and every key given explicitly wins."""
    # Only a stage config with recipes (the segment stage's) declares RECIPES; other configs and sections have none.
    recipes = getattr(cls, "RECIPES", None)
    name = tree.get("recipe")
    if recipes is None or name is None:
        return tree
    if name not in recipes:
        raise SimsegError(f"{prefix}recipe={name!r} is not allowed; choose one of {', '.join(recipes)}")

    return merge_trees(recipes[name].settings, tree)


def merge_trees(base: dict, over: dict) -> dict:
    """``base`` with the values of ``over`` (nested alike) written over it; neither is changed."""
    merged = dict(base)
    for key, value in over.items():
        merged[key] = merge_trees(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) \
            else value
    return merged


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists) for YAML, JSON and comparisons."""
    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value
    return plain(dataclasses.asdict(cfg))


def flat_dict(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train.lr": 1e-4, "train.milestones": "[0.5, 0.85]", ...}``: dotted keys with scalar values, as
    experiment trackers (TensorBoard's hparams) require."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flat_dict(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return flat


def diff_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += diff_keys(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise SimsegError(f"config file {path} does not exist: check the path given to -c")
    try:
        tree = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" line {where.line + 1}" if where else ""
        raise SimsegError(f"config file {path}{line} is not valid YAML: {getattr(err, 'problem', err)}") from None
    if not isinstance(tree, dict):
        raise SimsegError(f"config file {path} must hold a mapping of sections, got {type(tree).__name__}")
    return tree


def set_dotted(tree: dict, key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SimsegError(f"override '{key}' goes through '{part}', which is not a section")
    node[leaf] = value


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) > 1:  # ``str | list[str]``: a list, or a comma-separated command-line value, is the list
            listed = [a for a in inner if typing.get_origin(a) in (list, tuple)]
            scalar = [a for a in inner if a not in listed]
            as_list = isinstance(value, (list, tuple)) or (isinstance(value, str) and "," in value)
            return _coerce(value, (listed if as_list else scalar)[0], key)
        return _coerce(value, inner[0], key)
    if origin is Literal:
        if value not in args:
            raise SimsegError(f"{key}={value!r} is not allowed; choose one of {', '.join(map(str, args))}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise SimsegError(f"{key} must be a list, got {value!r}")
        if origin is tuple and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise SimsegError(f"{key} must have {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, key) for v, a in zip(value, args))
        return origin(_coerce(v, args[0], key) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "yes", "1", "on", "false", "no", "0", "off"):
            return str(value).lower() in ("true", "yes", "1", "on")
        raise SimsegError(f"{key} must be true or false, got {value!r}")
    if annotation in (int, float):
        try:
            number = annotation(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or (annotation is int and float(value) != number):
            raise SimsegError(f"{key} must be {'an integer' if annotation is int else 'a number'}, got {value!r}")
        return number
    if annotation is str:
        if isinstance(value, (dict, list)) or value is None:
            raise SimsegError(f"{key} must be a string, got {value!r}")
        return str(value)
    raise TypeError(f"config field {key} has an unsupported annotation {annotation}")


def check(condition: bool, message: str) -> None:
    """Refuse a config value: ``message`` names the key and what it must be."""
    if not condition:
        raise SimsegError(message)
