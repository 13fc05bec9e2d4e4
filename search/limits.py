"""What a query may ask, checked before anything loads: the forwarding path of `search` (to a
running `serve`) imports this, not the searcher, so it needs neither numpy nor an engine."""

from __future__ import annotations

import re

from lookalike.errors import BadQuery

SPLIT_ROW = re.compile(r"^(?P<split>[A-Za-z_][\w.-]*):(?P<row>\d+)$")
MAX_K = 1000  # a larger k is almost certainly a typo, and costly on a server


def check_text(text: str) -> None:
    if not text.strip():
        raise BadQuery("a text query needs words; this one is empty", field="text")


def check_k(k: int) -> None:
    if not 1 <= k <= MAX_K:
        raise BadQuery(f"k must be between 1 and {MAX_K}, not {k}", field="k")
