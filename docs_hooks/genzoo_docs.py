"""mkdocs hooks of genzoo's documentation site (named in mkdocs.yml under ``hooks:``).

1. The guides in docs/ link to files outside docs/ (the zoo's model cards and sample grids in ``pipelines/<name>/``,
   the benchmark report in ``benchmarks/``), so that they read well on the repository page. ``on_files`` adds those
   files to the site as generated files, without copying anything into the repository:

   - ``benchmarks/RESULTS.md`` -> the page ``benchmarks/`` (with the PNGs of ``benchmarks/`` next to it),
   - ``pipelines/<name>/README.md`` -> the page ``zoo/<name>/`` (with ``samples.png`` next to it),

   and ``on_page_markdown`` rewrites every relative link of a page that points at one of those files to its place
   in the site. The markdown files themselves are never changed.
2. ``docs/options.md`` holds a marker that ``on_page_markdown`` replaces with the trainer's options, generated from
   its parser by :func:`genzoo.training.options_markdown`.
3. An API page lists genzoo's own registered entries of a kind with a marker, ``<!-- genzoo:registered method -->``
   (or ``scheduler``, ``pipeline``, ``model``, ``dataset``, ``path``), which ``on_page_markdown`` replaces with one
   mkdocstrings block per entry that genzoo's ``setup.cfg`` registers, in the registry's order: adding a built-in is
   one entry-point line, and its API page follows.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File, Files, InclusionLevel

ROOT = Path(__file__).resolve().parents[1]
#: The line of docs/options.md that the trainer's options replace.
OPTIONS_MARKER = "<!-- genzoo:trainer-options -->"
#: Site path (src_uri) of each file from outside docs/, by its absolute path; filled in by on_files.
OUTSIDE: dict[Path, str] = {}
# a markdown link or image target: ](target) or ](target#anchor) or ](target "title")
#: ``<!-- genzoo:registered KIND -->``: the API reference of genzoo's own entries of that registry kind.
REGISTERED_MARKER = re.compile(r"<!-- genzoo:registered (?P<kind>[a-z]+) -->")
LINK = re.compile(r"(\]\()(?P<target>[^)\s#]+)(?P<rest>(#[^)\s]*)?(\s+\"[^\"]*\")?\))")


def outside_files() -> dict[Path, str]:
    """The files from outside docs/ that the site carries, and their site paths (src_uri)."""
    found = {ROOT / "benchmarks" / "RESULTS.md": "benchmarks/index.md"}
    for png in sorted((ROOT / "benchmarks").glob("*.png")):
        found[png] = f"benchmarks/{png.name}"
    for card in sorted((ROOT / "pipelines").glob("*/README.md")):
        name = card.parent.name
        found[card] = f"zoo/{name}/index.md"
        for png in sorted(card.parent.glob("*.png")):
            found[png] = f"zoo/{name}/{png.name}"
    return {path.resolve(): uri for path, uri in found.items()}


def on_files(files: Files, config) -> Files:
    OUTSIDE.clear()
    OUTSIDE.update(outside_files())
    for path, uri in OUTSIDE.items():
        if files.get_file_from_path(uri) is not None:
            raise ValueError(f"docs/{uri} exists and would hide {path.relative_to(ROOT)} in the site: rename one.")
        file = File.generated(config, uri, abs_src_path=str(path))
        if uri.startswith("zoo/"):  # the model cards: linked from zoo.md, not listed in the nav one by one
            file.inclusion = InclusionLevel.NOT_IN_NAV
        files.append(file)
    return files


def rewrite_links(markdown: str, page_src_uri: str, page_abs_path: str | Path) -> str:
    """``markdown`` with each relative link to a file of :data:`OUTSIDE` pointing at that file's place in the site.

    Args:
        markdown: the page's markdown.
        page_src_uri: the page's path in the site (``zoo.md``, ``benchmarks/index.md``).
        page_abs_path: the markdown file the page is read from (a link is relative to it).
    """
    folder = Path(page_abs_path).parent
    site_folder = posixpath.dirname(page_src_uri)

    def replace(match: re.Match) -> str:
        target = match.group("target")
        if "://" in target or target.startswith(("/", "mailto:")):
            return match.group(0)
        uri = OUTSIDE.get((folder / target).resolve())
        if uri is None:
            return match.group(0)
        return match.group(1) + posixpath.relpath(uri, site_folder or ".") + match.group("rest")

    return LINK.sub(replace, markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:
    markdown = rewrite_links(markdown, page.file.src_uri, page.file.abs_src_path)
    if OPTIONS_MARKER in markdown:
        from genzoo.training import options_markdown

        markdown = markdown.replace(OPTIONS_MARKER, options_markdown())
    return REGISTERED_MARKER.sub(lambda match: registered_reference(match["kind"]), markdown)


def registered_reference(kind: str) -> str:
    """One mkdocstrings block per entry of ``kind`` that genzoo itself registers (plugins' are their own docs'). An
    entry whose target is an object rather than a class (a data set, a path instance) is documented by its class."""
    from genzoo import registry

    blocks = []
    for entry in registry.entries(kind):
        if entry.package != "genzoo":
            continue
        obj = entry.load()
        cls = obj if isinstance(obj, type) else type(obj)
        target = f"{cls.__module__}.{cls.__qualname__}"
        if any(f"::: {target}\n" in block for block in blocks):
            continue
        blocks.append(f"::: {target}\n    options:\n      members: false\n")
    return "\n".join(blocks)
