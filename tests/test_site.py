"""The documentation site (mkdocs.yml) builds with ``mkdocs build --strict``: no broken link, no docstring warning.

Built once for the module, then checked: an API entry for every public name of ``genzoo``, a trainer options page
that holds every option of the trainer's parser with the parser's default, the pages the build hook brings in
from outside docs/ (the benchmark report, the zoo's model cards and their sample grids), the math and the KaTeX the
site ships, and, in a headless Chromium (marked ``browser``), three pages as a reader sees them: the math typeset,
no code block cut off, the pictures large enough to read. ``GENZOO_SITE_SCREENSHOTS=DIR`` keeps their screenshots.
"""

import functools
import html
import http.server
import itertools
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import chromium

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


def test_the_site_names_the_project_homes_and_the_installation_page_its_install_lines():
    import yaml

    from genzoo.project import PYPI_INSTALL, REPOSITORY_URL, SITE_URL, SOURCE_INSTALL

    config = yaml.safe_load(re.sub(r"!!python/\S+", "", (ROOT / "mkdocs.yml").read_text()))
    assert (config["site_url"], config["repo_url"]) == (SITE_URL, REPOSITORY_URL)
    page = (ROOT / "docs" / "installation.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for line in ("pip install torch==2.13.0 && pip install -e .",
                 "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"):
        assert line in readme and line in page, line
    assert SOURCE_INSTALL in page and f"once genzoo is on PyPI: `{PYPI_INSTALL}`" in page
    for extra in ("test", "docs", "demo"):
        assert f"`[{extra}]`" in page


def test_zoo_cards_are_titled_with_the_model_name(site):
    page = (site / "zoo" / "flow-matching-digits" / "index.html").read_text()
    assert "<title>flow-matching-digits - genzoo</title>" in page
    assert re.search(r'<h1 id="[^"]*">flow-matching-digits<', page)
    gallery = (site / "zoo" / "index.html").read_text()
    assert '<div class="zoo-gallery">' in gallery
    assert '<a href="flow-matching-digits/"><strong>flow-matching-digits</strong></a>' in gallery


def test_the_benchmark_page_names_its_columns_and_keeps_its_log_at_the_end(site):
    page = (site / "benchmarks" / "index.html").read_text()
    report = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    body = page[page.index("<h1"):]
    first_section = body.index("<h2")
    assert "Machine:" not in body[:first_section] and "Command:" not in body[:first_section]
    if "Machine:" in report:
        assert body.index("How this report was made") > body.rindex("<h2") and "Machine:" in body
    headers = re.findall(r"<th[^>]*>(.*?)</th>", body)
    assert "digits-FD" in headers and "train time (s)" in headers
    assert not {"digits_fd", "w2", "train_seconds", "peak_memory_mib", "mmd2_rbf"} & set(headers)
    if "by calls):" in report:  # section 2's lists, as tables
        assert "by calls):" not in body and "by model calls per sample" in body
    for png in (ROOT / "benchmarks").glob("*.png"):
        if f"]({png.name})" in report:
            assert f'src="{png.name}"' in body


def test_the_site_ships_katex_and_loads_nothing_from_elsewhere(site):
    katex = site / "assets" / "katex"
    for name in ("katex.min.js", "katex.min.css", "contrib/auto-render.min.js", "LICENSE"):
        assert (katex / name).is_file(), name
    fonts = re.findall(r"url\((fonts/[^)]+)\)", (katex / "katex.min.css").read_text())
    assert fonts and all((katex / font).is_file() for font in fonts)
    size = sum(path.stat().st_size for path in (ROOT / "docs" / "assets" / "katex").rglob("*") if path.is_file())
    assert size < 1_000_000, f"docs/assets/katex holds {size} bytes"
    page = (site / "few-step" / "index.html").read_text()
    assert page.count('class="arithmatex"') >= 10
    loaded = re.findall(r'<script[^>]+src="([^"]+)"', page) + [
        re.search(r'href="([^"]+)"', link)[1] for link in re.findall(r"<link[^>]+>", page)
        if re.search(r'rel="(stylesheet|preconnect|preload|modulepreload)"', link)]
    assert loaded and not [url for url in loaded if url.startswith(("http:", "https:", "//"))], loaded


# ------------------------------------------------------------------------------------------ in a real browser
@pytest.fixture(scope="module")
def served(site):
    """The built site on a local HTTP server (127.0.0.1, a free port), the way a reader's browser gets it."""
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    driver = chromium()
    yield driver
    driver.quit()


#: What a page looks like to the reader, measured in the page (after KaTeX ran): the math elements and the ones left
#: unrendered, KaTeX's error boxes, the text still showing TeX, the code blocks wider than their box and not
#: scrollable, the widest element against the window, and the rendered size of the page's pictures.
MEASURE = r"""
const visible = (element) => element.getClientRects().length > 0;
const article = document.querySelector("article");
const math = [...article.querySelectorAll(".arithmatex")];
const cut = [...article.querySelectorAll("pre > code")].filter(visible).filter((code) => {
  const style = getComputedStyle(code);
  return code.scrollWidth > code.clientWidth + 1 && !["auto", "scroll"].includes(style.overflowX);
}).map((code) => code.textContent.slice(0, 80));
const wrapped = [...article.querySelectorAll(".language-bash pre > code")].filter(visible)
  .filter((code) => code.scrollWidth > code.clientWidth + 1).map((code) => code.textContent.slice(0, 80));
const text = article.innerText;
return {
  math: math.length,
  unrendered: math.filter((element) => !element.querySelector(".katex")).map((element) => element.textContent),
  katex: article.querySelectorAll(".katex").length,
  errors: [...article.querySelectorAll(".katex-error")].map((element) => element.textContent),
  raw_tex: ["$$", "\\frac", "\\mathbb", "\\(", "\\["].filter((tex) => text.includes(tex)),
  cut: cut,
  bash_not_wrapped: wrapped,
  bash: article.querySelectorAll(".language-bash pre > code").length,
  page_width: document.documentElement.scrollWidth,
  window_width: window.innerWidth,
  images: [...article.querySelectorAll("img")].filter(visible).map((image) => ({
    src: image.getAttribute("src"), width: image.getBoundingClientRect().width, natural: image.naturalWidth,
  })),
};
"""


