"""Every ```python block in README.md and docs/*.md runs, file by file, in one namespace per file."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^(?P<indent>[ \t]*)```python[^\n]*\n(?P<code>.*?)^(?P=indent)```", re.S | re.M)


def python_blocks(path):
    blocks = []
    for match in BLOCK.finditer(path.read_text()):
        indent = len(match.group("indent"))
        blocks.append("\n".join(line[indent:] for line in match.group("code").splitlines()))
    return blocks


def test_docs_have_code():
    assert python_blocks(ROOT / "docs" / "schedulers.md"), "docs/schedulers.md should carry runnable examples"


@pytest.mark.slow
@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_code_blocks_run(path, tmp_path, monkeypatch, request):
    # blocks that write files write them in a temporary folder; zoo.md's and demo.md's read the zoo from the
    # repository root
    monkeypatch.chdir(ROOT if path.name in ("zoo.md", "demo.md") else tmp_path)
    if path.name == "hub.md":  # its blocks push and download: give them the test Hub and a logged-in user
        hub = request.getfixturevalue("hub")
        monkeypatch.setenv("HF_TOKEN", hub.token)
    namespace = {"__name__": f"doc:{path.name}"}
    for i, code in enumerate(python_blocks(path)):
        exec(compile(code, f"{path.name} block {i + 1}", "exec"), namespace)
