"""Retrieval quality of text queries: each line of a file, words and the label they should
find, queries the collection (CLIP, SigLIP), so a model can be measured on one's own labels."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lookalike.errors import BadQuery, shown
from lookalike.records import EvalReport
from lookalike.search.evaluation import _Tally
from lookalike.search.searcher import Searcher, check_k

BATCH = 64  # texts embedded at once: a text tower is small beside its image tower


@dataclass(frozen=True)
class LabelledText:
    """A text query and the label (name or id) of the images it should find; `line` in its
    file, for messages."""

    text: str
    label: str
    line: int = 0


def read_text_queries(path: str) -> list[LabelledText]:
    """A file of text queries, one a line: `words<TAB>label`, or a JSON object with `text`
    and `label`. Blank lines and lines starting with # are skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BadQuery(f"cannot read text queries from {shown(path)}: {e}", field="text") from e
    queries = [_parse(line, n, path) for n, line in enumerate(lines, 1)]
    queries = [q for q in queries if q is not None]
    if not queries:
        raise BadQuery(f"{shown(path)} holds no text queries", field="text")
    return queries


def _parse(line: str, n: int, path: str) -> LabelledText | None:
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    if line.lstrip().startswith("{"):
        try:
            item = json.loads(line)
            text, label = item["text"], item["label"]
        except (ValueError, KeyError, TypeError) as e:
            raise _bad(path, n, f"a JSON line needs text and label ({e})") from e
    else:
        fields = next(csv.reader([line], delimiter="\t"))
        if len(fields) != 2:
            raise _bad(path, n, "expected the words, a tab, and the label")
        text, label = fields
    if not str(text).strip() or not str(label).strip():
        raise _bad(path, n, "both the words and the label are needed")
    return LabelledText(str(text).strip(), str(label).strip(), n)


def _bad(path: str, n: int, reason: str) -> BadQuery:
    return BadQuery(f"{shown(path)} line {n}: {reason}", field="text")


def evaluate_text(
    searcher: Searcher,
    queries: Sequence[LabelledText],
    *,
    k: int = 5,
    on_progress: Callable[[int], None] | None = None,
) -> EvalReport:
    """precision@k, precision@1, k-NN accuracy, mAP@k and per-label precision@k of text
    queries against the collection: a hit is relevant when it has the query's label."""
    check_k(k)
    names = searcher.meta.label_names
    if not names:
        raise BadQuery(
            f"collection {searcher.collection!r} has no labels, so text queries cannot be scored",
            field="text",
        )
    labels = []
    for q in queries:  # every label checked before the model runs
        try:
            labels.append(searcher.label_id(q.label))
        except BadQuery as e:
            raise BadQuery(f"line {q.line}: {e}", field="text") from e
    tally = _Tally()
    for start in range(0, len(queries), BATCH):
        batch = queries[start : start + BATCH]
        found = searcher.search_texts([q.text for q in batch], k=k)
        for label, hits in zip(labels[start : start + BATCH], found):
            tally.add(label, names[label], hits, k)
        if on_progress:
            on_progress(len(batch))
    return EvalReport(
        k=k,
        queries=tally.n,
        precision_at_k=tally.at_k / tally.n,
        precision_at_1=tally.at_1 / tally.n,
        knn_accuracy=tally.knn / tally.n,
        map_at_k=tally.ap / tally.n,
        per_class_precision_at_k={
            name: sum(v) / len(v) for name, v in sorted(tally.per_class.items(), key=str)
        },
    )
