"""The Hugging Face Space of one pipeline (``genzoo space``): its files' checked values (:func:`space_files`) and
the folder, written whole or not at all (:func:`write_space`). Every value reaches the files through a serialiser
(``repr`` in app.py, ``yaml.safe_dump`` in the README's front matter), never pasted into code."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..checks import describe, error_line
from ..files import check_inside, commit_folder, folder_files, remove_stale_staging
from ..project import source_requirement


MAX_TITLE_CHARS = 100
MAX_REQUIREMENT_CHARS = 500

#: The Space's app.py: fixed code; the values (models, title) are written into it with ``repr``.
SPACE_APP = '''"""A Hugging Face Space written by `genzoo space`: the genzoo demo of one pipeline."""

from pathlib import Path

from genzoo.demo import build_demo

MODELS = {models}
TITLE = {title}

demo = build_demo(MODELS, title=TITLE)

if __name__ == "__main__":
    demo.launch()
'''
#: The Space's models in app.py when the pipeline is copied into it.
SPACE_LOCAL_MODELS = '[str(Path(__file__).parent / "model")]'


def check_line(name: str, value, limit: int, hint: str = "") -> str:
    """``value`` if it is one line of printable text of 1 to ``limit`` characters, else a one-line ``ValueError``."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {describe(value)} (type {type(value).__name__}).")
    if not value.strip() or len(value) > limit or not value.isprintable():
        raise ValueError(f"{name} must be one line of printable text of 1 to {limit} characters, got "
                         f"{describe(value)}{hint}.")
    return value


def check_requirement(requirement: str) -> str:
    """One pip requirement: a PEP 508 requirement (``genzoo[demo]==1.0``, ``genzoo[demo] @ git+https://...``) or a
    ``git+https://`` / ``https://`` URL, on one line; not a pip option (``--index-url ...``)."""
    from packaging.requirements import InvalidRequirement, Requirement

    check_line("requirement", requirement, MAX_REQUIREMENT_CHARS)
    text = requirement.strip()
    if text.startswith(("git+https://", "https://")) and " " not in text:
        return text
    try:
        Requirement(text)
    except InvalidRequirement:
        raise ValueError(f"requirement must be one pip requirement (genzoo[demo]==<version>, genzoo[demo] @ "
                         f"git+https://...) or a git+https:// URL, got {describe(requirement)}.") from None
    return text


def default_requirement(version: str | None = None) -> str:
    """The pip requirement a Space installs genzoo with when it is given none: ``genzoo[demo]==<version>`` for a
    release (``version``: default, the running genzoo's). A development or local version (``0.1.0.dev0``,
    ``1.0+local``) is on no package index, so that line could not install: a one-line ``ValueError`` names the
    version and the fix (a ``--requirement`` that installs genzoo from its repository at a commit or tag)."""
    from packaging.version import InvalidVersion, Version

    from .. import __version__

    version = __version__ if version is None else version
    try:
        parsed = Version(version)
    except InvalidVersion:
        parsed = None
    if parsed is None or parsed.is_devrelease or parsed.local is not None:
        fix = source_requirement("demo", "<commit-or-tag>")
        raise ValueError(f"genzoo {version} is a development or local version that no package index has, so a "
                         f"Space cannot install genzoo[demo]=={version}; give the requirement that installs the genzoo "
                         f"it should run: --requirement \"{fix}\" (requirement= from Python).")
    return f"genzoo[demo]=={version}"


