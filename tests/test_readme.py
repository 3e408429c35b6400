"""README.md's two commands are the ones CI and users run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)```", text, re.S)[:2]


def test_ci_runs_the_readme_test_command():
    _, test_command = readme_commands()
    last_line = test_command.strip().splitlines()[-1]
    assert "pytest" in last_line
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert last_line.strip() in ci_lines, f".ci/run must run the README's test command {last_line!r}"


def test_ci_installs_cpu_torch_first():
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("torch==2.13.0") < ci.index('pip install -e ".[test]"')


def test_the_site_home_page_shows_the_readme_commands():
    """docs/index.md (the documentation site's home) repeats README.md's two commands: they must stay the same."""
    home = re.findall(r"```bash\n(.*?)```", (ROOT / "docs" / "index.md").read_text(), re.S)[:2]
    assert home == readme_commands(), "docs/index.md's commands differ from README.md's: copy them across"


def test_the_site_home_page_shows_the_readme_results_table():
    """docs/index.md repeats README.md's five-answers table (benchmark section 8): the numbers must stay the same."""
    def table(path):
        text = path.read_text()
        start = text.index("| family | digits-FD | moons W2 | calls per sample |")
        return text[start:text.index("\n\n", start)]

    assert table(ROOT / "docs" / "index.md") == table(ROOT / "README.md"), (
        "docs/index.md's results table differs from README.md's: copy it across")
