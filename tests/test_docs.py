"""The documentation covers the public API, and the README stays short with working links."""

import re
from pathlib import Path

import dsampling_ext

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DIRECTIVE = re.compile(r"^\.\. (currentmodule|autoclass|autofunction|autoexception|automodule)::\s+(\S+)", re.M)


def documented(page: str) -> tuple[set[str], set[str]]:
    """(entries, modules): the full names a page's autodoc directives document, and the modules it
    documents whole (automodule with :members: and :undoc-members:, which follows the module's
    __all__, docstring or not)."""
    text = (DOCS / page).read_text()
    entries, modules, current = set(), set(), ""
    for match in DIRECTIVE.finditer(text):
        kind, name = match.groups()
        if kind == "currentmodule":
            current = name
            continue
        full = name if "." in name or not current else f"{current}.{name}"
        entries.add(full)
        options = re.match(r"(\n   :[\w-]+:[^\n]*)*", text[match.end():]).group(0).split()
        if kind == "automodule" and {":members:", ":undoc-members:"} <= set(options):
            modules.add(full)
    return entries, modules


def test_every_public_name_has_an_api_entry():
    entries, modules = set(), set()
    for page in ("api.md", "api_ops.md"):
        page_entries, page_modules = documented(page)
        entries |= page_entries
        modules |= page_modules
    missing = [f"dsampling_ext.{name}" for name in dsampling_ext.__all__ if f"dsampling_ext.{name}" not in entries]
    assert not missing, f"public names without an entry in docs/api.md: {missing}"
    # The ops page documents the module whole, so every name of its __all__ gets an entry.
    assert "dsampling_ext.ops" in modules, "docs/api_ops.md must document dsampling_ext.ops with :members:"


def test_readme_is_short_and_its_page_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    links = re.findall(r"\]\((docs/[^)#]+\.md)(?:#[^)]*)?\)", readme)
    assert len(links) >= 10  # the "where to go next" list
    assert [link for link in links if not (ROOT / link).is_file()] == []
