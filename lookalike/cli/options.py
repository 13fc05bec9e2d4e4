"""Click options shared by the commands. Groups of them arrive in a command as one settings
object (StoreConfig, ModelSettings, IndexSettings, SearchSettings).

Environment variables: options that mean the same for every command read one shared variable
(`LOOKALIKE_MODEL`, `LOOKALIKE_COLLECTION`...); every other option reads a variable of its
command (`LOOKALIKE_INGEST_SPLIT`, `LOOKALIKE_EVAL_SPLIT`), through click's
auto_envvar_prefix; destructive and trust flags read none, so damage needs a typed flag.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import click
from click.core import ParameterSource

from lookalike.defaults import (
    DEFAULT_PATH,
    DEVICES,
    ENGINES,
    POOLINGS,
    PRECISIONS,
    QUANTIZATIONS,
    RUNTIMES,
)
from lookalike.embed.settings import ModelSettings
from lookalike.errors import BadQuery
from lookalike.index import IndexSettings
from lookalike.store.config import StoreConfig

PREFIX = "LOOKALIKE"


def opt(*decls: str, shared: bool = False, **kwargs):
    """An option with its default shown in --help. `shared`: one LOOKALIKE_<OPTION> variable
    for every command; otherwise the command's own LOOKALIKE_<COMMAND>_<OPTION>."""
    if shared:
        name = max((d for d in decls if d.startswith("--")), key=len)[2:]
        kwargs.setdefault("envvar", f"{PREFIX}_{name.upper().replace('-', '_')}")
    kwargs.setdefault("show_envvar", kwargs.get("allow_from_autoenv", True))
    kwargs.setdefault("show_default", True)
    return click.option(*decls, **kwargs)


def flag(*decls: str, help: str):
    """An on/off flag read from the command line only: never from the environment."""
    return opt(*decls, is_flag=True, default=False, allow_from_autoenv=False, help=help)


def variable_of(name: str) -> str | None:
    """The environment variable the current command's option `name` took its value from, or
    None when it was typed (or is its default): a value from the environment must not
    redirect work on an existing collection, so commands learn where each came from."""
    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.get_parameter_source(name) is not ParameterSource.ENVIRONMENT:
        return None
    param = next(p for p in ctx.command.params if p.name == name)
    if isinstance(param.envvar, str):
        return param.envvar
    if param.envvar:  # several: the first one set
        return next((v for v in param.envvar if os.environ.get(v)), param.envvar[0])
    command = (ctx.info_name or "").upper().replace("-", "_")
    return f"{PREFIX}_{command}_{name.upper()}"


