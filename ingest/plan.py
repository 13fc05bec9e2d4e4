"""What a sync must do to make a collection's split mirror its images, worked out before
anything is embedded or written.

Each image is described without decoding it (id, path, label, metadata, a file's stat) and
compared with the point stored under its id: a file whose stat is unchanged is not read at
all; one whose stat changed is hashed, and only a different sha256 means new content. A new
id whose sha256 a stored point already has reuses that point's vector (a rename or move, or a
copy), with no model run. Points whose images are gone are removed last.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

from lookalike.records import OWN_FIELDS, Change, ImageRecord, Tracked
from lookalike.source import Source
from lookalike.source.fingerprint import changed_within


@dataclass
class Plan:
    """The work of one sync, and what it will report."""

    embed: list[int] = field(default_factory=list)  # positions: new or changed content
    # (position, record, the stored id whose vector it reuses)
    reuse: list[tuple[int, ImageRecord, str]] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)  # once everything else is stored
    changes: dict[str, Change] = field(default_factory=dict)  # by id; a refreshed stat is none
    unchanged: int = 0
    pending: int = 0  # files still being written: left for the next sync
    legacy: int = 0  # points stored without a fingerprint (an older lookalike's)
    stored: set[str] = field(default_factory=set)  # ids of the points stored before
    payload_columns: tuple[str, ...] = ()
    # (old path, new path) of renamed images that kept the fields of a metadata row still
    # naming their old path
    kept_fields: list[tuple[str, str]] = field(default_factory=list)
    # Payload fields given no payload index (past the cap, or a name the engine's key syntax
    # cannot take): filtered by reading payloads, slower
    unindexed: tuple[str, ...] = ()

    def indexable(self, types: dict[str, str]) -> dict[str, str]:
        """The fields of `types` to index."""
        return {k: v for k, v in types.items() if k not in self.unindexed}

    def count(self, kind: str) -> int:
        return sum(c.kind == kind for c in self.changes.values())


# Each payload index is files kept mapped, and the engine's cost of adding one grows with
# those it has: ~1,000 fields made an ingest run for over 15 minutes, 64 took a minute.
MAX_INDEXED_FIELDS = 16
# A field name Qdrant's key syntax takes as it is (others need quoting everywhere a filter
# names them, so they are left unindexed: filtering them reads payloads).
PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def unindexed_fields(columns: tuple[str, ...]) -> tuple[str, ...]:
    """The payload columns given no index: names the key syntax cannot take as they are, and
    those past the first MAX_INDEXED_FIELDS (in their declared order)."""
    odd = [c for c in columns if not PLAIN_KEY.match(c)]
    plain = [c for c in columns if PLAIN_KEY.match(c)]
    return (*odd, *plain[MAX_INDEXED_FIELDS:])


def _where(record: ImageRecord) -> str:
    return record.path or f"{record.split}:{record.row}"


# Bookkeeping: a file's stat, a dataset row's place. A point that differs only there is
# refreshed without being reported as changed.
BOOKKEEPING = ("stat", "row")


def _same_but_bookkeeping(a: dict, b: dict) -> bool:
    def own(payload: dict) -> dict:
        return {k: v for k, v in payload.items() if k not in BOOKKEEPING}

    return same_value(own(a), own(b))


def same_value(a: Any, b: Any) -> bool:
    """Payload values equal as stored: a float read back from the engine may differ from the
    one written in its last bit (edge parses JSON numbers its own way), and a point is not
    rewritten at every sync for that."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or math.isclose(a, b, rel_tol=FLOAT_ROUNDTRIP)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(v, b[k]) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return a == b and isinstance(a, bool) == isinstance(b, bool)  # 1 is not true


# A few units in the last place of a double: what a round trip through the engine changes.
FLOAT_ROUNDTRIP = 1e-14


