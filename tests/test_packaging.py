"""Packaging (issue 26, "install, true everywhere"): the project's addresses are declared once in code
(``genzoo.project``) and the same in setup.cfg and mkdocs.yml; what ``python -m build`` makes of the source -- the
sdist, and the wheel built from it -- carries what a user needs; and that wheel, installed into a fresh virtual
environment, works from a folder outside the repository (no source tree, no zoo on the path): ``genzoo sample`` of a
Hub id, ``genzoo demo`` of a given model answering a request, and ``genzoo demo`` without models refusing with the fix.

Installing every dependency into a fresh environment takes minutes, so the wheel is installed with ``--no-deps`` and
the environment sees the test environment's packages (torch, Diffusers, Gradio, ...) through a ``.pth`` file; the
wheel's ``Requires-Dist`` is compared with setup.cfg's ``install_requires`` instead, and every run checks that the
``genzoo`` imported is the wheel's, not the source tree's."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest
from helpers import fetch_local, serving
from packaging.requirements import Requirement

import genzoo
from genzoo.project import ISSUES_URL, PYPI_INSTALL, REPOSITORY_URL, SITE_URL, SOURCE_INSTALL, SOURCE_REQUIREMENT

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "genzoo"
#: What the build reads besides the package (setup.cfg's long_description and license_files, the build backend).
BUILD_FILES = ("pyproject.toml", "setup.cfg", "README.md", "LICENSE")
#: The longest a command of the installed wheel may take here (imports of torch, Diffusers, Gradio on 2 busy cores).
COMMAND_SECONDS = 180


def setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.optionxform = str  # entry point names keep their case
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    return config


def pairs(text: str) -> dict[str, str]:
    """``name = value`` lines of a setup.cfg value (project_urls, an entry point group)."""
    return dict(tuple(part.strip() for part in line.split("=", 1)) for line in text.strip().splitlines())


def requirements(lines) -> list[str]:
    """Requirements in one normal form (``packaging``'s), in order."""
    return [str(Requirement(line)) for line in lines if line.strip()]


# ------------------------------------------------------------------------------------------------ the addresses
def test_setup_cfg_and_mkdocs_declare_the_addresses_of_genzoo_project():
    metadata = setup_cfg()["metadata"]
    assert metadata["url"] == REPOSITORY_URL
    assert pairs(metadata["project_urls"]) == {"Documentation": SITE_URL, "Source": REPOSITORY_URL,
                                               "Issues": ISSUES_URL}
    mkdocs = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"^site_url:\s*(\S+)\s*$", mkdocs, re.M).group(1) == SITE_URL
    assert re.search(r"^repo_url:\s*(\S+)\s*$", mkdocs, re.M).group(1) == REPOSITORY_URL


def test_the_install_lines_install_genzoo_from_the_declared_repository():
    requirement = Requirement(SOURCE_REQUIREMENT)
    assert requirement.name == "genzoo" and requirement.url == f"git+{REPOSITORY_URL}"
    assert SOURCE_INSTALL == f'pip install "{SOURCE_REQUIREMENT}"' and PYPI_INSTALL == "pip install genzoo"


# --------------------------------------------------------------------------------------------- build and install
@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """``python -m build`` of a copy of the source (the sdist, then the wheel built from the sdist), without build
    isolation (no network: the test environment's setuptools builds it). The copy keeps the repository's own
    ``src/genzoo.egg-info`` (which the editable install is read from) untouched."""
    import importlib.util

    if importlib.util.find_spec("build") is None:
        pytest.fail("the packaging tests need pypa's build: pip install build (it is in setup.cfg's test extra)")
    top = tmp_path_factory.mktemp("packaging")
    tree = top / "source"
    tree.mkdir()
    for name in BUILD_FILES:
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    dist = top / "dist"
    result = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--skip-dependency-check",
                             "--outdir", str(dist), str(tree)], capture_output=True, text=True,
                            timeout=COMMAND_SECONDS, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    assert [p.name for p in wheels] == [f"genzoo-{genzoo.__version__}-py3-none-any.whl"]
    assert [p.name for p in sdists] == [f"genzoo-{genzoo.__version__}.tar.gz"]
    return {"top": top, "wheel": wheels[0], "sdist": sdists[0]}


