"""Where genzoo lives, and how it is installed: the one place the code takes the project's addresses from (model
cards, the Diffusers shim, ``genzoo space``). ``setup.cfg`` declares the same (``url``, ``project_urls``);
tests/test_packaging.py ties the two together.

genzoo is not on PyPI yet: what installs it today is the source repository (:data:`SOURCE_REQUIREMENT`);
``pip install genzoo`` (:data:`PYPI_INSTALL`) works once it is published.
"""

from __future__ import annotations

#: The source repository.
REPOSITORY_URL = "https://github.com/genzoo/genzoo"
#: The documentation site (mkdocs.yml's ``site_url``).
SITE_URL = "https://genzoo.github.io/genzoo/"
#: Where issues are reported.
ISSUES_URL = f"{REPOSITORY_URL}/issues"

#: The pip requirement that installs genzoo from its repository (works today).
SOURCE_REQUIREMENT = f"genzoo @ git+{REPOSITORY_URL}"
#: The command that installs genzoo from its repository.
SOURCE_INSTALL = f'pip install "{SOURCE_REQUIREMENT}"'
#: The command that installs genzoo once it is on PyPI.
PYPI_INSTALL = "pip install genzoo"
#: How to get a CPU-only torch first (a plain ``torch`` requirement can pull a multi-GB CUDA build).
TORCH_CPU_INSTALL = "pip install torch --index-url https://download.pytorch.org/whl/cpu"


def source_requirement(extra: str | None = None, ref: str | None = None) -> str:
    """The pip requirement that installs genzoo (with ``extra``, e.g. ``"demo"``) from its repository, at the
    commit, tag or branch ``ref`` (default: the default branch)."""
    name = f"genzoo[{extra}]" if extra else "genzoo"
    return f"{name} @ git+{REPOSITORY_URL}" + (f"@{ref}" if ref else "")
