"""The install lines genzoo writes where users read them (issue 26): model cards, the ``genzoo_hub.py`` shim, the
zoo's folders and the loading guide give the line that works today -- from the source repository -- and name
``pip install genzoo`` only as what works once genzoo is on PyPI. The zoo's cards and shims are the ones the current
code writes (``python pipelines/build.py --cards`` rewrites them)."""

import ast
import re
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from genzoo.hub import make_model_card
from genzoo.pipelines.loading import SHIM_MODULE, SHIM_SOURCE
from genzoo.project import PYPI_INSTALL, REPOSITORY_URL, SOURCE_INSTALL

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "pipelines"
ZOO_FOLDERS = sorted(p for p in ZOO.iterdir() if (p / "model_index.json").is_file())
#: ``pip install genzoo`` or ``pip install "genzoo[extra]"`` -- from an index, which has no genzoo yet -- and not
#: ``pip install "genzoo @ git+..."``, which installs from the repository.
FROM_AN_INDEX = re.compile(r"""pip install ["']?genzoo(\[[^\]]*\])?(?!\s*@)(?=["'`\s).,;]|$)""")
ONCE_PUBLISHED = "once genzoo is on PyPI: "


def unqualified_index_installs(text: str) -> list[str]:
    """The lines of ``text`` that tell a reader to install genzoo from an index without saying it is not there yet."""
    return [text[max(0, m.start() - 60):m.end()] for m in FROM_AN_INDEX.finditer(text)
            if ONCE_PUBLISHED not in text[max(0, m.start() - len(ONCE_PUBLISHED) - 2):m.start()]]


def test_the_pattern_tells_an_index_install_from_a_repository_install():
    assert unqualified_index_installs("With genzoo (`pip install genzoo`):")
    assert unqualified_index_installs('needs Gradio: pip install "genzoo[demo]".')
    assert not unqualified_index_installs(f'{SOURCE_INSTALL} or pip install "genzoo[demo] @ git+{REPOSITORY_URL}"')
    assert not unqualified_index_installs(f"(once genzoo is on PyPI: `{PYPI_INSTALL}`)")
    assert not unqualified_index_installs("pip install genzoo-example-plugin")


def test_a_model_card_says_how_to_install_genzoo_today():
    card = make_model_card(ZOO / "gan-digits", "user/gan-digits")
    how_to_use = card.text.split("## How to use", 1)[1]
    assert f"```bash\n{SOURCE_INSTALL}\n```" in how_to_use
    assert f"{ONCE_PUBLISHED}`{PYPI_INSTALL}`" in how_to_use
    assert "--index-url https://download.pytorch.org/whl/cpu" in how_to_use  # torch's CPU build, on a CPU machine
    assert unqualified_index_installs(str(card)) == []


def test_the_shim_says_how_to_install_genzoo_and_still_only_hands_over_the_registry():
    tree = ast.parse(SHIM_SOURCE)
    docstring = ast.get_docstring(tree)
    assert SOURCE_INSTALL in docstring and f"{ONCE_PUBLISHED}{PYPI_INSTALL}" in docstring
    assert unqualified_index_installs(SHIM_SOURCE) == []
    assert [ast.unparse(node) for node in tree.body[1:]] == [
        "import genzoo.registry", "def __getattr__(name):\n    return genzoo.registry.find_component_class(name)"]


@pytest.mark.parametrize("folder", ZOO_FOLDERS, ids=lambda p: p.name)
def test_the_zoo_folders_carry_the_current_card_text_and_shims(folder):
    card = ModelCard.load(folder / "README.md")
    assert f"```bash\n{SOURCE_INSTALL}\n```" in card.text and unqualified_index_installs(card.text) == []
    assert f"[genzoo repository]({REPOSITORY_URL})" in card.text
    shims = sorted(folder.rglob(f"{SHIM_MODULE}.py"))
    assert shims and all(path.read_text() == SHIM_SOURCE for path in shims), "run python pipelines/build.py --cards"


@pytest.mark.parametrize("path", ["src/genzoo/pipelines/loading.py", "docs/hub.md", "docs/demo.md"])
def test_the_guides_and_sources_of_these_lines_name_no_index_install_unqualified(path):
    assert unqualified_index_installs((ROOT / path).read_text(encoding="utf-8")) == []
