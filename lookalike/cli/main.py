"""The `lookalike` command: thin click commands that parse, call one library function, print.

Results go to stdout (a table, or JSON lines with --json); progress and warnings to stderr.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import threading
import traceback
import warnings
from pathlib import Path

import click
from PIL import Image

from lookalike.cli.environment import sleep_idle_threads, warn_unread_variables
from lookalike.cli.errors import domain_errors
from lookalike.cli.options import (
    PREFIX,
    SECRETS,
    apply,
    batch_size_option,
    flag,
    index_options,
    json_option,
    model_options,
    opt,
    output_file,
    picture_option,
    query_options,
    search_options,
    store_options,
    typed,
    variable_of,
    workers_option,
)
from lookalike.cli.output import (
    duplicates_table,
    eval_table,
    hits_csv,
    hits_table,
    info_table,
    ingest_summary,
    plan_listing,
)
from lookalike.defaults import DEFAULT_DATASET, DEFAULT_MAX_PIXELS, NEW_MODEL_HELP
from lookalike.embed.memory import reuse_freed_memory
from lookalike.query import DEFAULT_STRATEGY, STRATEGIES
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


def dataset_options(f):
    """Which images a sync reads: ingest's and watch's options."""
    return apply(
        f,
        [
            opt(
                "--dataset",
                shared=True,
                default=DEFAULT_DATASET,
                help="Hub id, local datasets folder, or image folder.",
            ),
            opt("--split", default="train", help="Split to ingest."),
            opt("--image-column", default=None, help="Image column; detected when unset."),
            opt("--label-column", default=None, help="Label column; detected when unset."),
            opt(
                "--payload-columns",
                default=None,
                callback=_columns,
                help="Comma-separated columns (an image folder's metadata fields) stored with "
                "each image ('' for none) [default: every column of plain values].",
            ),
            opt(
                "--exif/--no-exif",
                default=True,
                help="Store what each photo's EXIF says as fields: taken (a date), camera_make, "
                "camera_model, lens, orientation, width, height, location (GPS). Your "
                "metadata file's fields win.",
            ),
            opt(
                "--max-pixels",
                type=click.IntRange(1),
                default=DEFAULT_MAX_PIXELS,
                help="Skip images with more pixels than this (decompression bombs).",
            ),
            opt(
                "--keep-missing",
                is_flag=True,
                default=False,
                help="Keep the points of images that are gone (a folder mounted only part of "
                "the time).",
            ),
            flag(
                "--allow-empty",
                help="Sync an image folder that holds no images: remove every point (without "
                "it, an empty folder is an error, as an unmounted disk looks empty).",
            ),
        ],
    )


def _columns(ctx, param, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(c.strip() for c in value.split(",") if c.strip())


def _dataset_settings(options: dict):
    from lookalike.cli.sync import DatasetSettings

    names = DatasetSettings.__dataclass_fields__
    given = {"dataset_typed": typed("dataset"), "dataset_variable": variable_of("dataset")}
    return DatasetSettings(**{f: options.pop(f) for f in names if f in options}, **given)


@cli.command()
@dataset_options
@opt("--limit", type=click.IntRange(1), default=None, help="Ingest N rows sampled with --seed.")
@opt("--seed", type=int, default=42, help="Seed for --limit sampling.")
@batch_size_option
@flag("--recreate", help="Delete and rebuild the collection.")
@flag(
    "--relocate",
    help="Make --dataset the collection's images where only some of its stored ones are "
    "there (a moved folder whose images all match needs no flag).",
)
@opt(
    "--resume/--no-resume",
    default=True,
    help="Embed only new and changed images (--no-resume: every image again).",
)
@flag("--dry-run", help="Print what a sync would change, and change nothing.")
@output_file(
    "--skipped-log",
    help="Also write each skipped image, with the reason, to this JSON-lines file.",
)
@json_option
@workers_option
@opt(
    "--ray",
    is_flag=False,
    flag_value="auto",
    default=None,
    metavar="[ADDRESS]",
    allow_from_autoenv=False,
    help="Embed on Ray Data, one actor per GPU (pip install 'lookalike[ray]'): on the Ray "
    "cluster at ADDRESS, else at $RAY_ADDRESS, else on a Ray started for this run.",
)
@model_options(default=None, new=NEW_MODEL_HELP, pooling=True)
@store_options
@index_options
@domain_errors
def ingest(store_config, collection, model_settings, index, as_json, **options):
    """Sync a collection with a dataset's images: embed new and changed images, follow
    renamed ones, remove the points of images that are gone.

    \b
    The same command again is a sync: it embeds only what changed, in seconds when nothing
    did. Points follow each image's path (relative to the dataset folder) and content, and
    carry the dataset's other columns, or an image folder's metadata.jsonl / metadata.csv
    (a file_name column), as payload fields. An interrupted sync is safe to run again.

    \b
    Index options (--hnsw-*, --on-disk, --quantization, --shards, --replicas) apply when the
    collection is created; --recreate rebuilds it with new ones.

    \b
    Example:
      lookalike ingest --dataset ~/photos --collection photos --dry-run
      lookalike ingest --dataset ../shared/data/beans \\
          --model ../shared/models/efficientnet-lite0 --split train
    """
    from lookalike.cli.sync import run_ingest

    data = _dataset_settings(options)
    report = run_ingest(store_config, collection, data, model_settings, index=index, **options)
    if as_json:
        echo_json(report.to_dict())
    elif report.dry_run:
        click.echo(plan_listing(report))
    else:
        click.echo(ingest_summary(report))


@cli.command()
@dataset_options
@opt("--interval", type=click.FloatRange(0.1), default=2.0, help="Seconds between looks.")
@opt(
    "--settle",
    type=click.FloatRange(0),
    default=2.0,
    help="Seconds a file must be left alone before it is embedded (a copy in progress).",
)
@batch_size_option
@workers_option
@model_options(default=None, new=NEW_MODEL_HELP, pooling=True)
@store_options
@index_options
@domain_errors
def watch(store_config, collection, model_settings, index, interval, settle, **options):
    """Keep a collection in sync with an image folder as files arrive, change and go.

    Syncs once (as ingest does), then at every change, with a line per change on stderr,
    until Ctrl-C. The embedded store admits one process: to search while watching, run
    `serve --watch FOLDER` instead (or use a Qdrant server).

    \b
    Example:
      lookalike watch --dataset ~/photos --collection photos
    """
    from lookalike.cli.sync import WatchSettings, run_watch

    settings = WatchSettings(interval, settle, options.pop("keep_missing"))
    data = _dataset_settings(options)
    run_watch(store_config, collection, data, model_settings, settings, index=index, **options)


@cli.command()
@click.argument("queries", nargs=-1)
@opt(
    "--text",
    "texts",
    multiple=True,
    metavar="WORDS",
    allow_from_autoenv=False,
    help="Find the images that best match these words (repeatable; collections built with a "
    "CLIP or SigLIP model).",
)
@opt("--k", "k", type=int, default=5, help="Neighbours per query.")
@opt("--label", default=None, help="Only candidates with this label (name or id).")
@query_options
@opt(
    "--like",
    multiple=True,
    help="More like this example: an image file, SPLIT:ROW or a stored point's id "
    "(repeatable: one query from all the examples).",
)
@opt("--unlike", multiple=True, help="Less like this example (as --like; repeatable).")
@opt(
    "--id",
    default=None,
    help="Search by a stored point's id, without its image; the point itself is left out.",
)
@opt(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default=DEFAULT_STRATEGY,
    help="How --like/--unlike examples score a candidate: best_score (its nearest example), "
    "average_vector (one averaged query) or sum_scores.",
)
@flag(
    "--include-self",
    help="Keep a query that is one of the collection's own images as its own first hit.",
)
@json_option
@flag("--csv", "as_csv", help="Print CSV: one row per query and rank.")
@picture_option(
    "Also draw each query and its neighbours, captioned, into this picture (PNG, or as named)."
)
@search_options
@model_options(default=None)
@store_options
@domain_errors
def search(store_config, collection, queries, model_settings, params, as_json, **options):
    """Find the candidates most like each QUERY, or that best match each --text.

    QUERY is an image file, SPLIT:ROW for that row of the collection's dataset, or a folder
    (each image in it is a query; unreadable ones are reported and skipped). A query that is
    one of the collection's own images is left out of its own results (--include-self keeps
    it). Text queries follow the image queries in the results. When a running `lookalike
    serve` holds the embedded store, the search is sent to it.

    \b
    Example:
      lookalike search test:17 leaf.jpg --k 5 --label healthy --json
      lookalike search new-photos/ --k 1 --min-score 0.95 --csv > matches.csv
      lookalike search shoe.jpg --where brand=acme --where "price<=50" --group-by sku
      lookalike search --like a.jpg --like b.jpg --unlike c.jpg
      lookalike search --id 0b7c...e1 --k 10
      lookalike search --text "a bee on a yellow flower" --collection photos-clip
    """
    from lookalike.cli.searching import run_recommend, run_search

    sleep_idle_threads()
    as_csv = options.pop("as_csv")
    if as_json and as_csv:
        raise click.UsageError("pass --json or --csv, not both")
    first = [True]

    def show(results) -> None:  # before the grid is drawn: a failed picture loses no results
        if as_csv:
            click.echo(hits_csv(results, header=first[0]))
            first[0] = False
            return
        for result in results:
            if as_json:
                echo_json(result.to_dict())
            else:
                click.echo(hits_table(result))

    like, unlike, point_id = options.pop("like"), options.pop("unlike"), options.pop("id")
    strategy = options.pop("strategy")
    if like or point_id:
        if queries or options.get("grid") or options["texts"]:
            raise click.UsageError(
                "--like and --id make the query: pass no QUERY, --text or --grid"
            )
        like = (*like, *([point_id] if point_id else ()))
        if point_id and not unlike and len(like) == 1:
            strategy = "average_vector"  # the point's own vector: plain cosine scores
        options.pop("grid"), options.pop("include_self"), options.pop("texts")
        args = dict(like=like, unlike=unlike, strategy=strategy, params=params)
        show([run_recommend(store_config, collection, model_settings, **args, **options)])
        return
    if unlike:
        raise click.UsageError("--unlike goes with --like or --id")
    if not queries and not options["texts"]:
        raise click.UsageError(
            "pass a QUERY (image, SPLIT:ROW or folder), --text WORDS, --like or --id"
        )
    run_search(
        store_config, collection, queries, model_settings, params=params, show=show, **options
    )


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
@opt(
    "--text-queries",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Score these text queries instead of a split's images (CLIP, SigLIP): a file of "
    "`words<TAB>label` lines.",
)
@json_option
@workers_option
@search_options
@model_options(default=None)
@store_options
@domain_errors
def eval_(store_config, collection, model_settings, as_json, text_queries, **options):
    """Measure precision@k, precision@1 and k-NN accuracy of a split against the collection.

    With --text-queries FILE, of text queries instead: each finds the images of its label.

    \b
    Example:
      lookalike eval --split test --k 5 --json
      lookalike eval --recall --hnsw-ef 64   # how much the index loses
      lookalike eval --text-queries prompts.tsv --collection photos-clip
    """
    from lookalike.cli.commands import run_eval, run_text_eval

    if text_queries:
        k, params = options["k"], options["params"]
        report = run_text_eval(
            store_config, collection, model_settings, text_queries, k=k, params=params
        )
    else:
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
@opt(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Cosine similarity that makes a pair [default: the collection's own, measured at "
    "ingest on edited copies of its photos; 0.97 if it has none].",
)
@opt("--neighbours", type=click.IntRange(1), default=3, help="Nearest points examined per point.")
@picture_option("Draw the best pairs into this picture (PNG, or as named).")
@flag("--json", "as_json", help="JSON lines: pairs, then a summary.")
@store_options
@domain_errors
def duplicates(store_config, collection, threshold, neighbours, grid, as_json):
    """Find near-duplicate images in a collection, within and across splits (leakage).

    \b
    Example:
      lookalike duplicates --grid pairs.png
      lookalike duplicates --threshold 0.9 --json
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
@flag("--overwrite", help="Replace the files of an --output folder that is not empty.")
@json_option
@model_options(default=None, compile=False)
@store_options
@domain_errors
def tune_(store_config, collection, model_settings, output, dataset, overwrite, as_json, **options):
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
        overwrite=overwrite,
        dataset_variable=variable_of("dataset"),
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
@opt(
    "--watch",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the collection in sync with this image folder while serving (built from it "
    "first if it does not exist).",
)
@opt("--watch-split", default="train", help="The folder's split to watch.")
@opt(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    help="Host name the server answers to, besides localhost, IP addresses and --host "
    "(repeatable; the name a proxy or other machines use). Others get HTTP 400.",
)
@search_options
@model_options(default=None)
@store_options
@domain_errors
def serve(
    store_config,
    collection,
    host,
    port,
    max_upload_mb,
    allowed_hosts,
    model_settings,
    params,
    **watch,
):
    """Serve the search page and HTTP API (POST /search, GET /points/{id}/image, /health).

    The model and the store are opened once, at start-up. OpenAPI schema: /openapi.json.
    With --watch FOLDER the server also syncs the collection with the folder as files
    arrive, change and go (one process owns the embedded store, so `watch` cannot run
    beside a server).

    \b
    Example:
      lookalike serve --port 8000   # then open http://127.0.0.1:8000/
      lookalike serve --watch ~/photos --collection photos
    """
    from lookalike.cli.web import create_app, run_app
    from lookalike.thumbnails import Thumbnails, cache_folder

    sleep_idle_threads()  # the model shares the cores with the decoding of uploads
    reuse_freed_memory()  # a batch of queries' activations: kept for the next, not re-mapped
    # What a `search` that finds the store held should call: a wildcard host is not an address.
    local = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, host)
    url = f"http://{local}:{port}/"
    with _searcher(store_config, collection, model_settings, params, url, **watch) as searcher:
        app = create_app(
            searcher,
            max_upload=max_upload_mb * 1024 * 1024,
            allowed_hosts=(host, *allowed_hosts),
            thumbnails=Thumbnails(cache_folder(store_config.path, store_config.url)),
        )
        # uvicorn re-raises SIGTERM once it has shut down; as SystemExit it lets the store
        # close and this process's holder record go, as Ctrl-C does.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        said = f"serving {searcher.collection!r} on http://{host}:{port}/"
        run_app(app, host, port, on_listening=lambda: click.echo(said, err=True))


