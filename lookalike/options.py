"""Click options shared by the commands: each has a LOOKALIKE_<OPTION> env var and a shown
default, and groups of them arrive in the command as one settings object."""

from __future__ import annotations

import functools

import click

from lookalike.defaults import DEFAULT_PATH, DEVICES, POOLINGS, PRECISIONS
from lookalike.errors import IngestInterrupted, LookalikeError


def opt(*decls: str, **kwargs):
    """An option with a LOOKALIKE_<OPTION> env var and its default shown in --help."""
    name = max((d for d in decls if d.startswith("--")), key=len)[2:]
    kwargs.setdefault("envvar", "LOOKALIKE_" + name.upper().replace("-", "_"))
    kwargs.setdefault("show_envvar", True)
    kwargs.setdefault("show_default", True)
    return click.option(*decls, **kwargs)


def store_options(f):
    """Qdrant location and collection, shared by every command."""
    for decorator in reversed(
        [
            opt(
                "--qdrant-url",
                default=None,
                help="Qdrant server URL; embedded local mode if unset.",
            ),
            opt(
                "--qdrant-api-key", default=None, show_default=False, help="Qdrant server API key."
            ),
            opt("--qdrant-path", default=DEFAULT_PATH, help="Folder of the embedded local store."),
            opt("--qdrant-timeout", default=60, type=click.IntRange(1), help="Server timeout, s."),
            opt("--collection", default="beans", help="Qdrant collection."),
        ]
    ):
        f = decorator(f)

    @functools.wraps(f)
    def wrapper(qdrant_url, qdrant_api_key, qdrant_path, qdrant_timeout, **kwargs):
        from lookalike.store import StoreConfig  # imported late: --help stays fast

        config = StoreConfig(
            url=qdrant_url, api_key=qdrant_api_key, path=qdrant_path, timeout=qdrant_timeout
        )
        return f(store_config=config, **kwargs)

    return wrapper


def model_options(default: str | None, pooling: bool = False):
    """Model loading and running options, passed to the command as one ModelSettings."""

    def decorate(f):
        help_model = "Model hub id or local folder" + (
            "." if default else "; default: the model the collection was built with."
        )
        decorators = [
            opt("--model", default=default, help=help_model),
            opt("--revision", default=None, help="Model revision (hub branch, tag or commit)."),
            opt(
                "--device",
                default="auto",
                type=click.Choice(DEVICES),
                help="Where the model runs; auto picks a GPU when there is one.",
            ),
            opt(
                "--precision",
                default="auto",
                type=click.Choice(PRECISIONS),
                help="auto: bf16/fp16 on GPU, bf16 on CPUs with native bf16, else fp32.",
            ),
            opt("--compile", is_flag=True, default=False, help="torch.compile the model."),
            opt(
                "--trust-remote-code",
                is_flag=True,
                default=False,
                help="Allow a model to run its own Python code from its folder or hub repo.",
            ),
        ]
        if pooling:
            decorators.append(
                opt(
                    "--pooling",
                    default="auto",
                    type=click.Choice(POOLINGS),
                    help="Embedding: auto picks the model family's (CLS, pooler, image features).",
                )
            )
        for decorator in reversed(decorators):
            f = decorator(f)

        @functools.wraps(f)
        def wrapper(model, revision, device, precision, compile, trust_remote_code,
                    pooling="auto", **kwargs):  # fmt: skip
            from lookalike.embedder import ModelSettings  # imported late: --help stays fast

            settings = ModelSettings(
                model=model, revision=revision, device=device, precision=precision,
                pooling=pooling, compile=compile, trust_remote_code=trust_remote_code,
            )  # fmt: skip
            return f(model=settings, **kwargs)

        return wrapper

    return decorate


def workers_option(f):
    return opt(
        "--workers",
        type=click.IntRange(1),
        default=None,
        help="Threads decoding and preprocessing images ahead of the model "
        "[default: one per core but one, at most 4].",
    )(f)


def domain_errors(f):
    """Library errors become one clear line and a non-zero exit, never a traceback."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except IngestInterrupted as e:
            click.echo(f"Error: {e}", err=True)
            # 130 is the shell's code for "stopped by Ctrl-C"; a store failure is a plain 1.
            raise SystemExit(130 if e.by_user else 1) from e
        except LookalikeError as e:
            raise click.ClickException(str(e)) from e

    return wrapper
