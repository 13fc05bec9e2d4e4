"""Configuration from the environment: shared variables, per-command ones, none for damage."""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from lookalike.cli.environment import read_variables, sleep_idle_threads, unread_variables
from lookalike.cli.main import cli

SHARED = {
    "LOOKALIKE_MODEL",
    "LOOKALIKE_DATASET",
    "LOOKALIKE_DEVICE",
    "LOOKALIKE_PRECISION",
    "LOOKALIKE_RUNTIME",
    "LOOKALIKE_COLLECTION",
    "LOOKALIKE_QDRANT_URL",
    "LOOKALIKE_QDRANT_API_KEY",
    "LOOKALIKE_QDRANT_API_KEY_FILE",
    "LOOKALIKE_QDRANT_PATH",
    "LOOKALIKE_EMBEDDED_ENGINE",
    "LOOKALIKE_QDRANT_TIMEOUT",
}


def test_shared_variables_are_exactly_the_options_that_mean_the_same_everywhere():
    variables = read_variables(cli)
    shared = {v for v, users in variables.items() if len({u.split()[0] for u in users}) > 1}
    assert shared <= SHARED
    assert {"LOOKALIKE_INGEST_SPLIT", "LOOKALIKE_EVAL_SPLIT", "LOOKALIKE_SERVE_PORT"} <= set(
        variables
    )
    assert "LOOKALIKE_SPLIT" not in variables


@pytest.mark.parametrize("flag", ["--recreate", "--trust-remote-code", "--json", "--overwrite"])
def test_flags_that_destroy_trust_or_reformat_read_no_variable(flag):
    readers = [u for users in read_variables(cli).values() for u in users]
    assert not any(u.endswith(" " + flag) for u in readers)


def test_unread_variables_are_named_with_their_replacements():
    messages = unread_variables(cli, {"LOOKALIKE_SPLIT": "test", "LOOKALIKE_MODEL": "m"})
    assert messages == [
        "LOOKALIKE_SPLIT is not read by lookalike: set LOOKALIKE_EVAL_SPLIT or "
        "LOOKALIKE_INGEST_SPLIT or LOOKALIKE_TUNE_SPLIT or LOOKALIKE_WATCH_SPLIT instead"
    ]
    assert unread_variables(cli, {"LOOKALIKE_NONSENSE": "1"}) == [
        "LOOKALIKE_NONSENSE is not read by lookalike"
    ]


def test_help_shows_each_variable():
    result = CliRunner().invoke(cli, ["eval", "--help"])
    assert "LOOKALIKE_EVAL_SPLIT" in result.output and "LOOKALIKE_COLLECTION" in result.output


def test_the_command_line_starts_without_torch_or_qdrant():
    code = (
        "import sys, lookalike.cli.main; "
        "heavy = {'torch', 'transformers', 'qdrant_client', 'qdrant_edge'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_batch_commands_have_torch_threads_sleep_unless_the_user_chose(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert not sleep_idle_threads()  # the user's choice stays
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setitem(sys.modules, "torch", sys)
    assert not sleep_idle_threads()  # too late: libgomp has read its settings
    monkeypatch.setenv("GOMP_SPINCOUNT", "0")
    monkeypatch.delitem(sys.modules, "torch")
    assert not sleep_idle_threads()  # a libgomp setting is a choice too
    monkeypatch.delenv("GOMP_SPINCOUNT")
    assert sleep_idle_threads()
    assert (os.environ["OMP_WAIT_POLICY"], os.environ["GOMP_SPINCOUNT"]) == ("PASSIVE", "1000")