def _searcher(store_config, collection, model_settings, params, url, watch, watch_split):
    if watch is None:
        from lookalike.cli.searching import open_searcher

        return open_searcher(store_config, collection, model_settings, params, url=url)
    from lookalike.cli.sync import DatasetSettings, WatchSettings, serving_watched

    data = DatasetSettings(dataset=watch, split=watch_split)
    settings = WatchSettings()
    return serving_watched(store_config, collection, model_settings, params, data, settings, url)


from lookalike.cli.transfer import COMMANDS as _TRANSFER  # noqa: E402 (after cli exists)

for _command in _TRANSFER:  # collections, drop, export, import, copy
    cli.add_command(_command)


def main() -> None:
    try:
        cli(prog_name="lookalike")
    except SystemExit as done:
        _leave_running_threads(done.code)
        raise
    except Exception:  # a bug: its traceback helps, but must not show a secret
        text = traceback.format_exc()
        for secret in SECRETS:
            text = text.replace(secret, "***")
        sys.stderr.write(text)
        sys.exit(1)


def _leave_running_threads(code: int | str | None) -> None:
    """Exit at once when daemon threads still run, as prep workers do after Ctrl-C mid-ingest.
    Python's finalisation would stop them where they stand, and one inside torch's C++ code
    takes the process down with it ("terminate called without an active exception": exit
    -6, not 130). Everything of ours is closed by now, so nothing is lost by skipping it."""
    if code in (0, None):  # finished: the workers have, too (idle, outside any C++ code)
        return
    others = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if not any(t.daemon and t.is_alive() for t in others):
        return
    if isinstance(code, str):
        sys.stderr.write(code + "\n")
    atexit._run_exitfuncs()  # what was registered to run at exit still runs
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)


if __name__ == "__main__":
    sys.exit(main())
