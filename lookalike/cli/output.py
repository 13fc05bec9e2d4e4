"""Human-readable renderings of results (tables for people; --json is the program interface)."""

from __future__ import annotations

import csv
import io
import json

from lookalike.cli.errors import skip_message
from lookalike.errors import shown
from lookalike.records import (
    Change,
    CollectionInfo,
    EvalReport,
    IngestReport,
    Result,
    shown_split,
)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


FIELDS_WIDTH = 60  # the metadata column of a hits table, cut beyond this


def plural(n: int, noun: str) -> str:
    """ "1 group", "2 groups"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def place(split: str | None, row: int | None) -> str:
    """split:row, or the split alone for an image folder's files (which store no row)."""
    return f"{split}:{row}" if row is not None else str(split or "")


def fields(metadata: dict) -> str:
    # A field name with a newline or NUL must not forge a line: shown escaped.
    text = " ".join(f"{shown(k)}={json.dumps(v, ensure_ascii=False)}" for k, v in metadata.items())
    return text if len(text) <= FIELDS_WIDTH else text[: FIELDS_WIDTH - 1] + "…"


def hits_table(result: Result) -> str:
    """The query (with its label, when known), then rank, score, label, place, path and id of
    each hit (the id is what --id and --like take), with the dataset's own fields when any hit
    has them (all of them in --json), and whether the query's own image was left out. A plain
    folder's images have no split worth naming: the place column is left out."""
    query, hits = result.query, result.hits
    extra = any(h.metadata for h in hits)
    places = [place(h.split, h.row) if h.row is not None else shown_split(h) for h in hits]
    where = any(places)
    rows = [
        [
            str(h.rank),
            f"{h.score:.4f}",
            "" if h.label_name is None else shown(h.label_name),
            *([p] if where else []),
            shown(h.path or ""),
            h.id,
            *([fields(h.metadata)] if extra else []),
        ]
        for h, p in zip(hits, places)
    ]
    headers = ["rank", "score", "label", *(["split:row"] if where else []), "path", "id"]
    headers += ["fields"] if extra else []
    body = _table(headers, rows) if hits else "(no hits)"
    head = f"{'text' if query.kind == 'text' else 'query'}: {shown(query.text)}"
    if query.label_name is not None:
        head += f" (label {shown(query.label_name)})"
    note = (
        "(the query is one of the collection's own images: left out; --include-self keeps it)\n"
        if result.excluded_self
        else ""
    )
    return f"{head}\n{body}\n{note}"


CSV_COLUMNS = ["query", "rank", "score", "id", "label", "split", "row", "path", "fields"]


