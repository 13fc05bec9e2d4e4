"""The library's exceptions: one base class, so callers can catch everything lookalike raises.

Each error carries what happened in fields, and its message is a plain sentence for a Python
caller. Advice that names a command-line flag or an HTTP status is added at the edge
(`lookalike.cli.errors`), never here.
"""

from __future__ import annotations

from collections.abc import Sequence


class LookalikeError(Exception):
    """Base class of every error lookalike raises."""


def shown(name: str) -> str:
    """A file name as a message shows it: as it is, or quoted with escapes when it holds
    control characters (a newline in a name must not start a forged line on a terminal)."""
    return name if name.isprintable() else repr(name)


class DatasetLoadError(LookalikeError):
    """A dataset, split, column or row could not be loaded.

    `kind` says which: missing (a local path that does not exist), empty, unreachable (a hub
    id, and no network to fetch it), offline (a hub id not in the cache, in offline mode),
    not_found (a hub id the hub does not know), unreadable, no_split, no_image_column,
    no_label_column, no_rows, row."""

    def __init__(
        self,
        dataset: str,
        reason: str,
        *,
        kind: str = "unreadable",
        split: str | None = None,
        available: Sequence[str] = (),
    ) -> None:
        self.dataset, self.reason, self.kind = dataset, reason, kind
        self.split, self.available = split, tuple(available)
        super().__init__(reason)


class ModelLoadError(LookalikeError):
    """A model or its image processor could not be loaded, or cannot run as asked.

    `kind`: missing (a local path that does not exist), unreachable (a hub id, and no network),
    offline (a hub id not in the cache, in offline mode), unreadable, device, precision,
    pooling."""

    def __init__(self, model: str | None, reason: str, *, kind: str = "unreadable") -> None:
        self.model, self.reason, self.kind = model, reason, kind
        super().__init__(reason)


