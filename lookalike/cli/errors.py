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
    LookalikeError,
    ModelLoadError,
    ModelMismatch,
    StoreLocked,
    StoreUnavailable,
)

DATASET_HINTS = {
    "unreachable": "download it elsewhere and pass its local folder with --dataset PATH",
    "no_image_column": "pass --image-column",
    "no_label_column": "pass --label-column",
    "no_split": "choose one with --split",
    "payload": "choose the columns to store with --payload-columns",
    "payload_column": "choose among them with --payload-columns",
}
MODEL_HINTS = {
    "unreachable": "download the model elsewhere and pass its local folder with --model PATH",
    "device": "choose another --device",
    "pooling": "choose another --pooling",
}
LOCKED_HINT = (
    "wait for it to finish, or run a Qdrant server (docker compose up -d) and pass --qdrant-url"
)
IMAGE_HINTS = {"too_many_pixels": "raise --max-pixels to allow it"}


def mismatch_hint(command: str) -> str:
    if command in ("ingest", "watch"):
        return "pass --recreate to rebuild it, or use another --collection"
    return "search with the model it was built with (leave --model out), or re-ingest"


def hint(error: LookalikeError, command: str) -> str | None:
    """The advice for `error` when `command` raised it, naming the flags of that command."""
    if isinstance(error, DatasetLoadError):
        return DATASET_HINTS.get(error.kind)
    if isinstance(error, ModelLoadError):
        return MODEL_HINTS.get(error.kind)
    if isinstance(error, CollectionNotFound):
        return f"run `lookalike ingest --collection {error.collection}`"
    if isinstance(error, ModelMismatch) and error.what == "legacy":
        return "run it without --keep-missing and --limit to migrate it, or pass --recreate"
    if isinstance(error, ModelMismatch):
        return mismatch_hint(command)
    if isinstance(error, StoreLocked):
        return LOCKED_HINT
    if isinstance(error, StoreUnavailable) and error.refused_key:
        return "check --qdrant-api-key"
    if isinstance(error, BadImage):
        return IMAGE_HINTS.get(error.kind or "")
    return None


def explain(error: LookalikeError, command: str) -> str:
    """One message: what happened, then what to do."""
    if isinstance(error, IngestInterrupted):
        return (
            f"{error}. Run the same command again to resume; stored images are not embedded again."
        )
    advice = hint(error, command)
    return f"{error}: {advice}" if advice else str(error)


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
