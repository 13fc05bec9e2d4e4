"""Click options shared by the commands: each has a LOOKALIKE_<OPTION> env var and a shown
default, and groups of them arrive in the command as one settings object."""

from __future__ import annotations

import dataclasses
import functools

import click

from lookalike.defaults import DEFAULT_PATH, DEVICES, ENGINES, POOLINGS, PRECISIONS, QUANTIZATIONS
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
                help="Qdrant server URL; the embedded store (--qdrant-path) if unset.",
            ),
            opt(
                "--qdrant-api-key", default=None, show_default=False, help="Qdrant server API key."
            ),
            opt("--qdrant-path", default=DEFAULT_PATH, help="Folder of the embedded store."),
            opt(
                "--embedded-engine",
                default="auto",
                type=click.Choice(ENGINES),
                help="Embedded store engine: edge (HNSW, quantization; fast at any size) or "
                "local (exact, pure Python, small collections); auto keeps what the folder "
                "holds, edge for a new one.",
            ),
            opt("--qdrant-timeout", default=60, type=click.IntRange(1), help="Server timeout, s."),
            opt("--collection", default="beans", help="Qdrant collection."),
        ]
    ):
        f = decorator(f)

    @functools.wraps(f)
    def wrapper(qdrant_url, qdrant_api_key, qdrant_path, embedded_engine, qdrant_timeout,
                **kwargs):  # fmt: skip
        from lookalike.store import StoreConfig  # imported late: --help stays fast

        config = StoreConfig(
            url=qdrant_url, api_key=qdrant_api_key, path=qdrant_path, engine=embedded_engine,
            timeout=qdrant_timeout,
        )  # fmt: skip
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


def index_options(f):
    """How a new collection is indexed, and how ingest uploads to a server; passed on as
    `index` (IndexSettings) and in `store_config`. Goes below @store_options."""
    decorators = [
        opt("--hnsw-m", type=click.IntRange(2), default=16, help="HNSW edges per node."),
        opt("--hnsw-ef-construct", type=click.IntRange(4), default=100,
            help="HNSW build-time candidate list: higher builds slower, finds better."),
        opt("--on-disk", is_flag=True, default=False,
            help="Keep original vectors on disk (memory-mapped); best with --quantization."),
        opt("--quantization", type=click.Choice(QUANTIZATIONS), default="none",
            help="Compressed copy of the vectors in RAM for the first search pass: int8 is "
            "4x smaller, binary 32x; results are rescored with the originals."),
        opt("--shards", type=click.IntRange(1), default=1,
            help="Server: shards to spread the collection over a cluster's nodes."),
        opt("--replicas", type=click.IntRange(1), default=1,
            help="Server: copies of each shard, on different nodes."),
        opt("--upload-parallel", type=click.IntRange(1), default=4,
            help="Server: upsert requests in flight at once."),
        opt("--upsert-batch", type=click.IntRange(1), default=256,
            help="Points per upsert request (lowered to fit a 32 MB request)."),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        f = decorator(f)

    @functools.wraps(f)
    def wrapper(store_config, hnsw_m, hnsw_ef_construct, on_disk, quantization, shards,
                replicas, upload_parallel, upsert_batch, **kwargs):  # fmt: skip
        from lookalike.index import IndexSettings

        index = IndexSettings(hnsw_m, hnsw_ef_construct, on_disk, quantization, shards, replicas)
        config = dataclasses.replace(
            store_config, upload_parallel=upload_parallel, upsert_batch=upsert_batch
        )
        return f(store_config=config, index=index, **kwargs)

    return wrapper


def search_options(f):
    """How queries use the index, passed to the command as `params` (SearchSettings)."""
    decorators = [
        opt("--exact", is_flag=True, default=False,
            help="Compare with every vector instead of the HNSW graph: exact, slow at scale."),
        opt("--hnsw-ef", type=click.IntRange(1), default=None,
            help="HNSW search candidate list [default: the collection's ef-construct]: "
            "higher finds more true neighbours, slower."),
        opt("--oversampling", type=click.FloatRange(1), default=None,
            help="Quantized collections: fetch this many times k candidates to rescore."),
        opt("--rescore/--no-rescore", default=True,
            help="Quantized collections: re-rank candidates with the original vectors."),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        f = decorator(f)

    @functools.wraps(f)
    def wrapper(exact, hnsw_ef, oversampling, rescore, **kwargs):
        from lookalike.index import SearchSettings

        params = SearchSettings(exact, hnsw_ef, oversampling, rescore)
        return f(params=params, **kwargs)

    return wrapper


def batch_size_option(f):
    return opt(
        "--batch-size",
        type=click.IntRange(1),
        default=None,
        help="Images per model batch [default: 16 on CPU, 64 on GPU].",
    )(f)


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
