"""Local folder or Hugging Face hub id, and can the hub be reached: answered in well under a
second, before anything heavy loads.

Without these checks a path with a typo is sent to the hub as an id, and a machine without
network waits ~45 s of download retries per id before it learns so. The hub is probed once per
process; with HF_HUB_OFFLINE set it is never contacted, and a hub model must be in the cache.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import urllib.request
from urllib.parse import urlsplit

from lookalike.errors import DatasetLoadError, ModelLoadError

# huggingface_hub's repo id rule: "name" or "owner/name", word characters, '-' and '.'.
HUB_ID = re.compile(r"^(?:[\w\-.]+/)?[\w\-.]+$")
PROBE_TIMEOUT = 3.0  # seconds; a reachable hub answers a TCP connect in milliseconds


def is_hub_id(name: str) -> bool:
    """Whether `name` could be a hub repo id ("beans", "nateraw/vit-base-beans"); a path such
    as "../data/beans", "/x", "~/photos" or "a/b/c" cannot."""
    return (
        bool(HUB_ID.match(name))
        and ".." not in name
        and not name.startswith((".", "-"))
        and len(name) <= 96
    )


def offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE), as huggingface_hub read it."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


@functools.lru_cache(maxsize=8)
def reachable(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether a TCP connection to the hub's host opens. Behind a proxy the answer is the
    proxy's to give, so the hub is assumed reachable there."""
    if urllib.request.getproxies():
        return True
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout).close()
    except OSError:  # no DNS, no route, refused, timed out
        return False
    return True


def _local(name: str) -> bool:
    return os.path.exists(name) or not is_hub_id(name)


def check_dataset(dataset: str) -> None:
    """Raise DatasetLoadError when `dataset` is a path that does not exist (kind `missing`) or
    a hub id while the hub cannot be reached (kind `unreachable`). Offline mode is left to
    datasets, which looks in its cache at once."""
    if _local(dataset):
        if not os.path.exists(dataset):
            raise DatasetLoadError(dataset, _no_folder("dataset", dataset), kind="missing")
        if not os.path.isdir(dataset):
            raise DatasetLoadError(dataset, _a_file("dataset", dataset), kind="unreadable")
    elif not offline() and not reachable(endpoint()):
        raise DatasetLoadError(dataset, _unreachable("dataset", dataset), kind="unreachable")


def check_model(model: str, revision: str | None = None) -> None:
    """Raise ModelLoadError when `model` is a path that does not exist (`missing`), a hub id
    while the hub cannot be reached (`unreachable`), or a hub id missing from the cache in
    offline mode (`offline`)."""
    if _local(model):
        if not os.path.exists(model):
            raise ModelLoadError(model, _no_folder("model", model), kind="missing")
        if not os.path.isdir(model):
            raise ModelLoadError(model, _a_file("model", model), kind="unreadable")
    elif offline():
        if not model_cached(model, revision):
            raise ModelLoadError(model, _not_cached("model", model), kind="offline")
    elif cache_only(model) and not model_cached(model, revision):
        raise ModelLoadError(model, _unreachable("model", model), kind="unreachable")


def cache_only(model: str) -> bool:
    """Whether `model` is a hub id to be read from the cache alone: the hub cannot be reached
    (a model downloaded before still loads, without waiting on retries)."""
    return not _local(model) and not offline() and not reachable(endpoint())


def model_cached(model: str, revision: str | None = None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(model, "config.json", revision=revision), str)


def _no_folder(what: str, name: str) -> str:
    return f"{what} folder {name!r} does not exist ({os.path.abspath(name)})"


def _a_file(what: str, name: str) -> str:
    return f"{what} {name!r} is a file; give the folder that holds the {what}"


def _unreachable(what: str, name: str) -> str:
    return (
        f"{what} {name!r} is not a local folder, and the Hugging Face hub ({endpoint()}) "
        "cannot be reached to fetch it: no network"
    )


def _not_cached(what: str, name: str) -> str:
    return (
        f"{what} {name!r} is not a local folder, and not in the Hugging Face cache "
        "(HF_HUB_OFFLINE is set, so the hub is not asked)"
    )


def not_cached_dataset(dataset: str) -> DatasetLoadError:
    """What datasets' offline-mode failure means, for a hub dataset id."""
    return DatasetLoadError(dataset, _not_cached("dataset", dataset), kind="offline")
