"""The `lookalike` command: thin click commands that parse, call one library function, print.

Results go to stdout (a table, or JSON lines with --json); progress and warnings to stderr.
"""

from __future__ import annotations

import json
import signal
import sys
import warnings
from pathlib import Path

import click
from PIL import Image

from lookalike.cli.environment import warn_unread_variables
from lookalike.cli.errors import domain_errors
from lookalike.cli.options import (
    PREFIX,
    batch_size_option,
    flag,
    index_options,
    json_option,
    model_options,
    opt,
    search_options,
    store_options,
    workers_option,
)
from lookalike.cli.output import (
    duplicates_table,
    eval_table,
    hits_table,
    info_table,
    ingest_summary,
)
from lookalike.defaults import DEFAULT_DATASET, DEFAULT_MAX_PIXELS, DEFAULT_MODEL
from lookalike.tune.settings import TuneSettings

TUNE = TuneSettings()


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


CONTEXT = {
    "help_option_names": ["-h", "--help"],
    "max_content_width": 100,
    "auto_envvar_prefix": PREFIX,  # LOOKALIKE_<COMMAND>_<OPTION>
}


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="lookalike")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """lookalike: find the images that look most like a query image.

    Candidates are embedded with a transformers vision model and stored in Qdrant.
    """
    # lookalike enforces its own --max-pixels before decoding; PIL's warning would repeat it.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    # Library warnings (a key over plain HTTP, say) as one plain line on stderr.
    warnings.showwarning = lambda message, *args, **kwargs: click.echo(
        f"warning: {message}", err=True
    )
    warn_unread_variables(ctx.command)


@cli.command()
@opt(
    "--dataset",
    shared=True,
    default=DEFAULT_DATASET,
    help="Hub id, local datasets folder, or image folder.",
)
@opt("--split", default="train", help="Split to ingest.")
@opt("--limit", type=click.IntRange(1), default=None, help="Ingest N rows sampled with --seed.")
@opt("--seed", type=int, default=42, help="Seed for --limit sampling.")
@opt("--image-column", default=None, help="Image column; detected when unset.")
@opt("--label-column", default=None, help="Label column; detected when unset.")
@batch_size_option
@flag("--recreate", help="Delete and rebuild the collection.")
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
@json_option
@workers_option
@model_options(default=None, new=DEFAULT_MODEL, pooling=True)
@store_options
@index_options
@domain_errors
def ingest(store_config, collection, model_settings, index, as_json, **options):
    """Embed a dataset's images and upsert them into a collection.

    \b
    Index options (--hnsw-*, --on-disk, --quantization, --shards, --replicas) apply when the
    collection is created; --recreate rebuilds it with new ones.

    \b
    Example:
      lookalike ingest --dataset ../shared/data/beans \\
          --model ../shared/models/efficientnet-lite0 --split train
    """
    from lookalike.cli.commands import DatasetSettings, run_ingest

    data = DatasetSettings(**{f: options.pop(f) for f in DatasetSettings.__dataclass_fields__})
    report = run_ingest(store_config, collection, data, model_settings, index=index, **options)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(ingest_summary(report))


@cli.command()
@click.argument("queries", nargs=-1, required=True)
@opt("--k", "k", type=int, default=5, help="Neighbours per query.")
@opt("--label", default=None, help="Only candidates with this label (name or id).")
@flag(
    "--include-self",
    help="Keep a query that is one of the collection's own images as its own first hit.",
)
@json_option
@opt(
    "--grid",
    type=click.Path(dir_okay=False, writable=True),
    default=None,
    help="Also draw each query and its neighbours, captioned, into this image file (PNG).",
)
@search_options
@model_options(default=None)
@store_options
@domain_errors
def search(store_config, collection, queries, model_settings, params, as_json, **options):
    """Find the candidates most like each QUERY.

    QUERY is an image file, or SPLIT:ROW for that row of the collection's dataset. A query that
    is one of the collection's own images is left out of its own results (--include-self keeps
    it). When a running `lookalike serve` holds the embedded store, the search is sent to it.

    \b
    Example:
      lookalike search test:17 leaf.jpg --k 5 --label healthy --json
    """
    from lookalike.cli.searching import run_search

    results = run_search(
        store_config, collection, queries, model_settings, params=params, **options
    )
    for result in results:
        if as_json:
            echo_json(result.to_dict())
        else:
            click.echo(hits_table(result))


@cli.command("eval")
@opt("--split", default="test", help="Split whose images are the queries.")
@opt("--k", "k", type=int, default=5, help="Neighbours per query.")
@batch_size_option
@opt(
    "--near-duplicates",
    type=click.IntRange(0),
    default=50,
    help="Edited copies of this many gallery images must find their original (0: skip).",
)
@opt(
    "--recall",
    is_flag=True,
    default=False,
    help="Also measure recall@k of this search (HNSW, quantization) against exact search.",
)
@json_option
@workers_option
@search_options
@model_options(default=None)
@store_options
@domain_errors
def eval_(store_config, collection, model_settings, as_json, **options):
    """Measure precision@k, precision@1 and k-NN accuracy of a split against the collection.

    \b
    Example:
      lookalike eval --split test --k 5 --json
      lookalike eval --recall --hnsw-ef 64   # how much the index loses
    """
    from lookalike.cli.commands import run_eval

    report = run_eval(store_config, collection, model_settings, **options)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(eval_table(report))


