"""Keeping a collection in sync with a folder: poll the folder's files (name, size, times,
inode: no reading), and sync whenever they change. Polling needs no dependency and works on
every filesystem, network mounts included, where change notifications often do not arrive.

A file being copied keeps changing; the sync leaves files written in the last `settle`
seconds for a later round (and removes nothing meanwhile), so none is embedded half-written.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from lookalike.errors import LookalikeError
from lookalike.records import IngestReport

# Once it handles SIGTERM, a process is gone within this many seconds, whatever it is doing:
# it stops cleanly long before, unless a query or a C call does not let go. (Python handles a
# signal between two of its steps: a batch being embedded finishes first.)
STOP_WITHIN_S = 5.0


def exit_within(seconds: float = STOP_WITHIN_S, code: int = 143) -> threading.Timer:
    """Leave the process `seconds` from now if it has not left by then: a stop that waits on
    something that will not end (a query stuck in the engine, a sync's last batch) must not
    keep the process alive. Abrupt, as a kill is; what was written is kept (stores are made
    to survive a kill), and the holder record of a dead process is recognised as stale."""
    timer = threading.Timer(seconds, os._exit, args=(code,))
    timer.daemon = True
    timer.start()
    return timer


def snapshot(root: str) -> dict[str, tuple]:
    """Every visible file under `root` with its stat, symlinked folders followed once."""
    found, seen = {}, set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError:
                continue  # gone between the listing and the stat
            found[path] = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    return found


class FolderWatch:
    """Syncs a collection with the folder at `root` whenever the folder changes."""

    def __init__(self, root: str, sync: Callable[[], IngestReport]) -> None:
        self.root, self.sync = root, sync
        self.last: dict[str, tuple] | None = None
        self.again = True  # a sync is due: never run, or it left files pending

    def round(self) -> IngestReport | None:
        """Sync if the folder changed since the last sync (or files were left pending);
        errors are raised."""
        current = snapshot(self.root)
        if not self.again and current == self.last:
            return None
        self.last, self.again = current, True  # due again if this sync fails
        report = self.sync()
        self.again = report.pending > 0
        return report

    def run(
        self,
        stop: threading.Event,
        *,
        interval: float = 2.0,
        on_error: Callable[[LookalikeError], None] | None = None,
    ) -> None:
        """Rounds every `interval` seconds until `stop` is set. A failed sync goes to
        `on_error` (raised without one) and is tried again at the folder's next change."""
        while not stop.wait(interval):
            try:
                self.round()
            except LookalikeError as e:
                self.again = False
                if stop.is_set():
                    return
                if on_error is None:
                    raise
                on_error(e)
