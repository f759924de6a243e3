"""Human-readable dataset sizes: ``250``, ``1k``, ``1.5k``, ``45k``, ``2M``."""

from __future__ import annotations

import re

from simseg.errors import SimsegError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")
_SCALE = {"": 1, "k": 1_000, "m": 1_000_000}


def parse_size(text: str | int, key: str = "size") -> int:
    """``'1.5k'`` -> 1500. ``key`` names the config field in the error message."""
    match = _SIZE.match(str(text))
    if not match:
        raise SimsegError(f"{key}={text!r} is not a size; write a count like 250, 1k, 1.5k or 45k")
    number = float(match.group(1)) * _SCALE[match.group(2).lower()]
    if number != int(number) or number < 1:
        raise SimsegError(f"{key}={text!r} is not a whole positive number of images")
    return int(number)


def format_size(count: int) -> str:
    """1500 -> ``'1.5k'``, 250 -> ``'250'``: the inverse of :func:`parse_size` for round numbers."""
    for suffix, scale in (("M", 1_000_000), ("k", 1_000)):
        if count >= scale and (count * 10) % scale == 0:
            return f"{count / scale:g}{suffix}"
    return str(count)
