"""The library's exceptions: one base class, so callers can catch everything lookalike raises."""


class LookalikeError(Exception):
    """Base class; the message says what happened and what to do."""


class DatasetLoadError(LookalikeError):
    """A dataset, split or column could not be loaded."""


class ModelLoadError(LookalikeError):
    """A model or its image processor could not be loaded."""


class CollectionNotFound(LookalikeError):
    """The Qdrant collection does not exist."""


class ModelMismatch(LookalikeError):
    """A collection was built with another model, pooling, vector size or dataset."""


class StoreLocked(LookalikeError):
    """The embedded store's folder is in use by another process."""


class StoreUnavailable(LookalikeError):
    """The Qdrant server could not be reached or answered with an error."""


class BadImage(LookalikeError):
    """An image could not be read or decoded."""


class BadQuery(LookalikeError):
    """A query, label or k that cannot be answered."""


class IngestInterrupted(LookalikeError):
    """Ingest stopped part-way (Ctrl-C or a store failure); what was stored stays stored."""

    def __init__(self, message: str, *, by_user: bool = False) -> None:
        super().__init__(message)
        self.by_user = by_user
