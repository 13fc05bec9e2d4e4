"""The LOOKALIKE_* variables the command line reads, and a warning for any it does not (such as
a pre-0.2 LOOKALIKE_SPLIT), so a setting is never silently ignored; and the one variable a
command that runs a model sets for its own process (`sleep_idle_threads`)."""

from __future__ import annotations

import os
import sys

import click

from lookalike.cli.options import PREFIX


def read_variables(group: click.Group) -> dict[str, list[str]]:
    """Each variable the commands read, with the `command --option` pairs that read it."""
    found: dict[str, list[str]] = {}
    for name, command in group.commands.items():
        for param in command.params:
            if not isinstance(param, click.Option) or param.name is None:
                continue
            envvar = param.envvar
            if envvar is None and param.allow_from_autoenv:
                envvar = f"{PREFIX}_{name.upper().replace('-', '_')}_{param.name.upper()}"
            for var in [envvar] if isinstance(envvar, str) else envvar or []:
                found.setdefault(var, []).append(f"{name} {param.opts[-1]}")
    return found


def unread_variables(group: click.Group, environ: dict[str, str]) -> list[str]:
    """One message per LOOKALIKE_* variable that no option reads."""
    known = read_variables(group)
    messages = []
    for var in sorted(v for v in environ if v.startswith(PREFIX + "_") and v not in known):
        option = var[len(PREFIX) + 1 :]
        # A pre-0.2 name (one variable per option for every command): name the new ones.
        heirs = [v for c in group.commands if (v := f"{PREFIX}_{c.upper()}_{option}") in known]
        instead = f": set {' or '.join(sorted(heirs))} instead" if heirs else ""
        messages.append(f"{var} is not read by lookalike{instead}")
    return messages


def warn_unread_variables(group: click.Group) -> None:
    for message in unread_variables(group, dict(os.environ)):
        click.echo(f"warning: {message}", err=True)


def sleep_idle_threads() -> bool:
    """Have torch's OpenMP threads sleep between the model's operations instead of spinning.

    libgomp's threads spin for a while after each parallel region, waiting for the next one.
    A command's model shares the cores with the threads decoding the next images (and on a
    shared machine with other processes): the spinning took their CPU, and cut `lookalike
    ingest` to half its speed on camera photos on a 2-core machine (CPU-ms per photo 146-175
    spinning, 65-72 sleeping; bench/photo_bench.py); `serve` answered 8 clients at 19.8
    queries/s spinning, 23.7 sleeping (bench/query_bench.py). libgomp reads the policy
    once, when torch loads: set before that, and only where the user has not chosen one.
    libgomp (Linux) also gets a short spin, 1000 rounds (~microseconds): the ops of one
    forward pass follow each other closely, and small images ingested ~10% faster with it
    than with none (bench/photo_bench.py --marginal), photos as fast. Returns whether it took
    effect."""
    chosen = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    if "torch" in sys.modules or any(name in os.environ for name in chosen):
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ["GOMP_SPINCOUNT"] = "1000"  # set, it wins over the policy's spin of 0
    return True
