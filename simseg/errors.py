"""The one exception type users see.

Everything a user can cause (a wrong path, a bad config value, a corrupt image, a checkpoint from another
architecture, a full disk) is raised as :class:`SimsegError` with a one-line message that names the thing and
the fix. The command-line entry points catch it and print that line; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class SimsegError(Exception):
    """A user-facing failure; ``str(err)`` is a single line naming the problem and the fix."""


def one_line(error: BaseException) -> str:
    """The user-facing line of ``error``.

    DataLoader workers re-raise an exception in the main process with the worker's traceback folded into the
    message ("Caught SimsegError in DataLoader worker process 0. Original Traceback ..."); the line we wrote is the
    last one, prefixed with the class name.
    """
    text = str(error).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        name, sep, rest = last.partition(": ")  # "simseg.errors.SimsegError: <our line>"
        text = rest if sep and name.rsplit(".", 1)[-1] == type(error).__name__ else last
    return text.splitlines()[0] if text else type(error).__name__
