"""The docstrings of config fields, read from the source: the string literal written right after a field, the habit
of every config module here (and of litgpt's configs). Python keeps no such string at run time, so ``--help`` and the
test that every key is documented parse the classes' source with :mod:`ast`.

A subclass that only changes a field's default (``ClsTrainConfig.epochs``) may leave the docstring out: the field
keeps the nearest one up its class hierarchy; one that changes what the field means writes its own.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import re
import textwrap


def field_docs(cls: type) -> dict[str, str]:
    """{field name: docstring} of dataclass ``cls``, each from the nearest class in its MRO that documents it; a
    field no class documents is left out."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(declared_docs(klass))
    return {field.name: docs[field.name] for field in dataclasses.fields(cls) if field.name in docs}


@functools.cache
def declared_docs(klass: type) -> dict[str, str]:
    """{field name: docstring} of the fields ``klass``'s own body declares (not its parents'); {} when its source
    cannot be read (a frozen or compiled install)."""
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):
        return {}
    body = next(node for node in ast.parse(source).body if isinstance(node, ast.ClassDef)).body
    docs = {}
    for statement, following in zip(body, body[1:]):
        if (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return docs


_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")  # :func:`~simseg.x.f` -> simseg.x.f
_LITERAL = re.compile(r"``([^`]+)``")  # ``aug.rotation=10`` -> aug.rotation=10


def plain_text(docstring: str) -> str:
    """A docstring as one line of plain text for a terminal: reST roles and literals unmarked, whitespace joined."""
    return " ".join(_LITERAL.sub(r"\1", _ROLE.sub(r"\1", docstring)).split())