def space_files(source: str, *, title: str | None = None, requirement: str | None = None) -> dict:
    """The checked values of a Space: ``{"local": bool, "source": str, "title": str, "requirement": str, "app":
    app.py's text, "readme": README.md's text}``. Every value reaches the files through ``repr`` (app.py) or
    ``yaml.safe_dump`` (the README's front matter); see :func:`write_space`."""
    import gradio
    import yaml

    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"source must be a folder or a Hub id, got {describe(source)}.")
    source = os.fspath(source)
    if not source or "\x00" in source or len(source) > 4096:
        raise ValueError(f"source must be a pipeline folder or a Hub id, got {describe(source)}.")
    try:
        local = Path(source).is_dir()
    except OSError:  # a name too long for the file system: not a folder; the Hub id check below refuses it
        local = False
    if local:
        if not (Path(source) / "model_index.json").is_file():
            raise FileNotFoundError(f"{source} has no model_index.json: give a folder written by save_pretrained or "
                                    "genzoo train, or a Hub id.")
        name = Path(os.path.realpath(source)).name
    else:
        from huggingface_hub.errors import HFValidationError
        from huggingface_hub.utils import validate_repo_id

        try:
            validate_repo_id(source)
        except HFValidationError as exc:
            raise ValueError(f"{describe(source)} is neither a pipeline folder nor a valid Hub id "
                             f"({error_line(exc)})") from None
        name = source
    if title is None:
        title = f"genzoo: {name}"
        check_line("title", title, MAX_TITLE_CHARS, hint=" (from the folder's name; pass --title)")
    else:
        check_line("title", title, MAX_TITLE_CHARS)
    requirement = check_requirement(default_requirement() if requirement is None else requirement)
    models = SPACE_LOCAL_MODELS if local else repr([source])
    app = SPACE_APP.format(models=models, title=repr(title))
    front = {"title": title, "sdk": "gradio", "sdk_version": gradio.__version__, "app_file": "app.py"}
    if not local:
        front["models"] = [source]
    front["tags"] = ["genzoo", "diffusers"]
    matter = yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=float("inf"))
    model_line = (f"It samples the Hub model `{source}`." if not local else
                  "It samples the pipeline in `model/`.")
    readme = (f"---\n{matter}---\n\nA demo of a genzoo pipeline, written by `genzoo space`: choose the number of "
              f"samples, the seed and the sampling settings, and press Generate. {model_line}\n")
    return {"local": local, "source": source, "title": title, "requirement": requirement, "app": app,
            "readme": readme}


def write_space(source: str, out_dir: str | os.PathLike, *, title: str | None = None,
                requirement: str | None = None) -> Path:
    """Write a folder that is a Hugging Face Space (Gradio) showing one pipeline with :func:`build_demo`.

    Upload it with ``genzoo push OUT_DIR USER/NAME --repo-type space`` (``genzoo.hub.push_space``). Every value
    reaches the files through a serialiser: app.py holds the models and title as Python literals (``repr``), the
    README's front matter is ``yaml.safe_dump``'s. The Space serves only its model (``allow_any_model`` stays off).
    The folder is written beside ``out_dir`` and renamed into place, so an interrupted write leaves no half Space
    (what a killed one leaves is removed by the next call).

    Args:
        source (str): a Hub id (checked with ``huggingface_hub.utils.validate_repo_id``), loaded by id when the
            Space starts and listed under ``models:`` in its card; or a saved pipeline folder, copied into the
            Space as ``model/`` (nothing in it may be a link that leads outside it).
        out_dir (str | os.PathLike): a new or empty folder; nothing already there is overwritten.
        title (str | None): the Space's title, one printable line of at most :data:`MAX_TITLE_CHARS` characters
            (default: ``genzoo: <name>``).
        requirement (str | None): the pip requirement that installs genzoo in the Space, one line, e.g.
            ``genzoo[demo] @ git+https://github.com/genzoo/genzoo@<commit-or-tag>`` (a ``git+https://`` URL works
            too). Default: ``genzoo[demo]==<this version>`` for a release; a development version (this one until
            genzoo is released) has no default (:func:`default_requirement`).

    Returns:
        ``out_dir``, holding ``app.py``, ``requirements.txt`` and ``README.md`` (and ``model/``).

    Raises:
        FileExistsError: ``out_dir`` exists and is not an empty folder.
        FileNotFoundError: ``source`` is a folder without ``model_index.json``.
        ValueError: ``source`` is neither a folder nor a valid Hub id; a title or requirement that is not one line;
            no requirement for a development version of genzoo (nothing is written).
        genzoo.files.OutsideFolderError: a link in the pipeline folder leads outside it (nothing is written).
    """
    out = Path(out_dir)
    remove_stale_staging(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; choose a new folder for the Space.")
    space = space_files(source, title=title, requirement=requirement)
    copies = []
    if space["local"]:
        from ..hub import files_to_upload

        folder = Path(source)
        folder_files(folder)  # refuses any link in the pipeline folder that leads outside it, before writing
        for path in files_to_upload(folder):
            check_inside(folder, path)
            copies.append((path, Path("model") / path.relative_to(folder)))

    def write(staging: Path) -> None:
        for path, relative in copies:
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        (staging / "app.py").write_text(space["app"], encoding="utf-8")
        (staging / "requirements.txt").write_text(space["requirement"] + "\n", encoding="utf-8")
        (staging / "README.md").write_text(space["readme"], encoding="utf-8")

    commit_folder(out, write, keep=())
    return out