def look_at(browser, url: str, name: str, folder: Path) -> dict:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    try:  # until KaTeX has typeset every formula; what it left undone is measured below
        WebDriverWait(browser, 15).until(lambda driver: driver.execute_script(
            "return document.readyState === 'complete'"
            " && [...document.querySelectorAll('.arithmatex')].every((e) => e.querySelector('.katex, .katex-error'))"))
    except TimeoutException:
        pass
    # lazy pictures load when they come into view: scroll through the page once, then back to the top
    browser.execute_script("document.querySelectorAll('img[loading=lazy]').forEach((img) => img.loading = 'eager');")
    WebDriverWait(browser, 30).until(lambda driver: driver.execute_script(
        "return [...document.querySelectorAll('article img')].every((img) => img.complete)"))
    browser.save_screenshot(str(folder / f"{name}.png"))
    return browser.execute_script(MEASURE)


def screenshots(tmp_path_factory) -> Path:
    kept = os.environ.get("GENZOO_SITE_SCREENSHOTS")
    folder = Path(kept) if kept else tmp_path_factory.mktemp("site-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def readable(seen: dict, page: str) -> None:
    assert not seen["unrendered"], f"{page}: math left as TeX: {seen['unrendered'][:3]}"
    assert not seen["errors"], f"{page}: KaTeX could not typeset {seen['errors'][:3]}"
    assert not seen["raw_tex"], f"{page}: TeX shows as text: {seen['raw_tex']}"
    assert not seen["cut"], f"{page}: code blocks cut off (wider than their box, not scrollable): {seen['cut']}"
    assert not seen["bash_not_wrapped"], f"{page}: shell lines do not wrap: {seen['bash_not_wrapped']}"
    assert seen["page_width"] <= seen["window_width"], f"{page}: the page scrolls sideways"
    broken = [image["src"] for image in seen["images"] if image["natural"] == 0]
    assert not broken, f"{page}: pictures that did not load: {broken}"


@pytest.mark.browser
@pytest.mark.parametrize("width", [1400, 700], ids=["desktop", "narrow"])
def test_pages_in_a_real_browser(served, browser, tmp_path_factory, width):
    """Home, a guide full of math, and an API entry with its example, as Chromium renders them: the math typeset by
    the shipped KaTeX, no code block cut off (a long line scrolls or wraps inside its box), the pictures loaded, the
    gallery's thumbnails large enough to read."""
    folder = screenshots(tmp_path_factory)
    browser.set_window_size(width, 1000)
    home = look_at(browser, f"{served}/", f"home-{width}", folder)
    readable(home, "home")
    assert home["bash"] >= 2  # the install lines, wrapped rather than scrolled
    gallery = [image for image in home["images"] if image["src"].endswith("/samples.png")]
    assert len(gallery) >= 4 and min(image["width"] for image in gallery) >= 160, gallery
    assert any(image["src"].endswith("images/demo.png") for image in home["images"])

    few_step = look_at(browser, f"{served}/few-step/", f"few-step-{width}", folder)
    readable(few_step, "few-step")
    assert few_step["math"] >= 10 and few_step["katex"] >= few_step["math"]
    assert {"few_step.png", "one_call.png", "quality_vs_nfe.png"} <= {
        image["src"].rsplit("/", 1)[-1] for image in few_step["images"]}

    api = look_at(browser, f"{served}/api/schedulers/#genzoo.FlowMatchEulerScheduler", f"api-{width}", folder)
    readable(api, "api/schedulers")
    assert api["katex"] >= 2  # the examples' sentences carry math
    assert browser.execute_script(
        "return [...document.querySelectorAll('article pre > code')].some((c) => c.textContent.includes("
        "'genzoo.FlowMatchEulerScheduler()'))"), "the API entry shows no example"


@pytest.mark.browser
def test_every_formula_of_the_site_typesets(site, served, browser, tmp_path_factory):
    """Every page with math (``$...$`` in a guide or a docstring) in Chromium: KaTeX typesets each formula without
    an error, and no TeX is left showing as text."""
    folder = screenshots(tmp_path_factory)
    browser.set_window_size(1400, 1000)
    pages = sorted(path.parent.relative_to(site).as_posix() for path in site.rglob("index.html")
                   if 'class="arithmatex"' in path.read_text())
    assert {"concepts", "few-step", "schedulers", "api/schedulers"} <= set(pages)
    for page in pages:
        seen = look_at(browser, f"{served}/{page}/", "math-" + page.replace("/", "-"), folder)
        assert seen["math"] and not seen["unrendered"] and not seen["errors"] and not seen["raw_tex"], (page, seen)
