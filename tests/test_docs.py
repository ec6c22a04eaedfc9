"""The documentation covers the public API, and the README stays short with working links."""

import re
from pathlib import Path

import pytest

import dsampling_ext
from dsampling_ext import ops

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DIRECTIVE = re.compile(r"^\.\. (currentmodule|autoclass|autofunction|autoexception|automodule|py:data)::\s+(\S+)",
                       re.M)


def documented(page: str) -> set[str]:
    """The full names that a page's autodoc directives give an entry (`make docs` fails when one
    of them does not render)."""
    entries, current = set(), ""
    for kind, name in DIRECTIVE.findall((DOCS / page).read_text()):
        if kind == "currentmodule":
            current = name
        else:
            entries.add(name if "." in name or not current else f"{current}.{name}")
    return entries


@pytest.mark.parametrize("module, page", [(dsampling_ext, "api.md"), (ops, "api_ops.md")], ids=["package", "ops"])
def test_every_public_name_has_an_api_entry(module, page):
    entries = documented("api.md") | documented("api_ops.md")
    missing = [name for name in module.__all__ if f"{module.__name__}.{name}" not in entries]
    assert not missing, f"public names of {module.__name__} without an entry in docs/{page}: {missing}"


def test_readme_is_short_and_its_page_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    links = re.findall(r"\]\((docs/[^)#]+\.md)(?:#[^)]*)?\)", readme)
    assert len(links) >= 10  # the "where to go next" list
    assert [link for link in links if not (ROOT / link).is_file()] == []
