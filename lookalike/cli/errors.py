"""Library errors in the command line's words: one line, the flag that changes the outcome,
and an exit code; never a traceback."""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Collection

import click

from lookalike.errors import (
    BadImage,
    CollectionNotFound,
    DatasetLoadError,
    DatasetMoved,
    DiskFull,
    IngestInterrupted,
    LoadErrors,
    LookalikeError,
    ModelLoadError,
    ModelMismatch,
    NoTextTower,
    OutputExists,
    StoreDamaged,
    StoreLocked,
    StoreUnavailable,
)

OFFLINE_SECTION = 'README, "Offline, or with your own data and model"'
DATASET_HINTS = {
    "missing": "check the path, or pass a hub id or another folder with --dataset",
    "offline": "pass a local folder with --dataset PATH, or unset HF_HUB_OFFLINE to download it",
    "not_found": "check the hub id, or pass a local folder with --dataset PATH",
    "no_image_column": "pass --image-column",
    "no_label_column": "pass --label-column",
    "no_split": "choose one with --split",
    "payload": "choose the columns to store with --payload-columns",
    "payload_column": "choose among them with --payload-columns",
}
MODEL_HINTS = {
    "missing": "check the path, or pass a hub id or another folder with --model",
    "offline": "pass a local folder with --model PATH, or unset HF_HUB_OFFLINE to download it",
    "not_found": "check the hub id, or pass a local folder with --model PATH",
    "device": "choose another --device",
    "pooling": "choose another --pooling",
}
SERVER_HINT = "run a Qdrant server (docker compose up -d) and pass --qdrant-url"
IMAGE_HINTS = {"too_many_pixels": "raise --max-pixels to allow it"}
DISK_HINT = "free some space there, or use a --qdrant-path on a bigger disk"


def mismatch_hint(command: str) -> str:
    if command in ("ingest", "watch"):
        return "pass --recreate to rebuild it, or use another --collection"
    return "search with the model it was built with (leave --model out), or re-ingest"


# What a running serve does for a command that finds the store held, in that command's words.
ASK_SERVE = {
    "search": "; while it runs, it answers a search by an image file or SPLIT:ROW, and "
    "--like, --unlike and --id with stored ids (the `id` of a hit), not with image files",
    "ingest": "; to sync a folder while serving, run `lookalike serve --watch FOLDER`",
    "watch": "; to sync a folder while serving, run `lookalike serve --watch FOLDER`",
}


def locked_hint(error: StoreLocked, command: str = "") -> str:
    stop = f"stop it (Ctrl-C where it runs, or kill {error.pid})" if error.pid else "stop it"
    ask = ASK_SERVE.get(command, "") if error.url else ""
    if error.url and command == "info":
        ask = f"; while it runs, {error.url.rstrip('/')}/health shows its points and fields"
    return f"wait for it to finish or {stop}, or {SERVER_HINT}{ask}"


def collection_hint(error: CollectionNotFound) -> str:
    if error.collection is not None:
        return f"run `lookalike ingest --collection {error.collection}`"
    if error.known:
        return "choose one with --collection"
    return "run `lookalike ingest` first, or pass the --qdrant-path you ingested into"