def package_files() -> set[str]:
    """Every file of the package in the source tree, as ``genzoo/...`` (code and package data alike)."""
    return {p.relative_to(SOURCE.parent).as_posix() for p in SOURCE.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
            and not any(part.startswith(".") for part in p.relative_to(SOURCE).parts)}


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_wheel_and_the_sdist_carry_what_a_user_needs(built):
    files = package_files()
    data = {name for name in files if name.startswith("genzoo/metrics/") and name.endswith((".safetensors", ".json"))}
    assert len(data) >= 4  # the digits and shapes classifiers: weights and their description
    dist_info = f"genzoo-{genzoo.__version__}.dist-info"
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = set(wheel.namelist())
        assert {n for n in names if n.startswith("genzoo/")} == files  # every module and data file, nothing else
        licenses = [n for n in names if n.startswith(f"{dist_info}/") and n.endswith("/LICENSE")]
        assert len(licenses) == 1 and wheel.read(licenses[0]) == (ROOT / "LICENSE").read_bytes()
        entry_points = configparser.ConfigParser(interpolation=None)
        entry_points.optionxform = str
        entry_points.read_string(wheel.read(f"{dist_info}/entry_points.txt").decode())
        metadata = wheel.read(f"{dist_info}/METADATA").decode()
    declared = {group: pairs(text) for group, text in setup_cfg()["options.entry_points"].items()}
    assert {group: dict(entry_points[group]) for group in entry_points.sections()} == declared
    assert declared["console_scripts"] == {"genzoo": "genzoo.cli:main"}
    assert {"genzoo.pipelines", "genzoo.models", "genzoo.methods", "genzoo.schedulers", "genzoo.paths",
            "genzoo.datasets"} <= set(declared)
    assert f"Project-URL: Documentation, {SITE_URL}" in metadata.splitlines()
    assert f"Project-URL: Source, {REPOSITORY_URL}" in metadata.splitlines()

    with tarfile.open(built["sdist"]) as sdist:
        top = f"genzoo-{genzoo.__version__}/"
        members = {m.name[len(top):] for m in sdist.getmembers() if m.isfile()}
        assert sdist.extractfile(top + "LICENSE").read() == (ROOT / "LICENSE").read_bytes()
    assert {f"src/{name}" for name in files} <= members
    assert set(BUILD_FILES) | {"PKG-INFO"} <= members


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_wheel_requires_what_setup_cfg_declares(built):
    with zipfile.ZipFile(built["wheel"]) as wheel:
        metadata = wheel.read(f"genzoo-{genzoo.__version__}.dist-info/METADATA").decode()
    required = [line.split(":", 1)[1] for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    options = setup_cfg()["options"]
    assert requirements(r for r in required if "extra ==" not in r) == requirements(
        line for line in options["install_requires"].splitlines() if not line.strip().startswith("#"))
    extras = setup_cfg()["options.extras_require"]
    for extra in extras:
        marker = f'extra == "{extra}"'
        assert requirements(r.split(";")[0] for r in required if marker in r) == requirements(
            extras[extra].splitlines()), extra
    assert "build" in {Requirement(line).name for line in extras["test"].splitlines() if line.strip()}


@pytest.fixture(scope="module")
def installed(built) -> Path:
    """A fresh virtual environment with only the wheel installed (``--no-deps``); a ``.pth`` file hands it the test
    environment's site-packages for the dependencies. Those folders are appended to ``sys.path`` as plain folders, so
    the ``.pth`` files in them -- the editable install's path to the source tree among them -- are not run, and the
    environment's own site-packages, holding the wheel, comes first. Returns the environment's folder."""
    env = built["top"] / "venv"
    venv.create(env, with_pip=False, symlinks=os.name != "nt")
    python = env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                             "--no-index", "--no-cache-dir", "--disable-pip-version-check", str(built["wheel"])],
                            capture_output=True, text=True, timeout=COMMAND_SECONDS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    own = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip())
    shared = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (own / "_genzoo_test_dependencies.pth").write_text("".join(f"{path}\n" for path in sorted(shared)))
    return env


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a command of the installed wheel: one torch thread, a Hugging Face home of its own (the
    Hub settings of the ``hub`` fixture, where a test uses it, come with ``os.environ``), nothing from PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    home = tmp_path / "hf-home"
    env.update(OMP_NUM_THREADS="1", PYTHONNOUSERSITE="1", HF_HOME=str(home), HF_HUB_CACHE=str(home / "hub"),
               HF_MODULES_CACHE=str(home / "modules"), GRADIO_ANALYTICS_ENABLED="False",
               MPLCONFIGDIR=str(tmp_path / "mpl"), **extra)
    return env


