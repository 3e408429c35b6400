"""The requirement a Space installs genzoo with (issue 26): a release writes ``genzoo[demo]==<version>``; a
development or local version, which no package index has, is refused with the fix (``--requirement``), and nothing
is written; a given ``--requirement`` is written as given."""

import os

import pytest

from helpers import ROOT

import genzoo
from genzoo.cli import main
from genzoo.project import REPOSITORY_URL, source_requirement

pytest.importorskip("gradio")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from genzoo.demo.space import default_requirement, write_space  # noqa: E402

ZOO = ROOT / "pipelines"
FIX = f'--requirement "genzoo[demo] @ git+{REPOSITORY_URL}@<commit-or-tag>"'


@pytest.mark.parametrize("version", ["0.1.0", "1.2.3", "2.0rc1", "1.0.post1"])
def test_a_release_requires_itself_from_the_index(version):
    assert default_requirement(version) == f"genzoo[demo]=={version}"


@pytest.mark.parametrize("version", ["0.1.0.dev0", "1.0.dev3", "1.0+local", "1.0rc1.dev2+g1234abc"])
def test_a_development_or_local_version_is_refused_with_the_fix(version):
    with pytest.raises(ValueError) as caught:
        default_requirement(version)
    message = str(caught.value)
    assert "\n" not in message and f"genzoo {version} " in message and f"genzoo[demo]=={version}" in message
    assert message.endswith(f"{FIX} (requirement= from Python).")


def test_the_fix_is_a_requirement_the_space_writer_accepts():
    from genzoo.demo.space import check_requirement

    requirement = source_requirement("demo", "v0.1.0")
    assert requirement == f"genzoo[demo] @ git+{REPOSITORY_URL}@v0.1.0"
    assert check_requirement(requirement) == requirement


def test_this_development_version_writes_no_space_without_a_requirement(tmp_path, capsys):
    assert genzoo.__version__.endswith(".dev0")  # until the first release; then the next test covers the default
    for source in ("user/gan-digits", str(ZOO / "vae-digits")):
        out = tmp_path / "space"
        assert main(["space", source, str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("genzoo: error: ") and len(err.splitlines()) == 1
        assert f"genzoo {genzoo.__version__} is a development" in err and FIX in err
        assert list(tmp_path.iterdir()) == []  # no Space, no staging folder
        with pytest.raises(ValueError, match="--requirement"):
            write_space(source, out)
        assert list(tmp_path.iterdir()) == []
    out = tmp_path / "given"
    requirement = source_requirement("demo", "0123456789abcdef0123456789abcdef01234567")
    assert main(["space", str(ZOO / "vae-digits"), str(out), "--requirement", requirement]) == 0
    assert (out / "requirements.txt").read_text(encoding="utf-8") == requirement + "\n"
    assert (out / "model" / "model_index.json").is_file()


def test_a_release_writes_its_own_pinned_requirement(tmp_path, monkeypatch):
    monkeypatch.setattr(genzoo, "__version__", "0.2.0")
    out = write_space("user/gan-digits", tmp_path / "space")
    assert (out / "requirements.txt").read_text(encoding="utf-8") == "genzoo[demo]==0.2.0\n"
    out = write_space("user/gan-digits", tmp_path / "other", requirement="git+https://example/genzoo")
    assert (out / "requirements.txt").read_text(encoding="utf-8") == "git+https://example/genzoo\n"
    with pytest.raises(ValueError, match="requirement must be one line"):  # given but empty: no silent default
        write_space("user/gan-digits", tmp_path / "third", requirement="")
    assert not (tmp_path / "third").exists()


def test_space_help_gives_the_requirement_of_a_development_version(capsys):
    assert main(["space", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f'"genzoo[demo] @ git+{REPOSITORY_URL}@<commit-or-tag>"' in text
    assert "needed for a development version" in text

