"""Commands that manage and move whole collections: `collections` and `drop`; `export` to a
Parquet file, `import` from one, and `copy` between two stores, none of which embeds again."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os

import click

import lookalike.store as storage  # its engines (and numpy) load when one is opened
from lookalike.cli.console import bar, say
from lookalike.cli.errors import domain_errors
from lookalike.cli.options import flag, index_options, json_option, opt, store_options
from lookalike.cli.stores import open_store
from lookalike.store import StoreConfig
from lookalike.store.holders import holding


def _echo_json(obj) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


@click.command("export")
@click.argument("file", type=click.Path(dir_okay=False))
@flag("--overwrite", help="Replace FILE if it exists.")
@json_option
@store_options
@domain_errors
def export_command(store_config, collection, file, overwrite, as_json):
    """Write a collection (ids, vectors, payloads and its record: model, pooling, dataset,
    labels) to a Parquet file, streamed in pages; `lookalike import` loads it into any store.

    \b
    The file reads with pandas and with datasets.load_dataset("parquet", data_files=FILE):
    column `embedding` holds the vectors, `payload` each point's fields as JSON.

    \b
    Example:
      lookalike export beans.parquet --collection beans
    """
    if os.path.exists(file) and not overwrite:
        raise click.UsageError(f"{file} exists: pass --overwrite to replace it")
    folder = os.path.dirname(os.path.abspath(file))
    if not os.path.isdir(folder):
        raise click.UsageError(f"the folder {folder} does not exist")
    result = run_export(store_config, collection, file)
    _done(
        result, as_json, f"exported {result['points']} points of {result['collection']!r} to {file}"
    )


def run_export(config: StoreConfig, collection: str | None, file: str) -> dict:
    from lookalike.transfer import read, write_parquet

    with open_store(config, "export", collection) as (store, name), contextlib.ExitStack() as s:
        header, pages = read(store, name)
        progress = s.enter_context(bar(header.points, f"export {name}"))
        written = write_parquet(file, header, pages, progress.update)
    return {"collection": name, "points": written, "file": os.path.abspath(file)}


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@json_option
@store_options
@index_options
@domain_errors
def import_command(store_config, collection, index, file, as_json):
    """Load a Parquet file written by `lookalike export` into a collection of this store
    (embedded or a server), in pages; an existing collection must have been built with the
    same model, pooling and dataset. Nothing is embedded.

    \b
    --collection defaults to the exported collection's name; index options apply when the
    collection is created (on a server, its graph is built once, after the load).

    \b
    Example:
      lookalike import beans.parquet --qdrant-url http://localhost:6333
    """
    from lookalike.transfer import load, read_parquet

    header, pages = read_parquet(file)
    name = collection or header.collection
    with _writing(store_config, "import", name) as store, bar(header.points, f"import {name}") as b:
        report = load(store, name, header, pages, index=index, on_progress=b.update)
    _done(report.to_dict(), as_json, f"imported {report.points} points into {name!r}")


@click.command("copy")
@opt("--to-qdrant-url", default=None, help="Server to copy to.")
@opt(
    "--to-qdrant-api-key-file",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="File holding the target server's API key (its first line).",
)
@opt("--to-qdrant-path", default=None, help="Embedded store folder to copy to.")
@opt(
    "--to-embedded-engine",
    default="auto",
    type=click.Choice(["auto", "edge", "local"]),
    help="Engine of a new embedded target.",
)
@opt("--to-collection", default=None, help="Collection to copy into [default: the same name].")
@json_option
@store_options
@index_options
@domain_errors
def copy_command(store_config, collection, index, as_json, **to):
    """Copy a collection from this store to another (embedded -> server the common case),
    streamed in pages, without embedding again: export and import in one step.

    \b
    Example:
      lookalike copy --collection photos --to-qdrant-url http://localhost:6333
      lookalike copy --collection photos --to-qdrant-path /mnt/big/lookalike-data
    """
    target = _target(store_config, to)
    report = run_copy(store_config, collection, target, to["to_collection"], index)
    _done(
        report.to_dict(),
        as_json,
        f"copied {report.points} points into {report.collection!r} at {target.location}",
    )


def _target(source: StoreConfig, to: dict) -> StoreConfig:
    if not to["to_qdrant_url"] and not to["to_qdrant_path"]:
        raise click.UsageError("name the store to copy to: --to-qdrant-url or --to-qdrant-path")
    key = None
    if to["to_qdrant_api_key_file"]:
        with open(to["to_qdrant_api_key_file"]) as f:
            key = f.readline().strip() or None
    return dataclasses.replace(
        source,
        url=to["to_qdrant_url"],
        api_key=key,
        path=to["to_qdrant_path"] or source.path,
        engine=to["to_embedded_engine"],
    )


def run_copy(source: StoreConfig, collection, target: StoreConfig, to_collection, index):
    from lookalike.transfer import load, read

    with open_store(source, "copy", collection) as (store, name):
        into = to_collection or name
        if target.location == source.location:
            if into == name:
                raise click.UsageError(
                    f"{name!r} would be copied onto itself: pass --to-collection"
                )
            header, pages = read(store, name)
            with bar(header.points, f"copy {name}") as b:
                return load(store, into, header, pages, index=index, on_progress=b.update)
        with _writing(target, "copy", into) as other:
            header, pages = read(store, name)
            with bar(header.points, f"copy {name}") as b:
                return load(other, into, header, pages, index=index, on_progress=b.update)


@contextlib.contextmanager
def _writing(config: StoreConfig, command: str, collection: str):
    with storage.connect(config) as store:
        embedded = not config.url
        with holding(config.path, command, collection) if embedded else contextlib.nullcontext():
            yield store


def _done(result: dict, as_json: bool, line: str) -> None:
    if as_json:
        _echo_json(result)
    else:
        click.echo(line)


@click.command("collections")
@json_option
@store_options
@domain_errors
def collections_command(store_config, collection, as_json):
    """List the store's collections: size, model, source and last sync."""
    with storage.connect(store_config) as store:
        rows = [
            _row(store.info(n)) for n in sorted(store.names()) if not collection or n == collection
        ]
    if as_json:
        for row in rows:
            _echo_json(row)
    elif rows:
        click.echo(_table(rows))
    else:
        say(f"no collections at {store_config.location}: `lookalike ingest` makes one")


