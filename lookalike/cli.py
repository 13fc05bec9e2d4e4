"""The `lookalike` command: thin click commands that parse, call one library function, print.

Results go to stdout (a table, or JSON lines with --json); progress and warnings to stderr.
"""

from __future__ import annotations

import functools
import json
import sys
import warnings

import click
from PIL import Image

from lookalike.embedder import POOLINGS, PRECISIONS, ModelSettings
from lookalike.errors import IngestInterrupted, LookalikeError
from lookalike.images import DEFAULT_MAX_PIXELS
from lookalike.output import eval_table, hits_table, info_table, ingest_summary
from lookalike.store import DEFAULT_PATH, StoreConfig


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
                type=click.Choice(["auto", "cpu", "cuda", "mps"]),
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
            settings = ModelSettings(
                model, revision, device, precision, pooling, compile, trust_remote_code
            )
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
            raise SystemExit(130 if str(e).startswith("interrupted") else 1) from e
        except LookalikeError as e:
            raise click.ClickException(str(e)) from e

    return wrapper


def quiet_transformers() -> None:
    # Loading a classifier checkpoint into AutoModel reports the unused head at WARNING level;
    # it is expected here and would bury our own messages.
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="lookalike")
def cli() -> None:
    """lookalike: find the images that look most like a query image.

    Candidates are embedded with a transformers vision model and stored in Qdrant.
    """
    quiet_transformers()
    # lookalike enforces its own --max-pixels before decoding; PIL's warning would repeat it.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    # Library warnings (a key over plain HTTP, say) as one plain line on stderr.
    warnings.showwarning = lambda message, *args, **kwargs: click.echo(
        f"warning: {message}", err=True
    )


@cli.command()
@opt("--dataset", default="beans", help="Hub id, local datasets folder, or folder of images.")
@opt("--split", default="train", help="Split to ingest.")
@opt("--limit", type=click.IntRange(1), default=None, help="Ingest N rows sampled with --seed.")
@opt("--seed", type=int, default=42, help="Seed for --limit sampling.")
@opt("--image-column", default=None, help="Image column; detected when unset.")
@opt("--label-column", default=None, help="Label column; detected when unset.")
@opt(
    "--batch-size",
    type=click.IntRange(1),
    default=None,
    help="Images per model batch [default: 16 on CPU, 64 on GPU].",
)
@opt("--recreate", is_flag=True, default=False, help="Delete and rebuild the collection.")
@opt(
    "--resume/--no-resume",
    default=True,
    help="Skip images whose point is already stored (an interrupted ingest goes on).",
)
@opt(
    "--max-pixels",
    type=click.IntRange(1),
    default=DEFAULT_MAX_PIXELS,
    help="Skip images with more pixels than this (decompression bombs).",
)
@opt(
    "--skipped-log",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also write each skipped image, with the reason, to this JSON-lines file.",
)
@opt("--json", "as_json", is_flag=True, default=False, help="Print the summary as JSON.")
@workers_option
@model_options(default="nateraw/vit-base-beans", pooling=True)
@store_options
@domain_errors
def ingest(store_config, collection, dataset, split, limit, seed, image_column, label_column,
           batch_size, recreate, resume, max_pixels, skipped_log, as_json, workers,
           model):  # fmt: skip
    """Embed a dataset's images and upsert them into a collection.

    \b
    Example:
      lookalike ingest --dataset ../shared/data/beans \\
          --model ../shared/models/efficientnet-lite0 --split train
    """
    from lookalike.app import DatasetSettings, run_ingest

    data = DatasetSettings(dataset, split, limit, seed, image_column, label_column, max_pixels)
    report = run_ingest(
        store_config, collection, data, model, batch_size=batch_size, workers=workers,
        recreate=recreate, resume=resume, skipped_log=skipped_log,
    )  # fmt: skip
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(ingest_summary(report))


@cli.command()
@click.argument("queries", nargs=-1, required=True)
@opt("--k", "k", type=int, default=5, help="Neighbours per query.")
@opt("--label", default=None, help="Only candidates with this label (name or id).")
@opt("--json", "as_json", is_flag=True, default=False, help="One JSON object per query.")
@model_options(default=None)
@store_options
@domain_errors
def search(store_config, collection, queries, k, label, as_json, model):
    """Find the candidates most like each QUERY.

    QUERY is an image file, or SPLIT:ROW for that row of the collection's dataset.

    \b
    Example:
      lookalike search test:17 leaf.jpg --k 5 --label healthy --json
    """
    from lookalike.app import run_search

    for query, hits in run_search(store_config, collection, queries, model, k=k, label=label):
        if as_json:
            echo_json({"query": query, "hits": [h.to_dict() for h in hits]})
        else:
            click.echo(hits_table(query, hits))


@cli.command("eval")
@opt("--split", default="test", help="Split whose images are the queries.")
@opt("--k", "k", type=int, default=5, help="Neighbours per query.")
@opt(
    "--batch-size",
    type=click.IntRange(1),
    default=None,
    help="Images per model batch [default: 16 on CPU, 64 on GPU].",
)
@opt("--json", "as_json", is_flag=True, default=False, help="Print the report as JSON.")
@workers_option
@model_options(default=None)
@store_options
@domain_errors
def eval_(store_config, collection, split, k, batch_size, as_json, workers, model):
    """Measure precision@k, precision@1 and k-NN accuracy of a split against the collection.

    \b
    Example:
      lookalike eval --split test --k 5 --json
    """
    from lookalike.app import run_eval

    report = run_eval(
        store_config, collection, model, split=split, k=k, batch_size=batch_size, workers=workers
    )
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(eval_table(report))


@cli.command()
@opt("--json", "as_json", is_flag=True, default=False, help="Print as JSON.")
@store_options
@domain_errors
def info(store_config, collection, as_json):
    """Show a collection's size, vector parameters, model and dataset."""
    from lookalike.app import collection_info

    result = collection_info(store_config, collection)
    click.echo(json.dumps(result.to_dict()) if as_json else info_table(result))


def main() -> None:
    cli(prog_name="lookalike")


if __name__ == "__main__":
    sys.exit(main())
