"""The test suite's own layout: what tests share lives in tests/helpers.py (or in genzoo.testing, for what plugin
authors need too), so no test module imports another; every marker a test uses is registered; the example plugins
installed for one test stay with that test."""

import ast
import configparser
import functools
import sys
from pathlib import Path

from genzoo import registry
from helpers import PLUGINS

TESTS = Path(__file__).resolve().parent
PLUGINS_PATH = str(PLUGINS)


@functools.cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def imported_modules(path: Path) -> set[str]:
    tree = parsed(path)
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_no_test_module_imports_another():
    test_modules = {path.stem for path in TESTS.rglob("test_*.py")}
    offenders = {
        str(path.relative_to(TESTS)): sorted(name for name in imported_modules(path)
                                             if name.partition(".")[0] in test_modules)
        for path in sorted(TESTS.rglob("*.py"))
    }
    offenders = {name: imports for name, imports in offenders.items() if imports}
    assert not offenders, f"move what these import into tests/helpers.py: {offenders}"


def test_the_tests_mirror_the_package():
    """A folder of tests is named after the part of genzoo it covers (a subpackage or module of ``src/genzoo``); test
    module names are unique across folders (pytest imports them by their base name)."""
    import genzoo

    package = Path(genzoo.__file__).parent
    parts = {p.name for p in package.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    parts |= {p.stem for p in package.glob("*.py")}
    folders = {path.parent.name for path in TESTS.rglob("test_*.py") if path.parent != TESTS}
    assert folders and folders <= parts, f"test folders that name no part of genzoo: {sorted(folders - parts)}"
    names = [path.name for path in TESTS.rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_every_marker_used_is_registered():
    """pytest only warns about an unregistered marker, and a misspelt ``slow`` would put a slow test in the fast loop."""
    config = configparser.ConfigParser()
    config.read(TESTS.parent / "setup.cfg")
    registered = {line.split(":")[0].strip() for line in config["tool:pytest"]["markers"].splitlines() if line.strip()}
    builtin = {"parametrize", "skip", "skipif", "xfail", "usefixtures", "filterwarnings"}
    used = {}
    for path in sorted(TESTS.rglob("test_*.py")):
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "mark" \
                    and isinstance(node.value.value, ast.Name) and node.value.value.id == "pytest":
                used.setdefault(node.attr, path.name)
    unknown = {marker: where for marker, where in used.items() if marker not in registered | builtin}
    assert not unknown, f"register these markers in setup.cfg [tool:pytest] or fix their names: {unknown}"
    assert {"slow", "subprocess", "browser"} <= registered


def test_plugins_installed_for_a_test_that_also_changes_sys_path(monkeypatch, tmp_path, example_plugins):
    """(Set-up of the next test.) monkeypatch, set up before example_plugins, saves ``sys.path`` -- plugins included --
    at its first ``syspath_prepend`` and restores it after example_plugins is torn down."""
    monkeypatch.syspath_prepend(str(tmp_path))
    assert example_plugins in sys.path and "moment-matching" in registry.names("method")


def test_the_example_plugins_are_gone_after_the_test_that_installed_them():
    assert PLUGINS_PATH not in sys.path and "moment-matching" not in registry.names("method")
