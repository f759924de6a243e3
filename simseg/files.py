"""Atomic file writes, the ground every layer stands on.

Every file is written next to its destination under a temporary name, flushed to disk and renamed over it, so a
reader (or a run killed mid-save) sees either the old complete file or the new complete one; a full disk or a
folder without write permission ends in one line, and the destination is left as it was.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from simseg.errors import SimsegError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once at import: os.umask can only be read by setting it


def temp_file_beside(path: Path) -> tuple[int, str]:
    """(fd, name) of a new hidden temporary file in ``path``'s folder, to be renamed onto ``path`` when complete.

    mkstemp makes owner-only files; the temporary file gets the mode ``open()`` would give, so results written into
    a shared sweep folder stay readable by the group.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    if hasattr(os, "fchmod"):
        os.fchmod(fd, 0o666 & ~_UMASK)
    return fd, tmp


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None], durable: bool = True) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync, then rename it to ``path``. ``durable=False``
    skips the fsync: the rename still means a killed process leaves the old file or the new one, but after a power
    cut the new one may be empty; for many small outputs that can be made again (predictions), where an fsync each
    would cost more than the work."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file_beside(path)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            if durable:
                os.fsync(file.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise SimsegError(f"disk full while writing {path}: free space on that disk and rerun the command "
                              f"(a stage with resume=true); files already written are intact") from None
        raise SimsegError(f"cannot write {path} ({err.strerror or err}): check the folder's permissions") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write_json(path: str | Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def sha256(path: str | Path) -> str:
    """The SHA-256 hex digest of a file's bytes: how lineage records and model cards name the weights they used."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
