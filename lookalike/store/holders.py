"""Who holds an embedded store: each command that opens one records its pid (and `serve` its
URL) in `<path>/holders/<pid>.json` while it runs.

An embedded store admits one process at a time. With these records, a second process that finds
a collection locked can say which process holds it and, when that is a `serve`, send its
request there instead.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from lookalike.errors import StoreLocked

FOLDER = "holders"


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str
    collection: str | None = None
    url: str | None = None  # where a `serve` answers
    started: float = 0.0
    # A `serve`'s proof that a client can read the store: it answers what shows the
    # server's paths (`info`, a dry run's stored points) only to a request carrying it.
    token: str | None = None


@functools.cache
def process_token() -> str:
    """This process's token, recorded with its URL by a `serve` (random, made once)."""
    return secrets.token_urlsafe(24)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


@contextlib.contextmanager
def holding(
    path: str, command: str, collection: str | None = None, url: str | None = None
) -> Iterator[None]:
    """Record this process as holding the store at `path` while the block runs. Creates the
    store folder, as opening it for writing would."""
    folder = os.path.join(path, FOLDER)
    record = os.path.join(folder, f"{os.getpid()}.json")
    try:
        os.makedirs(folder, exist_ok=True)
        _forget_the_dead(folder)
        with open(record + ".tmp", "w") as f:
            token = process_token() if url else None
            holder = Holder(os.getpid(), command, collection, url, time.time(), token)
            json.dump(asdict(holder), f)
        os.replace(record + ".tmp", record)
    except OSError:  # a read-only store still works; it just cannot say who holds it
        record = None
    try:
        yield
    finally:
        if record:
            with contextlib.suppress(OSError):
                os.remove(record)


def _forget_the_dead(folder: str) -> None:
    """Remove the records of processes that died without removing their own (SIGKILL)."""
    for name in os.listdir(folder):
        pid = name.split(".", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))


def holders(path: str) -> list[Holder]:
    """The live processes recorded as holding the store at `path`, other than this one."""
    folder = os.path.join(path, FOLDER)
    found = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(folder, name)) as f:
                holder = Holder(**json.load(f))
        except (OSError, ValueError, TypeError):
            continue
        if holder.pid != os.getpid() and _alive(holder.pid):
            found.append(holder)
    return found


def holder_of(path: str, collection: str | None = None) -> Holder | None:
    """The process most likely holding `collection` (or the store): one recorded with that
    collection, else any."""
    live = holders(path)
    return next((h for h in live if h.collection == collection), live[0] if live else None)


def locked(path: str, collection: str | None = None) -> StoreLocked:
    """The StoreLocked error for `path`, naming the process that holds it when it is known."""
    holder = holder_of(path, collection)
    if holder is None:
        return StoreLocked(path, collection)
    # A serve's URL answers for its own collection only.
    url = holder.url if collection in (None, holder.collection) else None
    return StoreLocked(path, collection, pid=holder.pid, command=holder.command, url=url)
