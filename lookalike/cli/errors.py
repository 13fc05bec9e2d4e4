"""Library errors in the command line's words: one line, the flag that changes the outcome,
and an exit code; never a traceback."""

from __future__ import annotations

import functools

import click

from lookalike.errors import (
    BadImage,
    CollectionNotFound,
    DatasetLoadError,
    IngestInterrupted,
    LoadErrors,
    LookalikeError,
    ModelLoadError,
    ModelMismatch,
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


def mismatch_hint(command: str) -> str:
    if command == "ingest":
        return "pass --recreate to rebuild it, or use another --collection"
    return "search with the model it was built with (leave --model out), or re-ingest"


def locked_hint(error: StoreLocked) -> str:
    stop = f"stop it (Ctrl-C where it runs, or kill {error.pid})" if error.pid else "stop it"
    ask = "; `lookalike search` asks a running serve itself" if error.url else ""
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
    if isinstance(error, CollectionNotFound):
        return collection_hint(error)
    if isinstance(error, ModelMismatch):
        return mismatch_hint(command)
    if isinstance(error, StoreLocked):
        return locked_hint(error)
    if isinstance(error, StoreUnavailable) and error.refused_key:
        return "check --qdrant-api-key"
    if isinstance(error, BadImage):
        return IMAGE_HINTS.get(error.kind or "")
    return None


def no_network(errors: list[DatasetLoadError | ModelLoadError]) -> str:
    """One line for every hub id that needs the network this machine lacks."""
    named = [
        (("dataset", e.dataset) if isinstance(e, DatasetLoadError) else ("model", e.model))
        for e in errors
    ]
    what = " and ".join(f"{kind} {name!r}" for kind, name in named)
    flags = " and ".join(f"--{kind} PATH" for kind, _ in named)
    folders = "local folders" if len(named) > 1 else "a local folder"
    return (
        f"no network: the Hugging Face hub cannot be reached to fetch {what}: pass {folders} "
        f"with {flags}, or set HF_HUB_OFFLINE=1 to use copies already in the Hugging Face "
        f"cache ({OFFLINE_SECTION})"
    )


def explain(error: LookalikeError, command: str) -> str:
    """One message: what happened, then what to do."""
    if isinstance(error, IngestInterrupted):
        return (
            f"{error}. Run the same command again to resume; stored images are not embedded again."
        )
    errors = list(error.errors) if isinstance(error, LoadErrors) else [error]
    offline = [e for e in errors if getattr(e, "kind", None) == "unreachable"]
    parts = [no_network(offline)] if offline else []
    for e in errors:
        if e not in offline:
            advice = hint(e, command)
            parts.append(f"{e}: {advice}" if advice else str(e))
    return "; ".join(parts)


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
        except IngestInterrupted as e:
            click.echo(f"Error: {explain(e, 'ingest')}", err=True)
            # 130 is the shell's code for "stopped by Ctrl-C"; a store failure is a plain 1.
            raise SystemExit(130 if e.by_user else 1) from e
        except LookalikeError as e:
            command = click.get_current_context().info_name or ""
            raise click.ClickException(explain(e, command)) from e

    return wrapper