class _Planner:
    def __init__(self, source: Source, stored: list[Tracked], reembed: bool) -> None:
        self.source, self.reembed = source, reembed
        # Whole payloads only while planning: the plan keeps their ids.
        self.stored = {t.id: t for t in stored}
        self.plan = Plan(stored=set(self.stored), payload_columns=source.payload_columns)
        self.plan.legacy = sum(t.sha256 is None for t in stored)
        self.records = [source.describe(p) for p in range(len(source))]
        present = {r.id for r in self.records}
        unseen = tuple(source.unreadable)  # a folder that cannot be read is not gone
        self.gone = {
            i: t
            for i, t in self.stored.items()
            if i not in present and not (unseen and (t.path or "").startswith(unseen))
        }
        # A vector to reuse for content already stored: a gone point's first (a rename).
        self.by_sha: dict[str, str] = {}
        for t in [*self.stored.values(), *self.gone.values()]:
            if t.sha256:
                self.by_sha[t.sha256] = t.id
        self.renamed_from: set[str] = set()

    def embed(self, position: int, record: ImageRecord, kind: str) -> None:
        self.plan.embed.append(position)
        self.plan.changes[record.id] = Change(kind, _where(record))

    def known(self, position: int, record: ImageRecord, old: Tracked) -> None:
        """An image whose id is stored with a fingerprint."""
        same = record.stat is not None and record.stat == old.stat
        sha = old.sha256 if same else self.source.fingerprint(position)
        record = replace(record, sha256=sha)
        stored = {k: v for k, v in old.payload.items() if k not in OWN_FIELDS}
        kept = None if record.metadata else self.source.kept_fields(record.path, stored)
        if kept:  # fields it kept at a rename, from a row that still names its old path
            record = replace(record, metadata=kept)
        if sha != old.sha256:
            origin = self.by_sha.get(sha) if sha else None
            if origin is None:
                return self.embed(position, record, "updated")
            # Content already stored elsewhere (rows that shifted, a file swapped in).
            self.plan.reuse.append((position, record, origin))
            self.plan.changes[record.id] = Change("updated", _where(record))
            return None
        payload = record.payload()
        if payload == old.payload or same_value(payload, old.payload):
            self.plan.unchanged += 1
        elif _same_but_bookkeeping(payload, old.payload):  # touched, or its row moved: refresh
            self.plan.unchanged += 1
            self.plan.reuse.append((position, record, old.id))
        else:  # its label or metadata changed, not its content
            self.plan.reuse.append((position, record, old.id))
            self.plan.changes[record.id] = Change("updated", _where(record))

    def new(self, position: int, record: ImageRecord) -> None:
        """An image whose id is not stored: its content may be, under another path."""
        sha = self.source.fingerprint(position) if self.by_sha and not self.reembed else None
        origin = self.by_sha.get(sha) if sha else None
        if origin is None:
            return self.embed(position, record, "added")
        self.plan.reuse.append((position, replace(record, sha256=sha), origin))
        if origin in self.gone and origin not in self.renamed_from:
            self.renamed_from.add(origin)
            before = self.gone[origin].where()
            kept = {} if record.metadata else self.source.orphan_fields(before)
            if kept:  # its row still names its old path: the fields follow the image
                record = replace(record, metadata=kept)
                self.plan.reuse[-1] = (position, replace(record, sha256=sha), origin)
                self.plan.kept_fields.append((before, _where(record)))
            self.plan.changes[record.id] = Change("renamed", _where(record), before=before)
        else:
            self.plan.changes[record.id] = Change("added", _where(record))


def plan_sync(
    source: Source,
    stored: list[Tracked],
    *,
    keep_missing: bool = False,
    reembed: bool = False,
    settle: float = 0.0,
) -> Plan:
    """The plan that makes the points of `stored` (one split's) mirror `source`.

    `keep_missing` keeps the points of images that are gone (a renamed image's old point
    still goes); `reembed` embeds every image again; files written less than `settle`
    seconds ago are left alone, and while any is, nothing is removed."""
    planner, now = _Planner(source, stored, reembed), time.time_ns()
    plan = planner.plan
    for position, record in enumerate(planner.records):
        if settle and record.stat and changed_within(record.stat, settle, now):
            plan.pending += 1
            continue
        old = planner.stored.get(record.id)
        if old is None:
            planner.new(position, record)
        elif old.sha256 is None or reembed:
            planner.embed(position, record, "updated")
        else:
            planner.known(position, record, old)
    if not plan.pending:
        for point_id, old in planner.gone.items():
            if not keep_missing or point_id in planner.renamed_from:
                plan.remove.append(point_id)
                if old.sha256 and point_id not in planner.renamed_from:
                    plan.changes[point_id] = Change("removed", old.where())
    return plan