def hits_csv(results: list[Result], header: bool) -> str:
    """CSV rows, one per query and rank (a query without hits: one row with no rank), your
    fields as one JSON column: what a spreadsheet or a script reads."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    for result in results:
        query, hits = result.query.text, result.hits
        if not hits:
            writer.writerow([query] + [""] * (len(CSV_COLUMNS) - 1))
        for h in hits:
            extra = json.dumps(h.metadata, ensure_ascii=False) if h.metadata else ""
            label = "" if h.label_name is None else h.label_name
            row = "" if h.row is None else h.row
            writer.writerow(
                [query, h.rank, f"{h.score:.6f}", h.id, label, h.split, row, h.path, extra]
            )
    return out.getvalue().rstrip("\n")


def sync_counts(report: IngestReport) -> str:
    counts = [
        f"{report.added} added",
        f"{report.updated} updated",
        f"{report.renamed} renamed",
        f"{report.removed} removed",
        f"{report.unchanged} unchanged",
        f"{len(report.skipped)} skipped",
    ]
    if report.pending:
        counts.append(f"{report.pending} still being written (next sync)")
    return ", ".join(counts)


def ingest_summary(report: IngestReport) -> str:
    """One line: the sync's counts and the model's work; then each skip and its fix."""
    if not report.embedded:
        work = f"nothing to embed, {report.seconds:.1f} s"
    elif report.embed_seconds is None:
        work = f"embedded {report.embedded} images in {report.seconds:.1f} s"
    else:  # the model's load and the plan are not the model's speed
        work = (
            f"embedded {report.embedded} images in {report.embed_seconds:.1f} s, "
            f"{report.seconds:.1f} s in all"
        )
    work += f" ({report.images_per_s:.1f} images/s)" if report.embedded else ""
    lines = [f"collection {report.collection}: {sync_counts(report)}; {work}"]
    if report.migrated:
        lines.append(f"  migrated {report.migrated} points of an older lookalike")
    if report.payload_columns:
        lines.append(f"  payload fields: {', '.join(map(shown, report.payload_columns))}")
    lines += [
        f"  skipped {shown(s.where())}: " + skip_message(s.reason, s.kind) for s in report.skipped
    ]
    return "\n".join(lines)


def change_line(change: Change) -> str:
    """A change as one line for people: `renamed a.jpg -> b.jpg`."""
    if change.kind == "renamed":
        return f"renamed {shown(change.before)} -> {shown(change.where)}"
    return f"{change.kind} {shown(change.where)}"


def plan_listing(report: IngestReport) -> str:
    """A dry run: each change it would make, then the counts."""
    lines = [change_line(c) for c in report.changes]
    lines.append(f"dry run, nothing written: {sync_counts(report)}")
    return "\n".join(lines)


def eval_table(report: EvalReport) -> str:
    rows = [
        ["queries", str(report.queries)],
        [f"precision@{report.k}", f"{report.precision_at_k:.4f}"],
        ["precision@1", f"{report.precision_at_1:.4f}"],
        [f"{report.k}-NN accuracy", f"{report.knn_accuracy:.4f}"],
        [f"mAP@{report.k}", f"{report.map_at_k:.4f}"],
    ]
    rows += [
        [f"precision@{report.k} {name}", f"{value:.4f}"]
        for name, value in report.per_class_precision_at_k.items()
    ]
    if report.near_duplicate_top1 is not None:
        rows.append(["near-duplicate top-1", f"{report.near_duplicate_top1:.4f}"])
    if report.recall_at_k is not None:
        rows.append([f"recall@{report.k} vs exact", f"{report.recall_at_k:.4f}"])
    if report.near_identical_queries:
        rows.append(["near-identical queries", str(report.near_identical_queries)])
    if report.skipped:
        rows.append(["skipped", str(report.skipped)])
    return _table(["metric", "value"], rows)


THRESHOLD_SOURCES = {
    "calibrated": " (measured on this collection's photos)",
    "fallback": " (not measured yet: the next ingest that embeds measures it)",
}


def duplicates_table(report) -> str:
    rows = [
        [
            f"{p.score:.4f}",
            place(p.a.split, p.a.row) if p.a.row is not None else shown_split(p.a),
            place(p.b.split, p.b.row) if p.b.row is not None else shown_split(p.b),
            "yes" if p.cross_split else "",
            f"{shown(p.a.path or '')} | {shown(p.b.path or '')}",
        ]
        for p in report.pairs
    ]
    body = _table(["score", "a", "b", "cross-split", "paths"], rows) if rows else "(no pairs)"
    summary = report.to_dict()
    return (
        f"{body}\n{plural(summary['pairs'], 'pair')} at cosine >= {report.threshold}"
        f"{THRESHOLD_SOURCES.get(report.threshold_source, '')} among "
        f"{plural(report.points, 'image')}, in {plural(len(report.groups), 'group')}; "
        f"{summary['cross_split_pairs']} of them cross splits (leakage)"
    )


def _indexed(info: CollectionInfo) -> str:
    done, points = info.indexed_points, info.points
    if points == 0 or done >= points:
        return f"{done} of {points}"
    if info.full_scan_points is not None and points <= info.full_scan_points:
        return (
            f"{done} of {points}: a collection this small is searched exactly, which is faster "
            f"than a graph (the graph is built above ~{info.full_scan_points:,} points)"
        )
    return f"{done} of {points}: the rest are searched exactly until the graph catches up"


TEXT_QUERIES = {True: "yes", False: "no (an image-only model)", None: "as its model allows"}


def _duplicates_at(found: dict | None) -> str:
    """The calibrated near-duplicate threshold, and what it separates."""
    if not found:
        return "not measured yet (0.97 until an ingest that embeds measures it)"
    copies, others = found.get("copies", {}), found.get("others", {})
    return (
        f"cosine >= {found.get('threshold')} (edited copies scored {copies.get('min')}-"
        f"{copies.get('max')}, nearest other photos up to {others.get('max')})"
    )


def info_table(info: CollectionInfo) -> str:
    rows = [
        ["points", str(info.points)],
        ["vector size", str(info.dim)],
        ["distance", info.distance],
    ]
    if info.meta:
        rows += [
            ["model", info.meta.model],
            ["pooling", info.meta.pooling],
            ["dataset", info.meta.dataset],
            ["labels", ", ".join(info.meta.label_names) or "-"],
            ["text queries", TEXT_QUERIES[info.meta.text]],
            ["duplicates at", _duplicates_at(info.meta.duplicates)],
        ]
    rows.append(["engine", info.engine])
    if info.indexed_points is not None:
        rows.append(["in the HNSW graph", _indexed(info)])
    if info.index:
        i = info.index
        rows += [
            ["hnsw", f"m={i.hnsw_m} ef_construct={i.hnsw_ef_construct}"],
            ["quantization", i.quantization + (", vectors on disk" if i.on_disk else "")],
        ]
        if info.engine == "server":
            rows.append(["shards x replicas", f"{i.shards} x {i.replicas}"])
    if info.fields:
        indexed = ", ".join(f"{shown(f)} ({t})" for f, t in sorted(info.fields.items()))
        rows.append(["indexed fields", indexed])
    return _table(["collection", info.name], rows)


def capitals_note(item: str, others: list[str]) -> str:
    """What a FIELD=VALUE filter that matched nothing would match with other capitals."""
    field = item.split("=", 1)[0].strip()
    if not others:
        return f"no image has {shown(item)}, in these or other capitals"
    held = ", ".join(f"{field}={shown(v)}" for v in others)
    return f"no image has {shown(item)}, but some have {held}: values match exactly, capitals too"
