"""What the commands write on stderr: warnings, progress bars, and a quiet transformers."""

from __future__ import annotations

import functools
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tqdm import tqdm


@functools.cache
def quiet_transformers() -> None:
    """Loading a classifier checkpoint into AutoModel reports the unused head at WARNING level;
    it is expected here and would bury our own messages. Called where a model is about to
    load; imports nothing, so that a command whose model comes from the OpenVINO cache never
    imports transformers (it reads these variables when it is imported)."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # already imported: tell its logger instead
        from transformers.utils import logging

        logging.set_verbosity_error()
        logging.disable_progress_bar()


def warn(message: str) -> None:
    say(f"warning: {message}")


def say(message: str) -> None:
    """One line on stderr that does not break a progress bar. tqdm is loaded with the first
    bar (~25 ms with the lock it makes): a command that draws none, such as a search forwarded
    to a running serve, prints its lines itself."""
    if "tqdm" in sys.modules:
        sys.modules["tqdm"].tqdm.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr, flush=True)


def wrote(path: str, what: str) -> None:
    """Say where a picture went."""
    say(f"wrote {what} to {os.path.abspath(path)}")


def bar(total: int, desc: str) -> tqdm:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True)