def hint(error: LookalikeError, command: str) -> str | None:
    """The advice for `error` when `command` raised it, naming the flags of that command."""
    if isinstance(error, DatasetLoadError):
        return DATASET_HINTS.get(error.kind)
    if isinstance(error, ModelLoadError):
        return MODEL_HINTS.get(error.kind)
    if isinstance(error, NoTextTower):
        return (
            "ingest the same images into another collection with one: `lookalike ingest "
            f"--dataset {shlex.quote(error.dataset)} --model {error.suggested} --collection "
            f"{shlex.quote(error.collection + '-clip')}`"
        )
    if isinstance(error, CollectionNotFound):
        return collection_hint(error)
    if isinstance(error, DatasetMoved):
        relocate = (
            "pass --relocate"
            if command == "ingest"
            else f"run `lookalike ingest --dataset {shlex.quote(error.want)} --relocate` once"
        )
        return (
            f"{relocate} to make {error.want} its dataset (its {error.matched} matching "
            "images keep their vectors; the others are synced), or use another --collection"
        )
    if isinstance(error, ModelMismatch) and error.what == "legacy":
        return "run it without --keep-missing and --limit to migrate it, or pass --recreate"
    if isinstance(error, ModelMismatch):
        return mismatch_hint(command)
    if isinstance(error, StoreLocked):
        return locked_hint(error, command)
    if isinstance(error, DiskFull):
        if error.action == "build the search index":  # after the last image was stored
            return f"{DISK_HINT}; every image is stored: run the same command again to build it"
        return DISK_HINT
    if isinstance(error, StoreDamaged):
        rebuild = (
            f"rebuild it with `lookalike ingest --recreate --collection {error.collection}`"
            if error.collection
            else f"move {error.location} aside and ingest again"
        )
        return f"{rebuild} (your images are the truth; the store only indexes them)"
    if isinstance(error, StoreUnavailable) and error.refused_key:
        return "check --qdrant-api-key"
    if isinstance(error, BadImage) and command == "ingest":  # the only command with the flag
        return IMAGE_HINTS.get(error.kind or "")
    if isinstance(error, OutputExists):
        return "pass --overwrite to replace its files, or choose a new --output"
    return None


def no_network(
    errors: list[DatasetLoadError | ModelLoadError], options: Collection[str] | None = None
) -> str:
    """One line for every hub id that needs the network this machine lacks; a --dataset or
    --model the command does not have is not offered."""
    named = [
        (("dataset", e.dataset) if isinstance(e, DatasetLoadError) else ("model", e.model))
        for e in errors
    ]
    what = " and ".join(f"{kind} {name!r}" for kind, name in named)
    flags = [f"--{kind}" for kind, _ in named if options is None or f"--{kind}" in options]
    cache = (
        f"set HF_HUB_OFFLINE=1 to use copies already in the Hugging Face cache ({OFFLINE_SECTION})"
    )
    if not flags:
        return f"no network: the Hugging Face hub cannot be reached to fetch {what}: {cache}"
    folders = "local folders" if len(flags) > 1 else "a local folder"
    paths = " and ".join(f"{flag} PATH" for flag in flags)
    return (
        f"no network: the Hugging Face hub cannot be reached to fetch {what}: pass {folders} "
        f"with {paths}, or {cache}"
    )


def explain(error: LookalikeError, command: str, options: Collection[str] | None = None) -> str:
    """One message: what happened, then what to do. With `options` (the command's own), advice
    naming a flag the command does not have is left out: it would send the user nowhere."""
    if isinstance(error, IngestInterrupted):
        advice = _own(hint(error.cause, command), options) if error.cause else None
        first = f"{advice}. " if advice and not error.by_user else ""
        return (
            f"{error}. {first}Run the same command again to resume; stored images are not "
            "embedded again."
        )
    errors = list(error.errors) if isinstance(error, LoadErrors) else [error]
    offline = [e for e in errors if getattr(e, "kind", None) == "unreachable"]
    parts = [no_network(offline, options)] if offline else []
    for e in errors:
        if e not in offline:
            advice = _own(hint(e, command), options)
            parts.append(f"{e}: {advice}" if advice else str(e))
    return "; ".join(parts)


def _own(advice: str | None, options: Collection[str] | None) -> str | None:
    if advice is None or options is None:
        return advice
    # Flags inside `...` belong to the command quoted there, not to this one.
    flags = set(FLAG.findall(re.sub(r"`[^`]*`", "", advice)))
    return advice if flags <= set(options) else None


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]*")


def skip_message(reason: str, kind: str | None) -> str:
    """A skipped image's reason, with the flag that would have let it in."""
    advice = IMAGE_HINTS.get(kind or "")
    return f"{reason}; {advice}" if advice else reason


def domain_errors(f):
    """Library errors become one clear line and a non-zero exit, never a traceback."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except LookalikeError as e:
            ctx = click.get_current_context()
            options = {o for p in ctx.command.params for o in getattr(p, "opts", ())}
            message = explain(e, ctx.info_name or "", options)
            if isinstance(e, IngestInterrupted):
                click.echo(f"Error: {message}", err=True)
                # 130 is the shell's code for "stopped by Ctrl-C"; a store failure is a plain 1.
                raise SystemExit(130 if e.by_user else 1) from e
            raise click.ClickException(message) from e

    return wrapper
