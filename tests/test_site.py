"""The documentation site (mkdocs.yml) builds with ``mkdocs build --strict``: no broken link, no docstring warning.

Built once for the module, then checked: an API entry for every public name of ``genzoo``, a trainer options page
that holds every option of the trainer's parser with the parser's default, and the pages the build hook brings in
from outside docs/ (the benchmark report, the zoo's model cards and their sample grids).
"""

import html
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import genzoo
from genzoo.training import build_parser
from genzoo.training.options_doc import METHOD_ANCHOR, builtin_methods, format_default as shown

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"<tr>\s*<td><code>(--[\w-]+)</code></td>\s*<td>(.*?)</td>", re.DOTALL)
SECTION = re.compile(r'<h2 id="([^"]+)"')


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site_dir = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-6000:]}"
    return site_dir


def test_site_builds_strictly(site):
    assert (site / "index.html").is_file()
    assert (site / "options" / "index.html").is_file()


def public_names():
    return [name for name in genzoo.__all__ if name != "__version__"]


def test_every_public_name_has_an_api_entry(site):
    pages = "".join(path.read_text() for path in sorted((site / "api").glob("*/index.html")))
    missing = [name for name in public_names() if f'id="genzoo.{name}"' not in pages]
    assert not missing, f"no ::: entry in docs/api/ for genzoo.{', genzoo.'.join(missing)}"


def test_api_pages_render_signatures_and_parameters(site):
    page = (site / "api" / "schedulers" / "index.html").read_text()
    entry = page[page.index('id="genzoo.DDPMScheduler"'):]
    assert "doc-signature" in entry[:5000]
    assert "num_train_timesteps" in entry[:20000] and "Parameters:" in entry[:20000]


def cell_text(cell: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()


def option_defaults(page: str) -> dict[str, dict[str, str]]:
    """``{section id: {option: default as shown}}`` of the options page (its sections are its ``h2``s)."""
    starts = [(m.start(), m.group(1)) for m in SECTION.finditer(page)] + [(len(page), None)]
    sections = {}
    for (start, name), (end, _) in itertools.pairwise(starts):
        sections[name] = {option: cell_text(default) for option, default in ROW.findall(page[start:end])}
    return sections


def test_options_page_matches_the_trainer_parser(site):
    page = (site / "options" / "index.html").read_text()
    sections = option_defaults(page)
    common = sections["options-of-every-method"]
    methods = builtin_methods()
    assert {"gan", "vae", "ddpm", "flow-matching", "rectified-flow", "meanflow"} <= set(methods)
    for method in methods:
        own = sections.get(METHOD_ANCHOR.format(method))
        assert own is not None, f"the options page has no section for --method {method}"
        for action in build_parser(method)._actions:
            if not action.option_strings or action.dest == "help":
                continue
            option = action.option_strings[0]
            assert option in own or option in common, f"{option} (--method {method}) is not on the options page"
            assert own.get(option, common.get(option)) == shown(action.default), (
                f"{option} with --method {method}: the page shows {own.get(option, common.get(option))!r}, "
                f"the parser's default is {shown(action.default)!r}"
            )


def test_pages_from_outside_docs(site):
    report = site / "benchmarks" / "index.html"
    assert report.is_file() and "genzoo benchmark results" in report.read_text()
    for png in (ROOT / "benchmarks").glob("*.png"):
        assert (site / "benchmarks" / png.name).is_file()
    cards = sorted((ROOT / "pipelines").glob("*/README.md"))
    assert cards
    for card in cards:
        name = card.parent.name
        assert (site / "zoo" / name / "index.html").is_file(), f"no zoo card page for pipelines/{name}"
        assert (site / "zoo" / name / "samples.png").is_file()
    zoo = (site / "zoo" / "index.html").read_text()
    assert 'src="flow-matching-digits/samples.png"' in zoo and 'href="flow-matching-digits/"' in zoo
