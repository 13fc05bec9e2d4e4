"""One store shared by several threads of one process (`serve --watch`: the web handlers and
the folder sync): every call holds one lock, since embedded engines are not thread-safe."""

from __future__ import annotations

import threading
from typing import Any

from lookalike.store.base import Store


class SharedStore:
    """Wraps a Store so that each method call runs alone; used where a Store is expected."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.RLock()  # re-entrant: a method may call others on the store

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def locked(*args, **kwargs):
            with self._lock:
                return attr(*args, **kwargs)

        return locked

    def __enter__(self) -> SharedStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
