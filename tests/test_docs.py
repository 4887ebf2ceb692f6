"""The documentation an installed user reads holds together: the architecture page lists
exactly the modules that exist, the README links every user page, every relative link
resolves, and no user page points into the lab notebook or at a path only the developers
have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: The pages a user of the package reads (docs/lab is the developers' notebook, not shipped).
USER_PAGES = sorted([ROOT / "README.md", *DOCS.glob("*.md"), ROOT / "weights" / "MODEL_CARD.md"])
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _ids(pages: list[Path]) -> list[str]:
    return [p.relative_to(ROOT).as_posix() for p in pages]


def _local_links(page: Path) -> list[str]:
    """Relative link targets of ``page``, without their #anchors."""
    links = []
    for target in _LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # http:, mailto:, or an anchor on the same page
        links.append(target.split("#", 1)[0])
    return links


def test_architecture_lists_every_module() -> None:
    text = (DOCS / "architecture.md").read_text()
    listed = set(re.findall(r"^\| `([a-z_/]+\.py)` \|", text, flags=re.M))
    src = ROOT / "src" / "medfuse"
    actual = {p.relative_to(src).as_posix() for p in src.rglob("*.py")}
    assert listed == actual, (sorted(actual - listed), sorted(listed - actual))


def test_readme_links_every_user_page() -> None:
    linked = {(ROOT / t).resolve() for t in _local_links(ROOT / "README.md")}
    pages = [*DOCS.glob("*.md"), ROOT / "weights" / "MODEL_CARD.md"]
    missing = sorted(p.relative_to(ROOT).as_posix() for p in pages if p.resolve() not in linked)
    assert not missing, f"pages the README does not link: {missing}"


@pytest.mark.parametrize("page", USER_PAGES, ids=_ids(USER_PAGES))
def test_links_resolve(page: Path) -> None:
    broken = [t for t in _local_links(page) if not (page.parent / t).exists()]
    assert not broken, f"{page.name} links to what does not exist: {broken}"


@pytest.mark.parametrize("page", USER_PAGES, ids=_ids(USER_PAGES))
def test_user_pages_stay_inside_the_product(page: Path) -> None:
    """A user page never points at the developers' reference folder, which no installed
    user has, nor links into docs/lab, which the packages do not carry."""
    text = page.read_text(encoding="utf-8")
    assert "../shared" not in text, f"{page.name} names a ../shared path"
    lab = [t for t in _local_links(page) if (page.parent / t).resolve().is_relative_to(DOCS / "lab")]
    assert not lab, f"{page.name} links into docs/lab: {lab}"
