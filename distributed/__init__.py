"""The distributed stage (installed as `lookalike.distributed`): a sync's embedding and writing
on Ray Data, across the GPUs of one machine or of a cluster (`pip install 'lookalike[ray]'`).

The sync itself is unchanged (`lookalike.ingest`): one plan made on the driver, renamed images
keeping their vectors, removals after the writes. Only the images to embed go through Ray:
read and decode + preprocess on CPU tasks, embed on one actor per GPU, write from the workers
to a Qdrant server (`sink.py`) or, for the embedded store, from the driver. Ray is imported
only when a sync has something to embed.
"""

from lookalike.distributed.stage import RayStage

__all__ = ["RayStage"]