def _table(rows: list[dict]) -> str:
    from lookalike.cli.output import _table as table

    def cell(row: dict, key: str) -> str:
        value = row[key]
        return "-" if value is None else str(value)

    keys = ["collection", "points", "model", "dataset", "synced"]
    headers = ["collection", "points", "model", "source", "last sync"]
    return table(headers, [[cell(r, k) for k in keys] for r in rows])


def _row(info) -> dict:
    meta = info.meta
    return {
        "collection": info.name,
        "points": info.points,
        "model": meta.model if meta else None,
        "dataset": meta.dataset if meta else None,
        "synced": meta.synced if meta else None,
    }


@click.command("drop")
@click.argument("name")
@flag("--yes", help="Drop without asking.")
@store_options
@domain_errors
def drop_command(store_config, collection, name, yes):
    """Delete collection NAME and its points (the images themselves are not touched).

    \b
    Example:
      lookalike drop photos-old --yes
    """
    if collection and collection != name:
        raise click.UsageError(
            f"drop names one collection: {name!r} or --collection {collection!r}"
        )
    with _writing(store_config, "drop", name) as store:
        if not store.exists(name):
            raise store.not_found(name)
        points = store.info(name).points
        if not yes:
            click.confirm(
                f"delete collection {name!r} ({points} points) from {store_config.location}?",
                abort=True,
                err=True,
            )
        store.drop(name)
    click.echo(f"dropped {name!r} ({points} points)")


COMMANDS = [collections_command, drop_command, export_command, import_command, copy_command]
