"""Every results page's generated tables are what its committed results give: each page under docs/results/ with
``<!-- simseg report FOLDER ...: "SECTION" -->`` blocks is regenerated (changing nothing) and must not differ."""

from __future__ import annotations

from pathlib import Path

import pytest

from simseg.cli import page_renderer
from simseg.experiments.report.page import BLOCK, update_page

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(page for page in (ROOT / "docs" / "results").glob("*.md") if BLOCK.search(page.read_text()))


def with_intervals(page: Path) -> bool:
    """Whether a page's folders hold per-image scores: its intervals are bootstrapped (seconds each)."""
    return any(any((page.parent / match["args"].split()[0]).rglob("test_scores.npz"))
               for match in BLOCK.finditer(page.read_text()))


def test_pages_with_generated_tables_exist():
    assert {page.name for page in PAGES} >= {"report.md", "own_data.md"}


@pytest.mark.parametrize("page", [pytest.param(page, marks=[pytest.mark.slow] if with_intervals(page) else [])
                                  for page in PAGES], ids=lambda page: page.name)
def test_every_page_regenerates_from_its_committed_results(page):
    before = page.read_text()
    assert update_page(page, page_renderer(), check=True) == []
    assert page.read_text() == before
