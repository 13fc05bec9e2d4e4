"""The docs stay true: the README's test command is what CI runs, the command reference's
--help text is current, every page the README links to exists, every Python example runs as
written, and no command in them writes over a file of the repository.

Run `python tests/test_docs.py` to regenerate the help section after changing options.
"""

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "cli-reference.md"
START, END = "<!-- help:start", "<!-- help:end -->"
COMMANDS = ["ingest", "watch", "search", "eval", "info", "tune", "duplicates", "serve"]


def render_help() -> str:
    from lookalike.cli.main import cli

    parts = []
    # The commands above in their order, then every other one (none goes undocumented).
    for name in [*COMMANDS, *sorted(set(cli.commands) - set(COMMANDS))]:
        result = CliRunner().invoke(
            cli, [name, "--help"], terminal_width=100, prog_name="lookalike"
        )
        parts.append(f"## `lookalike {name}`\n\n```text\n{result.stdout.rstrip()}\n```\n")
    return "\n".join(parts)


def help_section(text: str) -> str:
    start = text.index(START)
    body_start = text.index("\n", start) + 1
    return text[body_start : text.index(END)]


def test_reference_help_is_current():
    assert help_section(REFERENCE.read_text()).strip() == render_help().strip(), (
        "docs/cli-reference.md --help section is stale: run `python tests/test_docs.py`"
    )


def test_readme_is_short_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 300  # a newcomer reads it in ten minutes
    for page in re.findall(r"\]\(((?:docs/)[^)#]+)", readme):
        assert (ROOT / page).exists(), page


def test_readme_shows_the_command_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    command = ci[ci.index(next(ln for ln in ci if ln.startswith("# README test command"))) + 1]
    readme = (ROOT / "README.md").read_text()
    assert command in readme
    assert re.search(r"pytest$", command)


PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Pages run in this order in one folder: python-api.md's first example fills the collection
# the README's example searches and scale.md's exports.
RUN_ORDER = ["python-api.md", "README.md", "scale.md"]


def blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", page.read_text(), re.M | re.S)


def test_every_python_example_is_run_here():
    pages = {p.name for p in PAGES if blocks(p, "python")}
    assert pages == set(RUN_ORDER), "add the page to RUN_ORDER so its examples are run"


@pytest.fixture(scope="module")
def docs_folder(tmp_path_factory):
    """A folder like a clone's: ../shared beside it, and the leaf photos the examples name."""
    from tests.conftest import SHARED, need_shared

    need_shared(SHARED)
    root = tmp_path_factory.mktemp("docs")
    (root / "shared").symlink_to(SHARED)
    work = root / "lookalike"
    work.mkdir()
    for image in (ROOT / "tests" / "fixtures").glob("*.jpg"):
        shutil.copy(image, work / image.name)
    return work


@pytest.mark.parametrize("page", RUN_ORDER)
def test_python_examples_run_as_written(page, docs_folder, monkeypatch):
    monkeypatch.chdir(docs_folder)
    namespace: dict = {}
    path = ROOT / page if page == "README.md" else ROOT / "docs" / page
    for number, code in enumerate(blocks(path, "python"), 1):
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"{page} example {number}", "exec"), namespace)
        assert printed.getvalue().strip(), f"{page} example {number} printed nothing"


# Options and redirections through which a documented command writes a file.
WRITES = {"--grid", "--output", "--skipped-log", "-o", ">", ">>"}


def written_paths(page: Path) -> list[str]:
    found = []
    for block in blocks(page, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue
            found += [words[i + 1] for i, w in enumerate(words[:-1]) if w in WRITES]
    return found


def tracked_files() -> set[str]:
    try:
        listed = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return set(listed.stdout.splitlines())


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_documented_commands_never_write_over_the_repository(page):
    tracked = tracked_files()
    for path in written_paths(page):
        target = os.path.normpath(path)
        assert target not in tracked, f"{page.name}: a command writes over {target}"
        assert not any(t.startswith(target + "/") for t in tracked), f"{page.name}: {target}/"


if __name__ == "__main__":
    path = REFERENCE
    text = path.read_text()
    body_start = text.index("\n", text.index(START)) + 1
    path.write_text(text[:body_start] + "\n" + render_help() + "\n" + text[text.index(END) :])
