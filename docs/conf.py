"""Sphinx configuration of the dsampling_ext documentation (`make docs` builds it into docs/_build)."""

project = "dsampling_ext"
author = "the dsampling_ext developers"
copyright = "the dsampling_ext developers"
release = version = "0.1"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3

# The API pages document the public names from their Google-style docstrings.
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# Every cross-reference must resolve (`make docs` runs with -n -W), except to the libraries the
# signatures name (their inventories would be downloaded, and the build reaches no network) and
# the shape symbols of the docstrings' argument types (``values (Tensor[N])``).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:class", r"[A-Z]|\d+|capacity"),
    (r"py:(class|obj|func|meth|mod|exc|data|attr)",
     r"(torch|numpy|np|typing|collections|tqdm|lightning|transformers|accelerate)(\..*)?"),
    (r"py:meth", r"get_last_lr"),  # torch's LRScheduler docstrings, inherited by ProgressScheduler
    (r"py:(class|obj)", r"(Tensor|Optional|Union|Callable|Iterable|Iterator|Any|Sequence|Mapping|Sampler|Dataset|DataLoader|nn\.Module|optional)"),
]

html_theme = "furo"
html_title = f"dsampling_ext {release}"
html_static_path = []