def typed(name: str) -> bool:
    """Whether the current command's option `name` was typed on the command line."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE


def apply(f, decorators):
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


json_option = flag("--json", "as_json", help="Print JSON for programs.")

_DEFAULT_STORE = StoreConfig()


def store_options(f):
    """Qdrant location and collection, shared by every command."""
    f = apply(
        f,
        [
            opt(
                "--qdrant-url",
                shared=True,
                default=None,
                help="Qdrant server URL; the embedded store (--qdrant-path) if unset.",
            ),
            opt(
                "--qdrant-api-key",
                shared=True,
                default=None,
                show_default=False,
                help="Qdrant server API key (visible to other users in `ps`: prefer the file).",
            ),
            opt(
                "--qdrant-api-key-file",
                shared=True,
                default=None,
                type=click.Path(exists=True, dir_okay=False),
                help="File holding the Qdrant server API key (its first line).",
            ),
            opt("--qdrant-path", shared=True, default=DEFAULT_PATH, help="Embedded store folder."),
            opt(
                "--embedded-engine",
                shared=True,
                default=_DEFAULT_STORE.engine,
                type=click.Choice(ENGINES),
                help="Embedded store engine: edge (HNSW, quantization; fast at any size) or "
                "local (exact, pure Python, small collections); auto keeps what the folder "
                "holds, edge for a new one.",
            ),
            opt(
                "--qdrant-timeout",
                shared=True,
                default=_DEFAULT_STORE.timeout,
                type=click.IntRange(1),
                help="Server timeout, s.",
            ),
            opt(
                "--collection",
                shared=True,
                default=None,
                help="Collection [default: the store's only one; ingest: named after the "
                "dataset, as in 'beans' or 'photos' for ~/photos].",
            ),
        ],
    )

    @functools.wraps(f)
    def wrapper(
        qdrant_url,
        qdrant_api_key,
        qdrant_api_key_file,
        qdrant_path,
        embedded_engine,
        qdrant_timeout,
        **kw,
    ):
        if qdrant_api_key_file:
            if qdrant_api_key:
                raise click.UsageError("pass --qdrant-api-key or --qdrant-api-key-file, not both")
            qdrant_api_key = _read_key(qdrant_api_key_file)
        config = StoreConfig(
            url=qdrant_url,
            api_key=qdrant_api_key,
            path=qdrant_path,
            engine=embedded_engine,
            timeout=qdrant_timeout,
        )
        SECRETS.update(config.secrets)
        return f(store_config=config, **kw)

    return wrapper


# Every secret the command line was given, so that nothing it prints can show one.
SECRETS: set[str] = set()


def _read_key(path: str) -> str:
    try:
        with open(path) as f:
            key = f.readline().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise click.BadParameter(
            f"cannot read {path}: {e}", param_hint="--qdrant-api-key-file"
        ) from e
    if not key:
        raise click.BadParameter(f"{path} is empty", param_hint="--qdrant-api-key-file")
    return key


def model_options(
    default: str | None, *, pooling: bool = False, compile: bool = True, new: str | None = None
):
    """Model loading and running options, passed to the command as one ModelSettings
    (`model_settings`). `new`: the model for a new collection, when the default is the
    collection's own."""

    d = ModelSettings()

    def decorate(f):
        help_model = "Model hub id or local folder" + (
            "." if default else " [default: the model the collection was built with"
        )
        if not default:
            help_model += f"; {new} for a new one]." if new else "]."
        decorators = [
            opt("--model", shared=True, default=default, help=help_model),
            opt("--revision", default=None, help="Model revision (hub branch, tag or commit)."),
            opt(
                "--device",
                shared=True,
                default=d.device,
                type=click.Choice(DEVICES),
                help="Where the model runs; auto picks a GPU when there is one.",
            ),
            opt(
                "--precision",
                shared=True,
                default=d.precision,
                type=click.Choice(PRECISIONS),
                help="auto: bf16/fp16 on GPU, bf16 on CPUs with native bf16, else fp32.",
            ),
            flag(
                "--trust-remote-code",
                help="Allow a model to run its own Python code from its folder or hub repo.",
            ),
            opt(
                "--runtime",
                shared=True,
                default=d.runtime,
                type=click.Choice(RUNTIMES),
                help="What runs the model: auto picks OpenVINO on a CPU where it is installed.",
            ),
        ]
        if compile:
            decorators.append(
                opt("--compile", is_flag=True, default=d.compile, help="torch.compile the model.")
            )
        if pooling:
            decorators.append(
                opt(
                    "--pooling",
                    default=d.pooling,
                    type=click.Choice(POOLINGS),
                    help="Embedding: auto picks the model family's (CLS, pooler, image features).",
                )
            )
        f = apply(f, decorators)

        @functools.wraps(f)
        def wrapper(model, revision, device, precision, trust_remote_code, runtime, **kw):
            settings = ModelSettings(
                model=model,
                revision=revision,
                device=device,
                precision=precision,
                pooling=kw.pop("pooling", d.pooling),
                compile=kw.pop("compile", d.compile),
                trust_remote_code=trust_remote_code,
                runtime=runtime,
                model_variable=variable_of("model") if model else None,
            )
            return f(model_settings=settings, **kw)

        return wrapper

    return decorate


_DEFAULT_INDEX = IndexSettings()


def index_options(f):
    """How a new collection is indexed, and how ingest uploads to a server; passed on as
    `index` (IndexSettings) and in `store_config`. Goes below @store_options."""
    d = _DEFAULT_INDEX
    f = apply(
        f,
        [
            opt("--hnsw-m", type=click.IntRange(2), default=d.hnsw_m, help="HNSW edges per node."),
            opt(
                "--hnsw-ef-construct",
                type=click.IntRange(4),
                default=d.hnsw_ef_construct,
                help="HNSW build-time candidate list: higher builds slower, finds better.",
            ),
            opt(
                "--on-disk",
                is_flag=True,
                default=d.on_disk,
                help="Keep original vectors on disk (memory-mapped); best with --quantization.",
            ),
            opt(
                "--quantization",
                type=click.Choice(QUANTIZATIONS),
                default=d.quantization,
                help="Compressed copy of the vectors in RAM for the first search pass: int8 is "
                "4x smaller, binary 32x; results are rescored with the originals.",
            ),
            opt(
                "--shards",
                type=click.IntRange(1),
                default=d.shards,
                help="Server: shards to spread the collection over a cluster's nodes.",
            ),
            opt(
                "--replicas",
                type=click.IntRange(1),
                default=d.replicas,
                help="Server: copies of each shard, on different nodes.",
            ),
            opt(
                "--write-consistency",
                type=click.IntRange(1),
                default=d.write_consistency,
                help="Server: replicas that must confirm each write (at most --replicas).",
            ),
            opt(
                "--upload-parallel",
                type=click.IntRange(1),
                default=_DEFAULT_STORE.upload_parallel,
                help="Server: upsert requests in flight at once.",
            ),
            opt(
                "--upsert-batch",
                type=click.IntRange(1),
                default=_DEFAULT_STORE.upsert_batch,
                help="Points per upsert request (lowered to fit a 32 MB request).",
            ),
        ],
    )

    @functools.wraps(f)
    def wrapper(store_config, upload_parallel, upsert_batch, **kw):
        names = [f.name for f in dataclasses.fields(IndexSettings)]
        try:
            index = IndexSettings(**{name: kw.pop(name) for name in names})
        except BadQuery as e:  # options that contradict each other (consistency > replicas)
            raise click.UsageError(str(e)) from None
        config = dataclasses.replace(
            store_config, upload_parallel=upload_parallel, upsert_batch=upsert_batch
        )
        return f(store_config=config, index=index, **kw)

    return wrapper


