"""Every ```python block in README.md and docs/*.md runs, file by file, in one namespace per file; so does the
``Examples:`` section of the API entry of every pipeline and scheduler that genzoo registers."""

import inspect
import re
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^(?P<indent>[ \t]*)```python[^\n]*\n(?P<code>.*?)^(?P=indent)```", re.S | re.M)
#: Pages whose blocks read the zoo from the repository root (and write nothing).
RUN_AT_ROOT = ("zoo.md", "demo.md")
#: Pages whose blocks read the zoo as ``pipelines/...`` and write files: they run in a temporary folder that holds a
#: link to the repository's ``pipelines/``.
READ_THE_ZOO = ("quicktour.md",)
#: The pictures a page's code writes (in its temporary folder) that the page shows from docs/images/.
PICTURES = {"quicktour.md": ("quicktour.png",)}


def code_blocks(text: str) -> list[str]:
    blocks = []
    for match in BLOCK.finditer(text):
        indent = len(match.group("indent"))
        blocks.append("\n".join(line[indent:] for line in match.group("code").splitlines()))
    return blocks


def python_blocks(path):
    return code_blocks(path.read_text())


def test_docs_have_code():
    assert python_blocks(ROOT / "docs" / "schedulers.md"), "docs/schedulers.md should carry runnable examples"


def with_the_zoo(folder: Path) -> Path:
    (folder / "pipelines").symlink_to(ROOT / "pipelines", target_is_directory=True)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_code_blocks_run(path, tmp_path, monkeypatch, request):
    # blocks that write files write them in a temporary folder; zoo.md's and demo.md's read the zoo from the
    # repository root
    monkeypatch.chdir(ROOT if path.name in RUN_AT_ROOT else with_the_zoo(tmp_path) if path.name in READ_THE_ZOO
                      else tmp_path)
    if path.name == "hub.md":  # its blocks push and download: give them the test Hub and a logged-in user
        hub = request.getfixturevalue("hub")
        monkeypatch.setenv("HF_TOKEN", hub.token)
    namespace = {"__name__": f"doc:{path.name}"}
    for i, code in enumerate(python_blocks(path)):
        exec(compile(code, f"{path.name} block {i + 1}", "exec"), namespace)
    for picture in PICTURES.get(path.name, ()):  # the page shows the picture its code makes
        made, shown = (np.asarray(PIL.Image.open(p).convert("RGB"), dtype=float)
                       for p in (tmp_path / picture, ROOT / "docs" / "images" / picture))
        assert made.shape == shown.shape and np.abs(made - shown).mean() < 1.0, (
            f"docs/images/{picture} is not what {path.name}'s code makes now: copy the new one across")


def registered_classes() -> list[type]:
    """The pipelines and schedulers that genzoo itself registers: the classes whose API entries carry an example."""
    from genzoo import registry

    return [entry.load() for kind in ("pipeline", "scheduler") for entry in registry.entries(kind)
            if entry.package == "genzoo"]


def examples(cls: type) -> list[str]:
    """The python blocks of the ``Examples:`` section of ``cls``'s docstring (its last section)."""
    doc = inspect.getdoc(cls) or ""
    _, found, section = doc.partition("\nExamples:\n")
    return code_blocks(section) if found else []


def test_every_registered_pipeline_and_scheduler_has_an_example():
    classes = registered_classes()
    names = {cls.__name__ for cls in classes}
    assert {"DDPMPipeline", "FlowMatchingPipeline", "FlowMapPipeline", "GANPipeline", "VAEPipeline",
            "DDPMScheduler", "FlowMatchEulerScheduler", "FlowMatchHeunScheduler", "FlowMapEulerScheduler"} <= names
    missing = [cls.__name__ for cls in classes if not examples(cls)]
    assert not missing, f"no ```python block under 'Examples:' in the docstring of {', '.join(missing)}"


@pytest.mark.slow
@pytest.mark.parametrize("cls", registered_classes(), ids=lambda cls: cls.__name__)
def test_docstring_examples_run(cls, tmp_path, monkeypatch):
    """The examples of the API reference (mkdocstrings renders the ``Examples:`` section) read the zoo as
    ``pipelines/...``, as a user in the repository's root would."""
    monkeypatch.chdir(with_the_zoo(tmp_path))
    namespace = {"__name__": f"doc:{cls.__name__}"}
    for i, code in enumerate(examples(cls)):
        exec(compile(code, f"{cls.__name__} example {i + 1}", "exec"), namespace)
