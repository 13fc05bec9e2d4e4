"""The LOOKALIKE_* variables the command line reads, and a warning for any it does not (such as
a pre-0.2 LOOKALIKE_SPLIT), so a setting is never silently ignored."""

from __future__ import annotations

import os

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