def search_options(f):
    """How queries use the index, passed to the command as `params` (SearchSettings)."""
    f = apply(
        f,
        [
            opt(
                "--exact",
                is_flag=True,
                default=False,
                help="Compare with every vector instead of the HNSW graph: exact, slow at scale.",
            ),
            opt(
                "--hnsw-ef",
                type=click.IntRange(1),
                default=None,
                help="HNSW search candidate list [default: the collection's ef-construct]: "
                "higher finds more true neighbours, slower.",
            ),
            opt(
                "--oversampling",
                type=click.FloatRange(1),
                default=None,
                help="Quantized collections: fetch this many times k candidates to rescore.",
            ),
            opt(
                "--rescore/--no-rescore",
                default=True,
                help="Quantized collections: re-rank candidates with the original vectors.",
            ),
        ],
    )

    @functools.wraps(f)
    def wrapper(exact, hnsw_ef, oversampling, rescore, **kw):
        from lookalike.index import SearchSettings

        return f(params=SearchSettings(exact, hnsw_ef, oversampling, rescore), **kw)

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
        help="Threads decoding and preprocessing images ahead of the model; they work only "
        "while the model needs batches [default: one per core, at most 16].",
    )(f)


def _in_existing_folder(ctx, param, value: str | None) -> str | None:
    """A file to write, checked before anything loads: its folder must exist."""
    if value is not None:
        folder = os.path.dirname(os.path.abspath(value))
        if not os.path.isdir(folder):
            raise click.BadParameter(f"the folder {folder} does not exist; create it first")
        if not os.access(folder, os.W_OK):
            raise click.BadParameter(f"the folder {folder} is not writable")
    return value


def _picture_file(ctx, param, value: str | None) -> str | None:
    """A picture to write: in an existing folder, named with an extension PIL can write (or
    none, for PNG)."""
    value = _in_existing_folder(ctx, param, value)
    extension = os.path.splitext(value or "")[1].lower()
    if extension:
        from PIL import Image

        Image.init()
        formats = Image.registered_extensions()
        if formats.get(extension) not in Image.SAVE:
            raise click.BadParameter(
                f"cannot write a {extension} picture; name it .png or .jpg (no extension: PNG)"
            )
    return value


def output_file(*decls: str, help: str):
    """An option naming a file to write, whose folder must exist."""
    return opt(
        *decls,
        type=click.Path(dir_okay=False, writable=True),
        default=None,
        callback=_in_existing_folder,
        help=help,
    )


def picture_option(help: str):
    """--grid: a picture to draw results into."""
    return opt(
        "--grid",
        type=click.Path(dir_okay=False, writable=True),
        default=None,
        callback=_picture_file,
        help=help,
    )


class MinScore(click.ParamType):
    """A number, or "dup" for the collection's calibrated near-duplicate threshold."""

    name = "number|dup"

    def convert(self, value, param, ctx):
        if isinstance(value, float) or str(value).strip().lower() == "dup":
            return value if isinstance(value, float) else "dup"
        try:
            return float(value)
        except ValueError:
            self.fail(f"{value!r} is not a number or 'dup'", param, ctx)


def query_options(f):
    """Filters, a score cut-off and grouping: passed to the command as `query`, the keyword
    arguments of Searcher.options."""
    f = apply(
        f,
        [
            opt(
                "--where",
                multiple=True,
                help="Only candidates whose FIELD matches: FIELD=VALUE (VALUE,VALUE: any of "
                "them), FIELD!=VALUE, FIELD>=X, FIELD<=X (repeatable, all must hold).",
            ),
            opt(
                "--filter",
                default=None,
                help="Only candidates matching this filter, in Qdrant's JSON filter syntax.",
            ),
            opt(
                "--min-score",
                type=MinScore(),
                default=None,
                help="Drop hits scoring below this (cosine similarity for image queries); "
                "'dup': the collection's near-duplicate threshold (only copies of the query).",
            ),
            opt(
                "--group-by",
                default=None,
                help="One hit per value of this field: the best of each (e.g. one per product).",
            ),
            opt(
                "--near",
                default=None,
                metavar="LAT,LON",
                help="Only photos taken near this place (their GPS `location`), with --within.",
            ),
            opt(
                "--within",
                default=None,
                metavar="DISTANCE",
                help="With --near: how near, e.g. 5km, 800m, 2mi.",
            ),
        ],
    )

    @functools.wraps(f)
    def wrapper(where, filter, min_score, group_by, near, within, **kw):  # noqa: A002
        query = {"where": where, "filter": filter, "min_score": min_score}
        geo = {"near": near, "within": within} if near or within else {}
        return f(query={**query, "group_by": group_by, **geo}, **kw)

    return wrapper
