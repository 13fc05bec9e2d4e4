"""A sync's embedding on Ray Data: `RayStage` is the `embed_stage` of `lookalike.ingest`.

    positions to embed (the driver's plan)
      -> read + decode + preprocess   CPU tasks, the Source's and the Embedder's own code
      -> embed                        map_batches, one actor per GPU (else per CPU node)
      -> write                        a server: QdrantSink, from the workers
                                      the embedded store: the driver, batch by batch

Start-up (Ray, then the actors' model loads) happens only when a sync has images to embed.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from lookalike.distributed.cluster import LOCAL, Cluster
from lookalike.distributed.stages import Embed, decode, unpack
from lookalike.embed import ModelSettings
from lookalike.errors import IngestInterrupted, LookalikeError, StoreUnavailable
from lookalike.ingest.writer import BackgroundWriter
from lookalike.store.config import StoreConfig

DECODE_MEMORY = 256 * 2**20


@dataclass
class RayStage:
    """Embeds a sync's images on Ray. `settings`: how the actors load the model (device,
    precision; the model and pooling are the collection's, as the driver resolved them);
    `gpus`: embedding actors on GPUs (default: every GPU Ray sees; 0: CPU actors)."""

    settings: ModelSettings
    store: StoreConfig
    address: str = LOCAL
    num_cpus: int | None = None
    gpus: int | None = None
    batch_size: int | None = None  # the user's; default: 64 on GPU actors, else the driver's
    write_batch: int = 128
    cluster: Cluster = field(init=False)
    stats: dict = field(default_factory=dict)  # the last run's rows, seconds per stage

    def __post_init__(self) -> None:
        self.cluster = Cluster(self.address, self.num_cpus)

    def close(self) -> None:
        self.cluster.close()

    def __call__(self, run, positions: list[int], embedder, batch_size: int, workers) -> None:
        self.cluster.open()
        self.stats = {"startup_s": self.cluster.startup_seconds, "rows": len(positions)}
        began = time.perf_counter()
        dataset = self.dataset(run.source, positions, embedder, batch_size)
        if self.store.url:
            self._sink(run, dataset)
        else:
            self._stream(run, dataset)
        run.embed_seconds = self.stats["wall_s"] = time.perf_counter() - began

    def dataset(self, source, positions: list[int], embedder, batch_size: int):
        import ray
        import ray.data

        gpus = self.cluster.gpus() if self.gpus is None else self.gpus
        # The driver's model sizes batches for its CPU; GPU actors want larger ones.
        batch_size = self.batch_size or (64 if gpus else batch_size)
        blocks = max(1, math.ceil(len(positions) / batch_size))
        # References in a list: Ray Data hands them over as they are, each worker gets once.
        refs = [ray.put(source), ray.put(np.asarray(positions, dtype=np.int64))]
        rows = ray.data.range(len(positions), override_num_blocks=blocks)
        decoded = rows.map_batches(
            decode,
            batch_size=batch_size,
            num_cpus=1,
            # What a task may hold (a batch of decoded photos, one at a time, and its pixels).
            # Asking for it also keeps decoding on CPU tasks of its own, not fused into the
            # embedding actors: the two overlap, as they do locally.
            memory=DECODE_MEMORY,
            fn_kwargs={
                "refs": refs,
                "model": embedder.model_id,
                "load_kwargs": embedder.load_kwargs,
            },
        )
        nodes = self.cluster.cpu_nodes()
        threads = None if gpus else max(nodes)
        self.stats["embed_actors"] = gpus or len(nodes)
        return decoded.map_batches(
            Embed,
            batch_size=batch_size,
            fn_constructor_kwargs={
                "settings": self.settings,
                "model": embedder.model_id,
                "pooling": embedder.pooling,
                "threads": threads,
            },
            compute=ray.data.ActorPoolStrategy(size=gpus or len(nodes)),
            **({"num_gpus": 1} if gpus else {"num_cpus": 1}),
        )

    def _stream(self, run, dataset) -> None:
        """The embedded store admits one process: the driver writes, batch by batch, through
        the local ingest's own writer thread."""
        times = {"decode_s": 0.0, "embed_s": 0.0, "write_s": 0.0}
        seen: set[str] = set()

        def write(records, vectors) -> None:
            began = time.perf_counter()
            run.write(records, vectors)
            times["write_s"] += time.perf_counter() - began

        with BackgroundWriter(write) as writer:
            try:
                for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                    times["decode_s"] += float(batch["t_decode"].sum())
                    times["embed_s"] += float(batch["t_embed"].sum())
                    records, vectors, skipped = unpack(batch)
                    # A block computed twice (a task retried after its worker died) is
                    # stored and counted once.
                    fresh = [i for i, r in enumerate(records) if r.id not in seen]
                    if len(fresh) < len(records):
                        records, vectors = [records[i] for i in fresh], vectors[fresh]
                    seen.update(r.id for r in records)
                    run.skip(skipped)
                    if records:
                        writer.submit(records, vectors)
                        run.embedded += len(records)
                    _progress(run, len(records) + len(skipped))
            except KeyboardInterrupt:
                writer.drain()
                raise IngestInterrupted(run.collection, run.written, by_user=True) from None
        self.stats.update(times)

    def _sink(self, run, dataset) -> None:
        """A server: the workers write; the driver counts what the tally says is stored."""
        import ray

        from lookalike.distributed.sink import QdrantSink, Tally

        tally = ray.remote(num_cpus=0)(Tally).remote()
        sink = QdrantSink(self.store, run.collection, tally, self.write_batch)
        failed: list[BaseException] = []

        def write() -> None:
            try:
                dataset.write_datasink(sink)
            except BaseException as e:  # told to the driver below
                failed.append(e)

        thread = threading.Thread(target=write, name="lookalike-ray-write", daemon=True)
        thread.start()
        try:
            seen = 0
            while thread.is_alive():
                thread.join(0.5)
                now = ray.get(tally.count.remote())
                _progress(run, now - seen)
                seen = now
        except KeyboardInterrupt:
            self._settle(run, ray.get(tally.result.remote()))
            raise IngestInterrupted(run.collection, run.written, by_user=True) from None
        self._settle(run, ray.get(tally.result.remote()))
        if failed:
            refused = ray.get(tally.error.remote())
            if refused is None:  # not the store: a worker lost for good, a bug
                cause = _cause(failed[0])
                if cause is None:
                    raise failed[0]
                raise IngestInterrupted(run.collection, run.written, cause=cause) from failed[0]
            *fields, attempts, status, rows = refused
            cause = StoreUnavailable(*fields, attempts=attempts, status=status)
            raise IngestInterrupted(run.collection, run.written, cause=cause, rows=rows) from None

    def _settle(self, run, result) -> None:
        from lookalike.distributed.sink import merge_kinds

        ids, types, skipped, seconds = result
        run.skip(skipped)
        run.written += len(ids)
        run.embedded += len(ids)
        run.types = merge_kinds(run.types, types)
        run.tell(ids)
        self.stats.update(seconds)


def _progress(run, n: int) -> None:
    if n and run.hooks.progress:
        run.hooks.progress(n)
    if run.hooks.stop is not None and run.hooks.stop.is_set():
        raise KeyboardInterrupt


def _cause(error: BaseException) -> LookalikeError | None:
    """The library error inside what Ray raised (a task's error comes wrapped)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, LookalikeError):
            return error
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__
    return None