@cli.command()
@json_option
@store_options
@domain_errors
def info(store_config, collection, as_json):
    """Show a collection's size, vector parameters, model and dataset."""
    from lookalike.cli.commands import collection_info

    result = collection_info(store_config, collection)
    click.echo(json.dumps(result.to_dict()) if as_json else info_table(result))


@cli.command()
@opt("--threshold", type=float, default=0.97, help="Cosine similarity that makes a pair.")
@opt("--neighbours", type=click.IntRange(1), default=3, help="Nearest points examined per point.")
@opt("--grid", type=click.Path(dir_okay=False), default=None, help="Draw the best pairs here.")
@flag("--json", "as_json", help="JSON lines: pairs, then a summary.")
@store_options
@domain_errors
def duplicates(store_config, collection, threshold, neighbours, grid, as_json):
    """Find near-duplicate images in a collection, within and across splits (leakage).

    \b
    Example:
      lookalike duplicates --threshold 0.97 --grid pairs.png
    """
    from lookalike.cli.commands import run_duplicates

    report = run_duplicates(
        store_config, collection, threshold=threshold, neighbours=neighbours, grid=grid
    )
    if as_json:
        for pair in report.pairs:
            echo_json(pair.to_dict())
        echo_json(report.to_dict())
    else:
        click.echo(duplicates_table(report))


@cli.command("tune")
@opt("--output", required=True, type=click.Path(file_okay=False), help="Folder to save to.")
@opt("--dataset", shared=True, default=None, help="Labelled dataset [default: the collection's].")
@opt("--split", default="train", help="Split to train on.")
@opt("--val-split", default="validation", help="Split that chooses the epoch.")
@opt("--test-split", default="test", help="Split scored once at the end ('' for none).")
@opt("--epochs", type=click.IntRange(1), default=TUNE.epochs, help="Passes over the train split.")
@opt("--lr", type=click.FloatRange(min=0, min_open=True), default=TUNE.lr, help="Learning rate.")
@opt("--batch-size", type=click.IntRange(2), default=TUNE.batch_size, help="Images per step.")
@opt("--seed", type=int, default=TUNE.seed, help="Seed for order, augmentation and the new head.")
@opt(
    "--freeze",
    type=click.FloatRange(0, 1),
    default=TUNE.freeze,
    help="Share of the model's parameters, from the input side, left untrained.",
)
@opt("--k", "k", type=click.IntRange(1), default=TUNE.k, help="k of the precision@k that chooses.")
@json_option
@model_options(default=None, compile=False)
@store_options
@domain_errors
def tune_(store_config, collection, model_settings, output, dataset, as_json, **options):
    """Fine-tune the embedding on your labels; the epoch is chosen on --val-split.

    Writes a model folder (with a README card) that `ingest --model` takes like any other.

    \b
    Example:
      lookalike tune --output tuned-beans && \\
      lookalike ingest --model tuned-beans --collection beans-tuned
    """
    from lookalike.cli.commands import run_tune

    report = run_tune(
        store_config,
        collection,
        model_settings,
        output=output,
        dataset=dataset,
        splits=(options.pop("split"), options.pop("val_split"), options.pop("test_split") or None),
        settings=TuneSettings(**options),
    )
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo((Path(output) / "README.md").read_text())


@cli.command()
@opt("--host", default="127.0.0.1", help="Interface to listen on (0.0.0.0: every interface).")
@opt("--port", type=click.IntRange(1, 65535), default=8000, help="Port to listen on.")
@opt(
    "--max-upload-mb",
    type=click.IntRange(1),
    default=10,
    help="Largest query upload accepted; larger ones get HTTP 413.",
)
@search_options
@model_options(default=None)
@store_options
@domain_errors
def serve(store_config, collection, host, port, max_upload_mb, model_settings, params):
    """Serve the search page and HTTP API (POST /search, GET /points/{id}/image, /health).

    The model and the store are opened once, at start-up. OpenAPI schema: /openapi.json.

    \b
    Example:
      lookalike serve --port 8000   # then open http://127.0.0.1:8000/
    """
    import uvicorn

    from lookalike.cli.searching import open_searcher
    from lookalike.cli.web import create_app

    # What a `search` that finds the store held should call: a wildcard host is not an address.
    local = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, host)
    url = f"http://{local}:{port}/"
    with open_searcher(store_config, collection, model_settings, params, url=url) as searcher:
        app = create_app(searcher, max_upload=max_upload_mb * 1024 * 1024)
        click.echo(f"serving {searcher.collection!r} on http://{host}:{port}/", err=True)
        # uvicorn re-raises SIGTERM once it has shut down; as SystemExit it lets the store
        # close and this process's holder record go, as Ctrl-C does.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        uvicorn.run(app, host=host, port=port, log_level="warning")


def main() -> None:
    cli(prog_name="lookalike")


if __name__ == "__main__":
    sys.exit(main())
