"""The markdown tables that the results pages quote, printed one way by every script here that prints one
(publish_*.py, compare_results.py): names where markdown puts text, figures right-aligned so that their decimals
line up on the rendered page.

    from page_tables import markdown_table, summary   # beside the script: studies/ is on sys.path

(named page_tables, not tables, so that it cannot shadow PyTables' ``tables`` module.)
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence

TEXT, LEFT, FIGURE = "---", ":---", "---:"  # a column's rule: markdown's default alignment, left, right
MISSING = "—"  # a cell without a finished run


def markdown_table(header: Sequence[str], body: Iterable[Sequence[object]], text_columns: int = 1,
                   text_rule: str = TEXT) -> str:
    """The table as lines joined by newlines: the first ``text_columns`` columns hold names (ruled ``text_rule``),
    the others figures (right-aligned). Each cell is written as ``str()`` writes it, a ``|`` inside escaped. A row
    of another width than the header is refused: markdown would shift its cells into the wrong columns silently."""
    rules = [text_rule] * text_columns + [FIGURE] * (len(header) - text_columns)
    rows = [list(header), rules, *(list(row) for row in body)]
    for row in rows[2:]:
        if len(row) != len(header):
            raise ValueError(f"a table row has {len(row)} cells for {len(header)} columns ({header[0]}...): {row}")
    return "\n".join("| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows)


def summary(values: Sequence[float]) -> str:
    """One table cell for a figure over seeds: ``0.412 ± 0.013`` (mean ± sample std), the value alone for one seed,
    ``—`` for none."""
    if not values:
        return MISSING
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"
