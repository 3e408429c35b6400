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
3. Pages brought in from outside are rendered for the site, their files left as they are: the benchmark report
   gets its run's log lines (command, machine, versions, reruns) moved from its top into a collapsed note at its end,
   named columns (``digits-FD``, ``train time (s)``) instead of the keys of ``results.json``, and its quality-by-calls
   lists as tables (:func:`render_results`); a zoo card is titled with the model's name rather than its folder's
   path; and in a guide, a table whose every cell is a zoo pipeline's sample grid (docs/zoo.md's) becomes a gallery
   of cards, each with the pipeline's name under a thumbnail large enough to read (:func:`zoo_galleries`).
4. An API page lists genzoo's own registered entries of a kind with a marker, ``<!-- genzoo:registered method -->``
   (or ``scheduler``, ``pipeline``, ``model``, ``dataset``, ``path``), which ``on_page_markdown`` replaces with one
   mkdocstrings block per entry that genzoo's ``setup.cfg`` registers, in the registry's order: adding a built-in is
   one entry-point line, and its API page follows.
"""

from __future__ import annotations

import itertools
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
    uri = page.file.src_uri
    if uri == "benchmarks/index.md":
        page.meta.setdefault("hide", ["navigation"])  # its wide tables get the page's width
        markdown = render_results(markdown)
    elif uri.startswith("zoo/"):
        markdown = re.sub(r"\A(# )pipelines/(\S+)", r"\1\2", markdown)  # "# pipelines/gan-digits" -> "# gan-digits"
    else:
        markdown = zoo_galleries(markdown)
    if uri != "benchmarks/index.md":  # the zoo's generated tables name their columns by results.json's keys too
        markdown = "\n".join(named_header(line, following) for line, following
                              in itertools.zip_longest(markdown.split("\n"), markdown.split("\n")[1:], fillvalue=""))
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


# ------------------------------------------------------------------------------------------ the zoo's galleries
#: A markdown image of a zoo pipeline's sample grid: ``![...](<...>/pipelines/<name>/samples.png)``.
ZOO_IMAGE = re.compile(r"!\[[^\]]*\]\((?P<folder>(?:[^)\s]*/)?pipelines/(?P<name>[\w.-]+))/samples\.png\)")


def table_cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def zoo_galleries(markdown: str) -> str:
    """Each markdown table of ``markdown`` whose body cells are all zoo sample grids (``docs/zoo.md``'s: a row per
    data set, a column per family) as a gallery: one card per pipeline, its sample grid linked to its model card and
    titled with its name, the row's and the column's heading under it. Other tables are left alone."""
    lines = markdown.split("\n")
    out, i = [], 0
    while i < len(lines):
        if not lines[i].startswith("|"):
            out.append(lines[i])
            i += 1
            continue
        j = i
        while j < len(lines) and lines[j].startswith("|"):
            j += 1
        gallery = zoo_gallery(lines[i:j])
        out.extend(gallery if gallery is not None else lines[i:j])
        i = j
    return "\n".join(out)


def zoo_gallery(table: list[str]) -> list[str] | None:
    if len(table) < 3:
        return None
    header = table_cells(table[0])
    cards = []
    for row in table[2:]:
        cells = table_cells(row)
        for column, cell in zip(header[1:], cells[1:], strict=False):
            match = ZOO_IMAGE.fullmatch(cell)
            if match is None:
                return None
            folder, name = match["folder"], match["name"]
            caption = ", ".join(part for part in (column, cells[0]) if part)
            cards += [
                '<figure markdown="span">',
                f"[![{name}: samples]({folder}/samples.png){{ loading=lazy }}]({folder}/README.md)"
                f"<figcaption markdown=\"span\">[**{name}**]({folder}/README.md)<br>{caption}</figcaption>",
                "</figure>",
            ]
    return ['<div class="zoo-gallery" markdown>', *cards, "</div>"]


# ------------------------------------------------------------------------------------------ the benchmark report
#: ``results.json``'s keys, as the report's columns and captions name them on the site.
COLUMN_NAMES = {
    "digits_fd": "digits-FD",
    "shapes_fd": "shapes-FD",
    "w2": "W2",
    "mmd2_rbf": "MMD² (RBF)",
    "train_seconds": "train time (s)",
    "train seconds": "train time (s)",
    "train s": "train time (s)",
    "peak_memory_mib": "peak memory (MiB)",
    "peak MiB": "peak memory (MiB)",
    "class_accuracy": "class accuracy",
    "faithfulness_all": "prompt faithfulness, all attributes",
    "unseen_faithfulness_all": "prompt faithfulness on unseen captions, all attributes",
}
METRIC_KEY = re.compile(r"(?<![\w`/.-])(digits_fd|shapes_fd|w2|mmd2_rbf|train_seconds|peak_memory_mib|class_accuracy|"
                        r"unseen_faithfulness_all|faithfulness_all)(?![\w`/.-])")
#: A line of the report's quality-by-calls lists:
#: ``- DDPM (DDPMScheduler), digits (digits_fd by calls): 1: 6897.691, 2: ...``
BY_CALLS = re.compile(r"- (?P<sampler>.+), (?P<data>[\w-]+) \((?P<metric>\w+) by calls\): (?P<points>.+)")
#: The log lines at the top of the report (``Command: ...``, ``Machine: ...``, ``Section(s) ... rerun ...``).
LOG_LINE = re.compile(r"(Command|Machine|Versions|Total time|Section\(s\)|Sections?)\b.*")


def name_metrics(text: str) -> str:
    """``text`` with the metric keys of ``results.json`` outside code spans named as on the site."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(part if part.startswith("`") else METRIC_KEY.sub(lambda m: COLUMN_NAMES[m[1]], part)
                   for part in parts)


def is_table_header(line: str, following: str) -> bool:
    """Whether ``line`` is a markdown table's header row: ``following`` is its ``|---|`` line."""
    return line.startswith("|") and re.fullmatch(r"\|[-:| ]+\|", following.strip()) is not None


def named_header(line: str, following: str) -> str:
    """``line`` with the cells that are exactly a key of :data:`COLUMN_NAMES` named, if it is a table's header row
    (``following`` is its ``|---|`` line); otherwise ``line`` as it is."""
    if not is_table_header(line, following):
        return line
    if not set(table_cells(line)) & set(COLUMN_NAMES):  # left byte for byte as it is (escaped pipes and all)
        return line
    return "| " + " | ".join(COLUMN_NAMES.get(cell, cell) for cell in table_cells(line)) + " |"


def render_results(markdown: str) -> str:
    """benchmarks/RESULTS.md as the site shows it: the same numbers, read more easily.

    - the log lines between the title and the first section (the command, the machine, the versions, the total time,
      the sections rerun afterwards) move to a collapsed note at the end, and a sentence says what the page is;
    - the columns of every table and the metric keys in the text are named (``digits_fd`` -> ``digits-FD``,
      ``train_seconds`` -> ``train time (s)``), code spans left alone;
    - each list of quality by model calls (``- <sampler>, <data> (<metric> by calls): 1: ..., 2: ...``) becomes one
      table per data set: a row per number of calls, a column per sampler.
    """
    lines = markdown.split("\n")
    title = next((k for k, line in enumerate(lines) if line.startswith("# ")), None)
    first_section = next((k for k, line in enumerate(lines) if line.startswith("## ")), len(lines))
    log = []
    if title is not None:
        head = lines[title + 1:first_section]
        log = [line.rstrip() for line in head if LOG_LINE.match(line.strip())]
        kept = [line for line in head if not LOG_LINE.match(line.strip())]
        intro = ["", "Every family, method and sampler of genzoo measured side by side by `benchmarks/run.py`, each "
                 "number from the run that wrote `benchmarks/RESULTS.md`. Lower is better for every distance (W2, "
                 "MMD², digits-FD, shapes-FD). How the run was made (command, machine, versions, times) is at the end "
                 "of the page."]
        lines = [*lines[:title + 1], *intro, *kept, *lines[first_section:]]
    out, i = [], 0
    while i < len(lines):
        if BY_CALLS.fullmatch(lines[i]):
            j = i
            while j < len(lines) and BY_CALLS.fullmatch(lines[j]):
                j += 1
            out.extend(by_calls_tables(lines[i:j]))
            i = j
            continue
        line = lines[i]
        if i + 1 < len(lines) and is_table_header(line, lines[i + 1]):
            line = "| " + " | ".join(COLUMN_NAMES.get(cell, name_metrics(cell)) for cell in table_cells(line)) + " |"
        elif not line.startswith(("![", "|")):
            line = name_metrics(line)
        out.append(line)
        i += 1
    if log:
        out += ["", '??? info "How this report was made"', ""] + [f"    {line.strip()}  " for line in log]
    return "\n".join(out)


def by_calls_tables(lines: list[str]) -> list[str]:
    """The quality-by-calls list ``lines`` as one table per data set: a row per number of calls, a column per
    sampler (an empty cell where a sampler has no point at that number; the first point where it has two)."""
    by_data: dict[str, dict] = {}
    for line in lines:
        match = BY_CALLS.fullmatch(line)
        points = {}
        for point in match["points"].split(","):
            calls, _, value = point.strip().partition(":")
            points.setdefault(int(calls), value.strip())
        table = by_data.setdefault(match["data"], {"metric": match["metric"], "samplers": {}})
        table["samplers"][match["sampler"]] = points
    out = []
    for data, table in by_data.items():
        samplers = table["samplers"]
        calls = sorted({n for points in samplers.values() for n in points})
        out += ["", f"**{data}** ({COLUMN_NAMES.get(table['metric'], table['metric'])} by model calls per sample)", "",
                "| calls | " + " | ".join(samplers) + " |", "|---:|" + "---:|" * len(samplers)]
        out += [f"| {n} | " + " | ".join(points.get(n, "") for points in samplers.values()) + " |" for n in calls]
    return [*out, ""]
