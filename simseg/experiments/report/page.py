"""Results pages whose tables are regenerated from committed results: ``simseg report --page PAGE.md``.

A hand-written page (``docs/results/*.md``) marks each table it takes from a report with a block::

    <!-- simseg report pretraining --reference unet: "Gains with 95% intervals" -->
    | ... the section's body, as the report writes it ... |
    <!-- end simseg report -->

``pretraining`` is a results folder relative to the page (a sweep folder, or the light copy of one that
``simseg report SWEEP --publish DIR`` writes: results.csv, sweep.json and each cell's per-image scores, no weights);
what follows it up to the colon are ``simseg report`` options; the quoted name is a ``## `` section of the report.
:func:`update_page` rewrites every block's body from its folder, so the page's tables are what the committed
results give; with ``check=True`` it changes nothing and refuses a page whose tables differ (the test suite runs
that over every page). The prose around the blocks stays the author's.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path

from simseg.errors import SimsegError
from simseg.files import atomic_write_text

BLOCK = re.compile(r"^<!-- simseg report (?P<args>[^\n]*?): \"(?P<section>[^\"\n]+)\" -->\n"
                   r"(?P<body>.*?)^<!-- end simseg report -->$", re.MULTILINE | re.DOTALL)
END = "<!-- end simseg report -->"

Render = Callable[[Path, list[str]], str]
"""(results folder, report options) -> the report's markdown (its tables; figures are not needed)."""


def report_section(markdown: str, section: str) -> str:
    """The body of the ``## section`` of a report (up to the next ``## `` heading), blank edges trimmed."""
    lines = markdown.splitlines()
    try:
        start = lines.index(f"## {section}") + 1
    except ValueError:
        headings = [line[3:] for line in lines if line.startswith("## ")]
        raise SimsegError(f"the report has no section {section!r}; its sections are: {', '.join(headings)}") from None
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "\n".join(lines[start:end]).strip("\n")


def render_page(text: str, page_dir: Path, render: Render) -> tuple[str, list[str]]:
    """``text`` with every block's body regenerated; returns it and the names of the sections that changed. The
    report of each (folder, options) is rendered once."""
    rendered: dict[tuple[str, ...], str] = {}
    changed: list[str] = []

    def fill(match: re.Match) -> str:
        args = shlex.split(match["args"])
        if not args:
            raise SimsegError(f"a block for {match['section']!r} names no results folder: write "
                              f"<!-- simseg report FOLDER [options]: \"{match['section']}\" -->")
        key = tuple(args)
        if key not in rendered:
            folder = (page_dir / args[0]).resolve()
            if not folder.is_dir():
                raise SimsegError(f"the results folder {args[0]} of the block {match['section']!r} does not exist "
                                  f"beside the page ({folder}): commit it (simseg report SWEEP --publish DIR) or "
                                  f"fix the block")
            rendered[key] = render(folder, args[1:])
        body = report_section(rendered[key], match["section"])
        if body != match["body"].strip("\n"):
            changed.append(match["section"])
        head = match.group(0).split("\n", 1)[0]
        return f"{head}\n{body}\n{END}"

    return BLOCK.sub(fill, text), changed


def update_page(page: str | Path, render: Render, check: bool = False) -> list[str]:
    """Regenerate the blocks of ``page`` from their results folders; returns the sections that changed (with
    ``check``, nothing is written and a difference is an error naming the sections and the fix)."""
    page = Path(page)
    try:
        text = page.read_text(encoding="utf-8")
    except OSError as err:
        raise SimsegError(f"cannot read the page {page} ({err.strerror or type(err).__name__}): check the path") \
            from None
    if not BLOCK.search(text):
        raise SimsegError(f"{page} has no '<!-- simseg report FOLDER: \"SECTION\" -->' block: nothing to regenerate")
    new, changed = render_page(text, page.parent, render)
    if check and changed:
        raise SimsegError(f"{page}: the tables {', '.join(repr(s) for s in changed)} differ from what its committed "
                          f"results give: run simseg report --page {page} and review the difference")
    if not check and new != text:
        atomic_write_text(page, new)
    return changed
