"""The README and the pages under docs/: every relative link points at a file that exists, and the README stays a
front page (under 20 KB) that holds the two set-up commands CI and new users run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# [text](target) and ![alt](target), the target up to whitespace or ")"; code spans are left out first
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def relative_links(page: Path) -> list[str]:
    targets = LINK.findall(CODE.sub("", page.read_text(encoding="utf-8")))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file(page):
    dead = [t for t in relative_links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert not dead, f"{page.relative_to(ROOT)} links to missing files: {dead}"


def test_the_checker_finds_a_dead_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[ok](page.md) [gone](nowhere.md#part) `[code](skipped.md)` [web](https://example.org) "
                    "![figure](figures/missing.png) [anchor](#here)")
    assert relative_links(page) == ["page.md", "nowhere.md#part", "figures/missing.png"]


def test_the_readme_is_a_front_page_with_the_two_set_up_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) <= 20_000
    assert "pip install -e . && simseg demo" in readme
    assert "pip install -e '.[dev]' && python -m pytest -q" in readme  # what .ci/run runs