def command(env: Path, name: str) -> str:
    return str(env / ("Scripts" if os.name == "nt" else "bin") / name)


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_installed_wheel_samples_a_hub_model_outside_the_repository(installed, hub, tmp_path):
    from genzoo.cli import main

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = environment(tmp_path)
    found = subprocess.run(
        [command(installed, "python"), "-c", "import json, genzoo, importlib.metadata as m; print(json.dumps("
         "[genzoo.__file__, m.version('genzoo'), str(m.distribution('genzoo').locate_file(''))]))"],
        cwd=work, env=env, capture_output=True, text=True, timeout=COMMAND_SECONDS)
    assert found.returncode == 0, found.stderr[-3000:]
    module, version, location = json.loads(found.stdout)
    assert Path(module).resolve().is_relative_to(installed.resolve()), module  # the wheel's genzoo, not src/
    assert version == genzoo.__version__ and Path(location).resolve().is_relative_to(installed.resolve())

    pipe = genzoo.load_pipeline(ROOT / "pipelines" / "gan-digits")
    pipe.push_to_hub("user/gan-digits", token=hub.token)
    hub.server.requests.clear()
    out = work / "samples.npy"
    sampled = subprocess.run([command(installed, "genzoo"), "sample", "user/gan-digits", "--num-samples", "4",
                              "--seed", "3", "--out", str(out)],
                             cwd=work, env=env, capture_output=True, text=True, timeout=COMMAND_SECONDS)
    assert sampled.returncode == 0, sampled.stdout[-3000:] + sampled.stderr[-3000:]
    downloads = [path for method, path in hub.server.requests if "user/gan-digits/resolve/" in path]
    assert downloads, f"the installed genzoo did not download the model from the Hub: {hub.server.requests}"
    assert (Path(env["HF_HUB_CACHE"]) / "models--user--gan-digits").is_dir()
    reference = tmp_path / "reference.npy"
    assert main(["sample", str(ROOT / "pipelines" / "gan-digits"), "--num-samples", "4", "--seed", "3",
                 "--out", str(reference)]) == 0
    import numpy as np

    np.testing.assert_array_equal(np.load(out), np.load(reference))  # the same numbers as the source tree's genzoo


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_installed_wheel_serves_a_demo_of_a_given_model_and_refuses_one_without(installed, tmp_path):
    pytest.importorskip("gradio")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = environment(tmp_path)
    refused = subprocess.run([command(installed, "genzoo"), "demo"], cwd=work, env=env, capture_output=True,
                             text=True, timeout=COMMAND_SECONDS)
    assert refused.returncode == 2, refused.stdout[-3000:] + refused.stderr[-3000:]
    assert refused.stderr.startswith("genzoo: error: ") and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert "genzoo demo PATH_OR_REPO_ID" in refused.stderr  # how to pass models

    model = shutil.copytree(ROOT / "pipelines" / "gan-digits", work / "my-gan")
    with serving([model], program=[command(installed, "genzoo")], env=env, cwd=work, seconds=COMMAND_SECONDS) as url:
        assert "my-gan" in fetch_local(url)  # the page lists the given model
