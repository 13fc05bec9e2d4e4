"""The docs stay true: the README's test command is what CI runs, the command reference's
--help text is current, and every page the README links to exists.

Run `python tests/test_docs.py` to regenerate the help section after changing options.
"""

import re
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "cli-reference.md"
START, END = "<!-- help:start", "<!-- help:end -->"
COMMANDS = ["ingest", "watch", "search", "eval", "info", "tune", "duplicates", "serve"]


def render_help() -> str:
    from lookalike.cli.main import cli

    parts = []
    for name in COMMANDS:
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


if __name__ == "__main__":
    path = REFERENCE
    text = path.read_text()
    body_start = text.index("\n", text.index(START)) + 1
    path.write_text(text[:body_start] + "\n" + render_help() + "\n" + text[text.index(END) :])