class LoadErrors(LookalikeError):
    """Several inputs could not be loaded (a dataset and a model, say), reported together so
    that one run shows every fix; `errors` holds each one."""

    def __init__(self, errors: Sequence[LookalikeError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


class CollectionNotFound(LookalikeError):
    """The collection does not exist where the store looked; `collection` None: none was
    named, and the store does not hold exactly one to choose."""

    def __init__(self, collection: str | None, location: str, known: Sequence[str] = ()) -> None:
        self.collection, self.location, self.known = collection, location, tuple(known)
        listed = ", ".join(sorted(self.known)) or "none"
        if collection is None:
            held = f"{len(self.known)}: {listed}" if self.known else "none"
            message = f"no collection named, and the store at {location} holds {held}"
        else:
            message = (
                f"collection {collection!r} does not exist at {location} "
                f"(collections there: {listed})"
            )
        super().__init__(message)


class ModelMismatch(LookalikeError):
    """A collection was built another way than asked (`what`: foreign, dim, model, dataset,
    or legacy: by an older lookalike, whose points follow rows and carry no fingerprint)."""

    def __init__(self, collection: str, what: str, have: str = "", want: str = "") -> None:
        self.collection, self.what, self.have, self.want = collection, what, have, want
        super().__init__(_mismatch(collection, what, have, want))


def _mismatch(collection: str, what: str, have: str, want: str) -> str:
    if what == "foreign":
        return f"collection {collection!r} was not built by lookalike"
    if what == "dim":
        return f"collection {collection!r} holds {have} vectors, but the model makes {want} vectors"
    if what == "model":
        return f"collection {collection!r} was built with model {have}, not {want}"
    if what == "legacy":
        return (
            f"collection {collection!r} was built by an older lookalike, whose points follow "
            "rows rather than images: a sync that keeps missing images or takes a sample "
            "cannot replace them"
        )
    return f"collection {collection!r} holds images of dataset {have!r}, not {want!r}"


class DatasetMoved(ModelMismatch):
    """The collection's images seem to have moved to `want`, but only `matched` of its
    `stored` images are there unchanged, and `differ` are new, changed or gone: adopting the
    new place needs the user's word."""

    def __init__(
        self, collection: str, have: str, want: str, matched: int, stored: int, differ: int
    ) -> None:
        ModelMismatch.__init__(self, collection, "moved", have, want)
        self.matched, self.stored, self.differ = matched, stored, differ
        self.args = (
            f"collection {collection!r} holds images of dataset {have!r}; {matched} of its "
            f"{stored} images are in {want!r} with the same content, and {differ} there are new, "
            "changed or gone",
        )

    def __str__(self) -> str:
        return self.args[0]


class StoreLocked(LookalikeError):
    """The embedded store's folder (or one collection in it) is open in another process;
    `pid`, `command` and `url` say which, when that process recorded itself."""

    def __init__(
        self,
        location: str,
        collection: str | None = None,
        *,
        pid: int | None = None,
        command: str | None = None,
        url: str | None = None,
    ) -> None:
        self.location, self.collection = location, collection
        self.pid, self.command, self.url = pid, command, url
        what = f"collection {collection!r} in {location}" if collection else f"the store {location}"
        who = "another process"
        if pid is not None:
            serving = f" serving {url}" if url else ""
            who = f"another process (pid {pid}, lookalike {command}{serving})"
        super().__init__(f"{what} is open in {who}; an embedded store admits one at a time")


class StoreUnavailable(LookalikeError):
    """The store could not do what was asked: a server unreachable or answering an error, or
    an embedded engine failing. `status` is the HTTP status when there was one."""

    def __init__(
        self,
        location: str,
        action: str,
        reason: str,
        *,
        attempts: int = 1,
        status: int | None = None,
    ) -> None:
        self.location, self.action, self.reason = location, action, reason
        self.attempts, self.status = attempts, status
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"{location} failed to {action}{tries}: {reason}")

    @property
    def refused_key(self) -> bool:
        return self.status in (401, 403)


class DiskFull(StoreUnavailable):
    """The disk holding an embedded store has too little free space to go on: refused before
    writing, so what is stored stays readable. Sizes in bytes."""

    def __init__(
        self,
        location: str,
        action: str,
        folder: str,
        free: int,
        needed: int | None,
        *,
        inodes: bool = False,
    ) -> None:
        # needed None: the engine found the disk full mid-write, needing an amount unknown;
        # inodes: out of room for new files, however many bytes are free
        self.folder, self.free, self.needed, self.inodes = folder, free, needed, inodes
        reason = f"the disk holding {folder} has {size(free)} free, " + (
            "but no room for new files (no free inodes)"
            if inodes
            else f"and about {size(needed)} are needed"
            if needed
            else "too little to go on"
        )
        super().__init__(location, action, reason)


class StoreDamaged(LookalikeError):
    """A collection's files are not what the last completed write left: truncated, changed
    or unreadable. The source images are the truth: re-ingesting rebuilds it."""

    def __init__(self, location: str, collection: str | None, reason: str) -> None:
        self.location, self.collection, self.reason = location, collection, reason
        what = f"collection {collection!r}" if collection else "it"
        super().__init__(f"the store at {location} is damaged: {what} {reason}")


def size(n: int) -> str:
    """Bytes for people: 512 B, 3.4 MB, 1.2 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


class BadImage(LookalikeError):
    """An image could not be read or decoded (`kind`: too_many_pixels, missing, ... or None)."""

    def __init__(self, source: str, reason: str, *, kind: str | None = None) -> None:
        self.source, self.reason, self.kind = source, reason, kind
        super().__init__(f"{shown(source)}: {reason}")


class BadQuery(LookalikeError):
    """A query, label, k or setting that cannot be answered; `field` names the input."""

    def __init__(self, reason: str, *, field: str | None = None) -> None:
        self.reason, self.field = reason, field
        super().__init__(reason)


class QueryTimeout(LookalikeError):
    """A query ran past its time budget and was stopped (`seconds`: the budget)."""

    def __init__(self, seconds: float, what: str = "the query") -> None:
        self.seconds, self.what = seconds, what
        super().__init__(f"{what} ran past its time budget of {seconds:g} s and was stopped")


class NoTextTower(BadQuery):
    """Text queries need a model with a text tower (CLIP, SigLIP), and the collection was built
    with an image-only one; `dataset` is the collection's, to ingest again with such a model."""

    def __init__(self, collection: str, model: str, dataset: str, suggested: str) -> None:
        self.collection, self.model, self.dataset = collection, model, dataset
        self.suggested = suggested
        super().__init__(
            f"collection {collection!r} was built with {model!r}, which embeds images only: "
            f"text queries need a collection built with a CLIP or SigLIP model, such as "
            f"{suggested}",
            field="text",
        )


class TextTruncated(UserWarning):
    """A text query longer than the model reads (CLIP: 77 tokens, SigLIP: 64): the model saw
    its first `limit` tokens only."""

    def __init__(self, text: str, tokens: int, limit: int) -> None:
        self.text, self.tokens, self.limit = text, tokens, limit
        shown_text = text if len(text) <= 60 else f"{text[:60]}..."
        super().__init__(
            f"text query {shown_text!r} is {tokens} tokens long and the model reads {limit}: "
            "the words past them were left out"
        )


class OutputExists(LookalikeError):
    """The folder to write to already holds files, which writing would replace."""

    def __init__(self, path: str, files: Sequence[str]) -> None:
        self.path, self.files = path, tuple(files)
        more = ", ..." if len(self.files) > 3 else ""
        super().__init__(f"{path} already holds files ({', '.join(self.files[:3])}{more})")


class IngestInterrupted(LookalikeError):
    """Ingest stopped part-way (Ctrl-C or a store failure); what was stored stays stored."""

    def __init__(
        self,
        collection: str,
        stored: int,
        *,
        by_user: bool = False,
        cause: LookalikeError | None = None,
        rows: str | None = None,  # what was being stored: "rows train:8..11", "images a..d"
    ) -> None:
        self.collection, self.stored, self.by_user = collection, stored, by_user
        self.cause, self.rows = cause, rows
        if by_user:
            message = f"interrupted: {stored} images stored in {collection!r}"
        else:
            at = f"storing {rows} " if rows else ""
            message = (
                f"{cause}\n{at}failed; the {stored} images before them are stored in {collection!r}"
            )
        super().__init__(message)
